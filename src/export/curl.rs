//! Copy as curl: one POSIX shell command that sends a recorded request again.
//!
//! Quoting is for `sh` (dash, bash, zsh alike): text goes in single quotes with `'\''` for a
//! quote. Bytes that are not UTF-8 cannot be typed, so they are produced by `printf` with
//! octal escapes (`$'\xNN'` is not POSIX: dash lacks it). A body that cannot be an argument
//! at all (a NUL byte, or a leading `@`, which curl reads as a file name) is piped in through
//! `printf` and `--data-binary @-`.

use std::path::Path;

use crate::exchange::Exchange;

/// Headers curl must not be told to send: hop-by-hop ones (they describe the connection the
/// request came on, not the request) and `content-length` (curl computes it from the body).
const SKIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// A shell command that reproduces `exchange`'s request against `url`: same method, every
/// header (except hop-by-hop ones and `content-length`) in order, the exact body bytes.
/// For `https://localhost` and `https://127.0.0.1`, where the development certificate is what
/// answers, `--cacert` names `dev_ca` (the listener's CA, an absolute path: the command is
/// pasted in any folder), when there is one.
pub fn curl_command(exchange: &Exchange, url: &str, dev_ca: Option<&Path>) -> String {
    let request = &exchange.request;
    let body = &request.body;
    let piped = body.contains(&0) || body.first() == Some(&b'@');
    let mut words: Vec<String> = Vec::new();
    if piped {
        words.extend([printf_command(body), "|".into()]);
    }
    words.push("curl".into());
    if let Some(ca) = dev_ca.filter(|_| is_local_https(url)) {
        words.extend([
            "--cacert".into(),
            shell_quote(ca.as_os_str().as_encoded_bytes()),
        ]);
    }
    // curl treats [] and {} in a URL as glob patterns and squashes /./ and /../ segments;
    // both would change the request.
    if url.contains(['[', ']', '{', '}']) {
        words.push("--globoff".into());
    }
    let path = url.split(['?', '#']).next().unwrap_or(url);
    if path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
    {
        words.push("--path-as-is".into());
    }
    // The same protocol version as recorded: over https curl would otherwise pick HTTP/2,
    // which turns Host into :authority. (Never --http2 on http://: that adds Upgrade headers.)
    match request.http_version.as_str() {
        "HTTP/1.0" => words.push("--http1.0".into()),
        "HTTP/1.1" if url.starts_with("https://") => words.push("--http1.1".into()),
        _ => {}
    }
    let method = request.method.as_str();
    match (method, body.is_empty()) {
        ("GET", true) | ("POST", false) => {}
        ("HEAD", true) => words.push("--head".into()),
        _ => words.extend(["-X".into(), shell_quote(method.as_bytes())]),
    }
    words.push(shell_quote(url.as_bytes()));
    // Headers the `Connection` header names are hop-by-hop too.
    let connection: Vec<String> = request
        .headers
        .0
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| {
            String::from_utf8_lossy(value)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, value) in &request.headers.0 {
        let lower = name.to_ascii_lowercase();
        if SKIPPED.contains(&lower.as_str()) || connection.contains(&lower) {
            continue;
        }
        // `-H 'Name:'` would remove the header; curl's spelling of an empty value is `Name;`.
        let mut header = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}: ")
        }
        .into_bytes();
        header.extend_from_slice(value);
        words.extend(["-H".into(), shell_quote(&header)]);
    }
    if !body.is_empty() {
        if request.headers.get("content-type").is_none() {
            // Otherwise curl labels the body application/x-www-form-urlencoded.
            words.extend(["-H".into(), "'Content-Type:'".into()]);
        }
        let data = if piped {
            "@-".into()
        } else {
            shell_quote(body)
        };
        words.extend(["--data-binary".into(), data]);
    }
    words.join(" ")
}

fn is_local_https(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
}

/// One shell word that expands to exactly `bytes` (which must not contain NUL: no argument
/// can). UTF-8 runs are single-quoted; other bytes come from `"$(printf '\ooo')"`, which is
/// safe because such bytes are never a newline (the only thing `$(...)` strips).
pub fn shell_quote(bytes: &[u8]) -> String {
    let mut word = String::new();
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        if !valid.is_empty() {
            word.push('\'');
            word.push_str(&valid.replace('\'', r"'\''"));
            word.push('\'');
        }
        if !chunk.invalid().is_empty() {
            word.push_str("\"$(");
            word.push_str(&printf_command(chunk.invalid()));
            word.push_str(")\"");
        }
    }
    if word.is_empty() {
        word.push_str("''");
    }
    word
}

/// `printf '…'` writing exactly `bytes` (NUL included): printable ASCII as is, `%` and `\`
/// escaped for printf's format, everything else (and a leading `-`) as a three-digit octal
/// escape, which POSIX printf understands in its format string.
pub fn printf_command(bytes: &[u8]) -> String {
    let mut format = String::with_capacity(bytes.len() + 9);
    format.push_str("printf '");
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            // A leading `-` would be read as an option of printf.
            b'-' if index == 0 => format.push_str(r"\055"),
            b'\'' => format.push_str(r"'\''"),
            b'%' => format.push_str("%%"),
            b'\\' => format.push_str(r"\\"),
            b' '..=b'~' => format.push(char::from(byte)),
            _ => format.push_str(&format!("\\{byte:03o}")),
        }
    }
    format.push('\'');
    format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_single_quotes_and_isolates_invalid_bytes() {
        assert_eq!(shell_quote(b""), "''");
        assert_eq!(shell_quote(b"it's"), r"'it'\''s'");
        assert_eq!(shell_quote(b"a\xffb"), r#"'a'"$(printf '\377')"'b'"#);
        assert_eq!(shell_quote(b"\xfe"), r#""$(printf '\376')""#);
        assert_eq!(
            printf_command(b"5% \\n\0\n'"),
            r"printf '5%% \\n\000\012'\'''"
        );
        assert_eq!(printf_command(b"-n-"), r"printf '\055n-'");
    }

    #[test]
    fn only_local_https_gets_the_development_ca() {
        assert!(is_local_https("https://localhost:8443/cb"));
        assert!(is_local_https("https://127.0.0.1/cb?x=1"));
        assert!(is_local_https("https://LOCALHOST"));
        assert!(!is_local_https("http://localhost:3000/cb"));
        assert!(!is_local_https("https://example.com/cb"));
        assert!(!is_local_https("https://localhost.example.com/cb"));
    }
}
