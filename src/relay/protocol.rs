//! The wire protocol between the relay and a laptop, and the pieces both sides share.
//!
//! ```text
//!   laptop                                   relay (public host, port 443)
//!     │── TCP + TLS, ALPN "vobiz-tunnel/1" ──▶│  the relay's certificate is always verified
//!     │── "VOBIZ-TUNNEL/1 <token>\n" ────────▶│  one line, at most MAX_LINE bytes, within
//!     │                                       │  --auth-timeout; the token is compared in
//!     │                                       │  constant time (SHA-256 digests, so the
//!     │                                       │  length of a guess leaks nothing)
//!     │◀─ "OK <public-base-url>\n" ───────────│  e.g. https://hooks.example.com/bob
//!     │   or "REFUSED <reason>\n" + close     │
//!     │                                       │
//!     │◀════ HTTP/2 over the same TLS ═══════▶│  the relay is the HTTP/2 *client*, the laptop
//!     │      one stream per callback          │  the *server*: each public callback becomes
//!     │      PING both ways (keep-alive)      │  one request, its answer one response
//! ```
//!
//! The public listener offers `h2`, `http/1.1` and `vobiz-tunnel/1` by ALPN; only a laptop asks
//! for the last. Each carried request has the envelope headers ([`super::envelope`]) with the
//! URL Vobiz called, the sender's address and the public TLS facts; the relay overwrites any a
//! sender supplied. The laptop writes nothing after its hello until it has read the answer, and
//! the relay starts HTTP/2 only after writing it, so both lines can be read byte by byte from a
//! buffered stream that is then handed to hyper with whatever it already holds.

use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The ALPN protocol a laptop asks for.
pub const ALPN: &[u8] = b"vobiz-tunnel/1";
/// What the relay's listener offers: public callbacks use the first two.
pub const LISTENER_ALPN: [&[u8]; 3] = [b"h2", b"http/1.1", ALPN];
/// The first word of the laptop's hello.
pub const HELLO: &str = "VOBIZ-TUNNEL/1";
/// Longest hello or answer line, newline included: a peer cannot make either side buffer more.
pub const MAX_LINE: usize = 4096;
/// HTTP/2 pings on the tunnel, sent by both sides: a peer that vanished without a FIN (a
/// laptop asleep or frozen, a Wi-Fi change) is noticed within interval + timeout; the relay
/// then answers the callbacks in flight with 502 and new ones with 503, and the laptop
/// reconnects. Vobiz gives up on a callback after ~3 s, so that is the budget: a tunnel that
/// cannot answer a ping within 2 s could not have answered the callback in time either.
/// (Pings go out only when nothing was read for the interval: a busy tunnel sends none.)
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a protocol line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("the connection closed before a complete line")]
    Closed,
    #[error("the line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the line is not UTF-8 text")]
    NotText,
    #[error("reading failed: {0}")]
    Io(String),
}

/// The relay's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Authenticated: callbacks to this public base URL now come through the tunnel.
    Ok { public_base: String },
    /// Not authenticated (or not served); the relay closes the connection.
    Refused { reason: String },
}

/// The hello line for `token`.
pub fn hello_line(token: &str) -> String {
    format!("{HELLO} {token}\n")
}

/// The token of a hello line (without its newline), or `None` when it is not one.
pub fn parse_hello(line: &str) -> Option<&str> {
    let token = line.strip_prefix(HELLO)?.strip_prefix(' ')?;
    (!token.is_empty()).then_some(token)
}

impl Answer {
    /// The line on the wire, newline included. A reason is kept on one line.
    pub fn line(&self) -> String {
        match self {
            Answer::Ok { public_base } => format!("OK {public_base}\n"),
            Answer::Refused { reason } => {
                let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
                format!("REFUSED {reason}\n")
            }
        }
    }

    /// Reads an answer line (without its newline); `None` when it is neither `OK` nor `REFUSED`.
    pub fn parse(line: &str) -> Option<Answer> {
        if let Some(base) = line.strip_prefix("OK ") {
            let public_base = base.trim().to_string();
            return (!public_base.is_empty()).then_some(Answer::Ok { public_base });
        }
        let reason = line.strip_prefix("REFUSED")?.trim().to_string();
        Some(Answer::Refused { reason })
    }
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes, without reading past it (the
/// bytes after it belong to HTTP/2). A trailing `\r` is removed too.
pub async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, LineError> {
    let mut line = Vec::with_capacity(128);
    loop {
        // One byte at a time from a buffered reader: cheap, and never consumes the next protocol.
        let byte = match reader.read_u8().await {
            Ok(byte) => byte,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(LineError::Closed)
            }
            Err(e) => return Err(LineError::Io(e.to_string())),
        };
        if byte == b'\n' {
            break;
        }
        if line.len() + 1 >= MAX_LINE {
            return Err(LineError::TooLong);
        }
        line.push(byte);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| LineError::NotText)
}

/// Writes a protocol line and flushes it.
pub async fn write_line<W: AsyncWrite + Unpin>(writer: &mut W, line: &str) -> std::io::Result<()> {
    writer.write_all(line.as_bytes()).await?;
    writer.flush().await
}

/// SHA-256 of a token: what the relay keeps and compares.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The index of the digest `presented` matches, in constant time: every digest is compared
/// and the index chosen without branching, so timing reveals neither which one matched nor how
/// much of a guess was right.
pub fn find_token(presented: &str, known: &[[u8; 32]]) -> Option<usize> {
    let digest = token_digest(presented);
    let mut found = u32::MAX;
    for (i, candidate) in known.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        found = u32::conditional_select(&found, &index, digest.ct_eq(candidate));
    }
    (found != u32::MAX).then_some(found as usize)
}

/// Reads the relay's answer line (the laptop's side of the handshake).
pub async fn read_answer<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Answer, String> {
    let line = read_line(reader).await.map_err(|e| e.to_string())?;
    Answer::parse(&line).ok_or_else(|| format!("not a relay answer: {:?}", truncate(&line, 80)))
}

/// At most `max` characters of `text` (for messages that quote a peer).
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[test]
    fn hello_and_answers_round_trip() {
        let line = hello_line("s3cret token");
        assert_eq!(
            parse_hello(line.trim_end_matches('\n')),
            Some("s3cret token")
        );
        assert_eq!(parse_hello("VOBIZ-TUNNEL/1 "), None);
        assert_eq!(parse_hello("VOBIZ-TUNNEL/2 x"), None);
        assert_eq!(parse_hello("GET / HTTP/1.1"), None);
        let ok = Answer::Ok {
            public_base: "https://h.example/bob".into(),
        };
        assert_eq!(Answer::parse(ok.line().trim_end()), Some(ok));
        let refused = Answer::Refused {
            reason: "unknown\ntoken".into(),
        };
        assert_eq!(refused.line(), "REFUSED unknowntoken\n");
        assert_eq!(Answer::parse("OK "), None);
        assert_eq!(Answer::parse("HTTP/1.1 400"), None);
    }

    #[tokio::test]
    async fn lines_are_bounded_and_never_read_past_the_newline() {
        let mut reader = BufReader::new(&b"OK https://x\r\nPRI * HTTP/2.0"[..]);
        assert_eq!(read_line(&mut reader).await.unwrap(), "OK https://x");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "PRI * HTTP/2.0");

        let long = vec![b'a'; MAX_LINE * 2];
        let mut reader = BufReader::new(&long[..]);
        assert_eq!(read_line(&mut reader).await, Err(LineError::TooLong));
        let mut reader = BufReader::new(&b"no newline"[..]);
        assert_eq!(read_line(&mut reader).await, Err(LineError::Closed));
        let mut reader = BufReader::new(&b"\xff\xfe\n"[..]);
        assert_eq!(read_line(&mut reader).await, Err(LineError::NotText));
    }

    #[test]
    fn tokens_match_by_digest_only() {
        let known = [token_digest("alice-token"), token_digest("bob-token")];
        assert_eq!(find_token("bob-token", &known), Some(1));
        assert_eq!(find_token("alice-token", &known), Some(0));
        assert_eq!(find_token("alice-toke", &known), None);
        assert_eq!(find_token("", &known), None);
        assert_eq!(find_token("x", &[]), None);
    }
}
