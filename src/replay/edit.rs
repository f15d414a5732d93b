//! The editable form of a request: raw HTTP text (request line, headers, blank line, body)
//! opened in `$EDITOR` by the UI's edit-and-replay, and parsed back.

use bytes::Bytes;

use crate::exchange::{Headers, RequestRecord};

/// A request as the user saved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditedRequest {
    pub method: String,
    pub target: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// Why an edited request could not be read, with the line it is on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("line 1 must be 'METHOD /path HTTP/1.1', not {0:?}")]
    RequestLine(String),
    #[error(
        "line {line}: {text:?} is not a header ('Name: value'); leave a blank line before the body"
    )]
    Header { line: usize, text: String },
    #[error("the request is empty")]
    Empty,
}

/// Raw text of `request`. One newline follows the body, because editors add one on save;
/// [`parse_raw`] removes it again, so an unchanged file gives back the same bytes.
pub fn to_raw(request: &RequestRecord) -> Vec<u8> {
    let mut raw = format!("{} {} HTTP/1.1\n", request.method, request.target).into_bytes();
    for (name, value) in &request.headers.0 {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.push(b'\n');
    }
    raw.push(b'\n');
    raw.extend_from_slice(&request.body);
    raw.push(b'\n');
    raw
}

/// Start of the lines [`with_notes`] puts above a request to tell the user something; they
/// are removed again before the request is read.
const NOTE: &[u8] = b"# vobiz-tunnel: ";

/// `raw` with `notes` above it (why the last save could not be read), as the editor shows it.
pub fn with_notes(notes: &[String], raw: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(raw.len() + 200);
    for note in notes {
        text.extend_from_slice(NOTE);
        text.extend(note.bytes().filter(|&b| b != b'\n'));
        text.push(b'\n');
    }
    text.extend_from_slice(raw);
    text
}

/// `raw` without the leading note lines of [`with_notes`].
pub fn without_notes(mut raw: &[u8]) -> &[u8] {
    while raw.starts_with(NOTE) {
        raw = raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&raw[raw.len()..], |i| &raw[i + 1..]);
    }
    raw
}

/// Reads what the user saved: `\n` or `\r\n` line ends; the body is everything after the
/// first blank line, byte for byte, less the one trailing newline [`to_raw`] added.
pub fn parse_raw(raw: &[u8]) -> Result<EditedRequest, EditError> {
    let mut lines_end = 0;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut body_start = raw.len();
    let mut rest = raw;
    while !rest.is_empty() {
        let (line, consumed) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lines_end += consumed;
        rest = &rest[consumed..];
        if line.is_empty() && !lines.is_empty() {
            body_start = lines_end;
            break;
        }
        if !(line.is_empty() && lines.is_empty()) {
            lines.push(line);
        }
    }
    let (first, headers) = lines.split_first().ok_or(EditError::Empty)?;
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(EditError::RequestLine(first.into_owned()));
    };
    if !target.starts_with('/') {
        return Err(EditError::RequestLine(first.into_owned()));
    }
    let mut parsed = Vec::with_capacity(headers.len());
    for (index, line) in headers.iter().enumerate() {
        let colon = line.iter().position(|&b| b == b':');
        let Some(colon) = colon.filter(|&c| c > 0) else {
            return Err(EditError::Header {
                line: index + 2,
                text: String::from_utf8_lossy(line).into_owned(),
            });
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        let value = line[colon + 1..].trim_ascii().to_vec();
        parsed.push((name, value));
    }
    let mut body = &raw[body_start.min(raw.len())..];
    body = body
        .strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(body);
    Ok(EditedRequest {
        method: method.to_ascii_uppercase(),
        target: target.to_string(),
        headers: Headers(parsed),
        body: Bytes::copy_from_slice(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &'static [u8]) -> RequestRecord {
        RequestRecord {
            method: "POST".into(),
            target: "/vobiz/hangup?x=1".into(),
            headers: Headers(vec![
                (
                    "Content-Type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                ),
                ("X-Vobiz-Signature-V3".into(), b"abc=".to_vec()),
            ]),
            body: Bytes::from_static(body),
            ..RequestRecord::default()
        }
    }

    #[test]
    fn an_unchanged_file_gives_back_the_same_request() {
        for body in [
            &b"Event=Hangup&CallUUID=1"[..],
            b"",
            b"line\n",
            b"\n\ntwo blank lines first",
        ] {
            let original = request(body);
            let parsed = parse_raw(&to_raw(&original)).unwrap();
            assert_eq!(parsed.method, original.method);
            assert_eq!(parsed.target, original.target);
            assert_eq!(parsed.headers, original.headers);
            assert_eq!(parsed.body, original.body, "body {body:?}");
        }
    }

    #[test]
    fn crlf_files_and_files_without_a_final_newline_are_read() {
        let parsed = parse_raw(b"get /a HTTP/1.1\r\nX-A: 1\r\n\r\nDigits=1").unwrap();
        assert_eq!(parsed.method, "GET");
        assert_eq!(parsed.headers.get_str("x-a"), Some("1"));
        assert_eq!(&parsed.body[..], b"Digits=1");
    }

    #[test]
    fn notes_above_a_request_are_shown_and_dropped_again() {
        let raw = to_raw(&request(b"a=1"));
        let noted = with_notes(&["line 1 is wrong".into(), "fix it".into()], &raw);
        assert!(noted.starts_with(b"# vobiz-tunnel: line 1 is wrong\n# vobiz-tunnel: fix it\n"));
        assert_eq!(without_notes(&noted), &raw[..]);
        assert_eq!(without_notes(&raw), &raw[..]);
    }

    #[test]
    fn mistakes_name_their_line() {
        assert_eq!(parse_raw(b""), Err(EditError::Empty));
        assert!(matches!(
            parse_raw(b"POST\n"),
            Err(EditError::RequestLine(_))
        ));
        assert!(matches!(
            parse_raw(b"POST cb HTTP/1.1\n"),
            Err(EditError::RequestLine(_))
        ));
        assert_eq!(
            parse_raw(b"POST /cb HTTP/1.1\nX-A: 1\nEvent=Hangup\n"),
            Err(EditError::Header {
                line: 3,
                text: "Event=Hangup".into()
            })
        );
    }
}
