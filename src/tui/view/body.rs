//! Bodies for reading: JSON pretty-printed, XML indented, text as is (form fields get a table),
//! and a hex dump when the raw bytes are asked for (or the body is not text).

use quick_xml::events::Event;
use quick_xml::Reader;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

use crate::exchange::Headers;

/// How much of a body the detail pane shows. Every frame lays out every line shown (wrapping
/// them to bound the scroll), and a 10 MiB body took half a second a frame: a second's wait
/// for every key press while it was selected. `vobiz-tunnel show` prints a body whole.
pub const SHOWN_BODY_BYTES: usize = 256 * 1024;

/// The lines that show `body` given its headers; `raw` forces the hex dump. A body over
/// [`SHOWN_BODY_BYTES`] shows its start, then a line that says what was left out.
pub fn body_lines(headers: &Headers, body: &[u8], raw: bool) -> Vec<Line<'static>> {
    if let Some(lines) = unzipped_lines(headers, body, raw) {
        return lines;
    }
    let shown = shown_part(body);
    let mut lines = lines_of(headers, shown, raw);
    if shown.len() < body.len() {
        lines.push(Line::styled(
            format!(
                "… {} more bytes not shown here ({} in all); `vobiz-tunnel show` prints \
                 the whole body",
                body.len() - shown.len(),
                body.len()
            ),
            Style::new().fg(Color::Yellow),
        ));
    }
    lines
}

/// A gzipped body (Vobiz asks for gzip, so answers may come so) shown unzipped, under a
/// line that says so; `None` for a body sent as it is, or one that does not unzip (its
/// bytes then show).
fn unzipped_lines(headers: &Headers, body: &[u8], raw: bool) -> Option<Vec<Line<'static>>> {
    let coding = headers.get_str("content-encoding")?.trim();
    if raw || coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
        return None;
    }
    let plain = crate::checks::encoding::decoded(Some(coding), body, SHOWN_BODY_BYTES).ok()?;
    let cut = plain.len() > SHOWN_BODY_BYTES;
    let note = match cut {
        true => format!("({coding}, {} bytes sent; the start, unzipped)", body.len()),
        false => format!("({coding}, {} bytes sent; unzipped)", body.len()),
    };
    let mut lines = vec![Line::styled(note, Style::new().fg(Color::DarkGray))];
    lines.extend(lines_of(headers, shown_part(&plain), false));
    Some(lines)
}

/// The start of `body` the detail pane shows: all of it, or at most [`SHOWN_BODY_BYTES`],
/// ending after a line when one ends near the limit, else never inside a UTF-8 character.
pub fn shown_part(body: &[u8]) -> &[u8] {
    if body.len() <= SHOWN_BODY_BYTES {
        return body;
    }
    let start = &body[..SHOWN_BODY_BYTES];
    let near = SHOWN_BODY_BYTES - 4096;
    if let Some(newline) = start[near..].iter().rposition(|&b| b == b'\n') {
        return &start[..near + newline + 1];
    }
    let mut end = SHOWN_BODY_BYTES;
    // Back over continuation bytes (at most three) to the start of the character cut.
    while end > SHOWN_BODY_BYTES - 3 && body[end] & 0b1100_0000 == 0b1000_0000 {
        end -= 1;
    }
    &body[..end]
}

fn lines_of(headers: &Headers, body: &[u8], raw: bool) -> Vec<Line<'static>> {
    if body.is_empty() {
        return vec![Line::styled("(empty)", Style::new().fg(Color::DarkGray))];
    }
    if raw {
        return hex_dump(body);
    }
    let content_type = headers
        .get_str("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let Ok(text) = std::str::from_utf8(body) else {
        return hex_dump(body);
    };
    // Form bodies show as text here; their decoded fields have a section of their own.
    let trimmed = text.trim_start();
    if content_type.contains("json") || trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_string());
            return pretty.lines().map(|l| Line::raw(l.to_string())).collect();
        }
    }
    if content_type.contains("xml") || trimmed.starts_with('<') {
        if let Some(lines) = indent_xml(text) {
            return lines.into_iter().map(Line::raw).collect();
        }
    }
    text.lines().map(|l| Line::raw(l.to_string())).collect()
}

/// `key  value` lines, keys aligned.
pub fn form_lines(fields: &[(String, String)]) -> Vec<Line<'static>> {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(key, value)| {
            Line::from(vec![
                Span::styled(format!("{key:<width$}  "), Style::new().fg(Color::Cyan)),
                Span::raw(value.clone()),
            ])
        })
        .collect()
}

/// XML with one element per line, indented by depth; `None` when it is not well-formed.
pub fn indent_xml(text: &str) -> Option<Vec<String>> {
    let mut reader = Reader::from_str(text);
    let mut lines = Vec::new();
    let mut depth = 0usize;
    let pad = |depth: usize| "  ".repeat(depth);
    loop {
        match reader.read_event().ok()? {
            Event::Start(tag) => {
                lines.push(format!("{}<{}>", pad(depth), String::from_utf8_lossy(&tag)));
                depth += 1;
            }
            Event::End(tag) => {
                depth = depth.checked_sub(1)?;
                lines.push(format!(
                    "{}</{}>",
                    pad(depth),
                    String::from_utf8_lossy(tag.name().as_ref())
                ));
            }
            Event::Empty(tag) => lines.push(format!(
                "{}<{}/>",
                pad(depth),
                String::from_utf8_lossy(&tag)
            )),
            Event::Text(t) => {
                let raw = String::from_utf8_lossy(&t).trim().to_string();
                if !raw.is_empty() {
                    lines.push(format!("{}{raw}", pad(depth)));
                }
            }
            Event::CData(t) => lines.push(format!(
                "{}<![CDATA[{}]]>",
                pad(depth),
                String::from_utf8_lossy(&t)
            )),
            Event::Decl(d) => lines.push(format!("<?{}?>", String::from_utf8_lossy(&d))),
            Event::Comment(c) => lines.push(format!(
                "{}<!--{}-->",
                pad(depth),
                String::from_utf8_lossy(&c)
            )),
            Event::PI(p) => {
                lines.push(format!("{}<?{}?>", pad(depth), String::from_utf8_lossy(&p)))
            }
            Event::DocType(d) => lines.push(format!("<!DOCTYPE {}>", String::from_utf8_lossy(&d))),
            Event::Eof => break,
            _ => {}
        }
    }
    (depth == 0).then_some(lines)
}

/// 16 bytes a line: offset, hex, printable ASCII.
pub fn hex_dump(body: &[u8]) -> Vec<Line<'static>> {
    body.chunks(16)
        .enumerate()
        .map(|(row, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let ascii: String = chunk
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            Line::from(vec![
                Span::styled(
                    format!("{:08x}  ", row * 16),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::raw(format!("{:<48} ", hex.join(" "))),
                Span::styled(ascii, Style::new().fg(Color::DarkGray)),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_indented_and_broken_xml_is_not() {
        let lines =
            indent_xml("<Response><Speak voice=\"WOMAN\">Hi</Speak><Hangup/></Response>").unwrap();
        assert_eq!(
            lines,
            vec![
                "<Response>",
                "  <Speak voice=\"WOMAN\">",
                "    Hi",
                "  </Speak>",
                "  <Hangup/>",
                "</Response>"
            ]
        );
        assert!(indent_xml("<Response><Speak></Response>").is_none());
    }

    #[test]
    fn a_big_body_shows_its_start_and_says_what_is_left_out() {
        let headers = Headers(vec![("content-type".into(), b"text/plain".to_vec())]);
        let line = format!("{}\n", "x".repeat(99));
        let body = line.repeat(30_000).into_bytes();
        let lines = body_lines(&headers, &body, false);
        let shown = shown_part(&body);
        assert!(shown.len() <= SHOWN_BODY_BYTES && shown.ends_with(b"\n"));
        assert_eq!(lines.len(), shown.len() / 100 + 1);
        let last: String = lines
            .last()
            .unwrap()
            .spans
            .iter()
            .map(|s| s.content.as_ref())
            .collect();
        assert!(
            last.contains(&format!("{} more bytes", body.len() - shown.len()))
                && last.contains("3000000 in all"),
            "{last}"
        );
        // No line end near the limit: cut before the character the limit falls in.
        let wide = "é".repeat(SHOWN_BODY_BYTES);
        let shown = shown_part(wide.as_bytes());
        assert!(std::str::from_utf8(shown).is_ok() && shown.len() == SHOWN_BODY_BYTES);
        let odd = format!("a{wide}");
        let shown = shown_part(odd.as_bytes());
        assert!(std::str::from_utf8(shown).is_ok() && shown.len() == SHOWN_BODY_BYTES - 1);
        // The hex dump of a big body is cut too.
        let raw = body_lines(&headers, &body, true);
        assert_eq!(raw.len(), shown_part(&body).len().div_ceil(16) + 1);
        // Small bodies are whole.
        assert_eq!(body_lines(&headers, b"a\nb", false).len(), 2);
    }

    #[test]
    fn a_gzipped_body_shows_unzipped() {
        let zipped = crate::checks::encoding::gzip(b"<Response><Speak>hi</Speak></Response>");
        let headers = Headers(vec![
            ("Content-Type".into(), b"application/xml".to_vec()),
            ("Content-Encoding".into(), b"gzip".to_vec()),
        ]);
        let text: Vec<String> = body_lines(&headers, &zipped, false)
            .iter()
            .map(|line| line.to_string())
            .collect();
        assert!(
            text[0].contains("gzip") && text[0].contains("unzipped"),
            "{text:?}"
        );
        assert!(text.iter().any(|l| l.trim() == "<Speak>"), "{text:?}");
        // Raw, the bytes as they came.
        let raw = body_lines(&headers, &zipped, true);
        assert!(!raw[0].to_string().contains("unzipped"));
    }

    #[test]
    fn hex_dump_shows_offsets_and_ascii() {
        let lines = hex_dump(b"Event=Hangup\xff\x00and more bytes");
        assert_eq!(lines.len(), 2);
        let first: String = lines[0].spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(first.starts_with("00000000  45 76"), "{first}");
        assert!(first.ends_with("Event=Hangup..an"), "{first}");
    }
}
