//! The one record every part of the tool shares: an [`Exchange`] is a request Vobiz (or anyone)
//! sent, what the signature check concluded, what the local server answered, and when.
//! The pipeline builds it, the store persists it, the log prints it, the UI and replay read it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::checks::Finding;
use crate::signature::Verdict;

/// Row id of an exchange in the store.
pub type ExchangeId = i64;

/// Responses slower than this are flagged: Vobiz gives up on a callback after about 3 seconds.
pub const SLOW_AFTER_MS: f64 = 3000.0;

/// A body for a record: a copy that owns exactly its bytes.
///
/// hyper hands bodies out as slices of its read buffers, which are 8 KB and more, and a slice
/// keeps its whole buffer alive. A record lives on after its exchange (in the event backlog
/// for slow subscribers, in the UI), so held slices pinned ~18 KB per exchange: a printer
/// that fell behind under load held ~35 MB with its 2 048 events. Copying a callback's body
/// costs far less than that, and hyper can then reuse its buffer in place.
pub fn detached(body: &Bytes) -> Bytes {
    Bytes::copy_from_slice(body)
}

/// Microseconds since the Unix epoch; the unit of every timestamp in the store.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Header fields in the order they were received. Values are raw bytes: HTTP allows octets
/// that are not UTF-8, and a recorded request must be replayable exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` as text, when it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// `name: value\r\n` lines: the storage form, readable with `sqlite3` and exact to the byte.
    pub fn to_block(&self) -> Vec<u8> {
        let mut block = Vec::with_capacity(self.0.iter().map(|(n, v)| n.len() + v.len() + 4).sum());
        for (name, value) in &self.0 {
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(b": ");
            block.extend_from_slice(value);
            block.extend_from_slice(b"\r\n");
        }
        block
    }

    /// Parses what [`Headers::to_block`] wrote. Lines without a colon are skipped.
    pub fn from_block(block: &[u8]) -> Self {
        let mut headers = Vec::new();
        for line in block.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = String::from_utf8_lossy(&line[..colon]).into_owned();
            let mut value = &line[colon + 1..];
            if let Some(rest) = value.strip_prefix(b" ") {
                value = rest;
            }
            headers.push((name, value.to_vec()));
        }
        Headers(headers)
    }

    /// A header's value as a screen shows it: the credentials of an `Authorization` (or
    /// `Proxy-Authorization`) header masked, Basic's user kept; anything else as it came
    /// (lossy UTF-8). The store and the exports keep the bytes: a replay needs them.
    pub fn shown_value(name: &str, value: &[u8]) -> String {
        let text = String::from_utf8_lossy(value);
        let secret = name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization");
        if !secret {
            return text.into_owned();
        }
        let Some((scheme, credentials)) = text.trim().split_once(' ') else {
            return format!("({} characters hidden)", text.trim().chars().count());
        };
        let credentials = credentials.trim();
        let hidden = format!("({} characters hidden)", credentials.chars().count());
        match crate::signature::other_urls::decode_basic(&text) {
            Some((user, _)) => format!("{scheme} {hidden}: user {user:?}, password hidden"),
            None => format!("{scheme} {hidden}"),
        }
    }

    /// Text pairs as a screen shows them ([`Headers::shown_value`]).
    pub fn shown_pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(name, value)| (name.clone(), Headers::shown_value(name, value)))
            .collect()
    }

    /// Lossy text pairs, the form the signature check and the displays take.
    pub fn to_text_pairs(&self) -> Vec<(String, String)> {
        self.text_pairs_where(|_| true)
    }

    /// [`Headers::to_text_pairs`] of just the headers whose name passes `keep`.
    pub fn text_pairs_where(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

/// TLS facts of the connection a request came in on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    pub version: Option<String>,
    pub alpn: Option<String>,
    pub sni: Option<String>,
}

/// What was received, exactly as received.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    /// Origin-form target as received: path and query.
    pub target: String,
    pub http_version: String,
    pub host: Option<String>,
    /// The URL the signature was checked against (public scheme and host + target).
    pub public_url: String,
    pub headers: Headers,
    /// Shared, not copied: the same bytes are forwarded, recorded and published.
    pub body: Bytes,
    /// The body was cut at the size limit (or the client stopped sending); `body` holds the prefix.
    pub body_truncated: bool,
    pub client_addr: Option<String>,
    pub tls: TlsInfo,
}

impl RequestRecord {
    /// Path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The body is a form: non-empty, sent as `application/x-www-form-urlencoded` (in any
    /// case: media types are case-insensitive, and the signature check reads them so).
    pub fn is_form_post(&self) -> bool {
        const FORM: &str = "application/x-www-form-urlencoded";
        !self.body.is_empty()
            && self.headers.get_str("content-type").is_some_and(|ct| {
                ct.len() >= FORM.len()
                    && ct.as_bytes()[..FORM.len()].eq_ignore_ascii_case(FORM.as_bytes())
            })
    }

    /// One form field (first occurrence), found without decoding the others: this runs for
    /// every request, to fill the `event` and `call_uuid` columns.
    pub fn form_field(&self, name: &str) -> Option<String> {
        self.raw_form_pairs()
            .find(|(raw_name, _)| *raw_name == name.as_bytes())
            .map(|(_, raw_value)| decode_form_component(raw_value))
    }

    /// The form's `name=value` pairs as sent (the body for form posts, else the query),
    /// split but not decoded, so a caller decodes only the fields it wants.
    pub fn raw_form_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let source: &[u8] = if self.is_form_post() {
            &self.body
        } else {
            self.target
                .split_once('?')
                .map_or(&[], |(_, q)| q.as_bytes())
        };
        FormPairs { rest: source }
    }

    /// For a body that holds a whole request as received (see
    /// [`Exchange::body_is_the_raw_request`]): the same record with only what followed its
    /// head as the body, nothing when the head never ended.
    pub fn after_the_head(&self) -> RequestRecord {
        let body = &self.body;
        // Whichever ends the head first: a body may hold the other.
        let crlf = memchr::memmem::find(body, b"\r\n\r\n").map(|i| i + 4);
        let lf = memchr::memmem::find(body, b"\n\n").map(|i| i + 2);
        let start = match (crlf, lf) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(body.len()),
        };
        RequestRecord {
            body: body.slice(start..),
            ..self.clone()
        }
    }

    /// Form fields of the callback: the body for form posts, else the query string.
    pub fn form_fields(&self) -> Vec<(String, String)> {
        if self.is_form_post() {
            if let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&self.body) {
                return fields;
            }
        }
        match self.target.split_once('?') {
            Some((_, query)) => serde_urlencoded::from_str(query).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

/// The `name=value` pairs of a form, split at `&` and the first `=` (empty pairs skipped).
/// memchr finds the separators: a callback's form is scanned several times per request.
struct FormPairs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FormPairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (pair, rest) = match memchr::memchr(b'&', self.rest) {
                Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            if pair.is_empty() {
                continue;
            }
            return Some(match memchr::memchr(b'=', pair) {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            });
        }
    }
}

/// One `application/x-www-form-urlencoded` name or value, decoded (`+` is a space, `%XX` a
/// byte; invalid UTF-8 is replaced, as serde_urlencoded does for whole forms).
pub fn decode_form_component(raw: &[u8]) -> String {
    String::from_utf8_lossy(&form_decoded_bytes(raw)).into_owned()
}

/// `raw` with `+` as a space and each `%XX` as its byte, borrowed when there is nothing to
/// decode. A `%` not followed by two hex digits stays as it is; `&` and `=` are untouched, so a
/// whole form body decodes to its fields' text as people read it.
pub fn form_decoded_bytes(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'+' || b == b'%') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let escaped = match raw[i] {
            b'%' => raw
                .get(i + 1..i + 3)
                .and_then(|pair| Some(hex(pair[0])? << 4 | hex(pair[1])?)),
            _ => None,
        };
        match (raw[i], escaped) {
            (_, Some(byte)) => {
                bytes.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => bytes.push(b' '),
            (other, None) => bytes.push(other),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(bytes)
}

/// What the local server (or the tool itself) answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseRecord {
    pub status: u16,
    pub headers: Headers,
    pub body: Bytes,
}

/// When each phase happened, in microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub received_us: i64,
    pub forwarded_us: Option<i64>,
    pub first_byte_us: Option<i64>,
    pub done_us: Option<i64>,
}

impl Timings {
    /// Time from receipt to the end of the exchange, in milliseconds. Saturating: imported
    /// timings can be any `i64`.
    pub fn duration_ms(&self) -> Option<f64> {
        self.done_us
            .map(|done| done.saturating_sub(self.received_us).max(0) as f64 / 1000.0)
    }
}

/// How an exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Recorded, not finished yet (or the tool stopped before it finished).
    Pending,
    /// The local server answered; its response went back to the sender.
    Forwarded,
    /// `--reject-invalid` answered 403 to an invalid or unsigned callback.
    Rejected,
    /// The body exceeded `--max-body`; answered 413.
    TooLarge,
    /// The client sent a broken or incomplete request, or was too slow sending it.
    ClientError,
    /// The local server could not be reached or broke the connection; answered 502.
    UpstreamError,
    /// The local server did not answer within `--forward-timeout`; answered 504.
    UpstreamTimeout,
}

impl Outcome {
    /// Whether the sender's own request decided how long the exchange took: a body too large,
    /// broken or slow in coming. Its duration is then no measure of how fast it was answered.
    pub fn sender_set_the_pace(self) -> bool {
        matches!(self, Outcome::TooLarge | Outcome::ClientError)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::TooLarge => "too_large",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Outcome::Pending,
            "forwarded" => Outcome::Forwarded,
            "rejected" => Outcome::Rejected,
            "too_large" => Outcome::TooLarge,
            "client_error" => Outcome::ClientError,
            "upstream_error" => Outcome::UpstreamError,
            "upstream_timeout" => Outcome::UpstreamTimeout,
            _ => return None,
        })
    }
}

/// Who closed the request before its answer: the sender itself, or, for a callback that came
/// through the relay, the relay's stream (which cannot tell this end why).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhoLeft {
    Sender,
    Relay,
}

/// Notable facts about an exchange, for filtering and for the eye.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// Answered after more than 3 s: Vobiz would have given up and retried.
    Slow,
    /// Same nonce and signature as an earlier exchange: a replayed request.
    NonceReused,
    /// Sent by vobiz-tunnel's replay.
    Replay,
    /// The local server failed (502/504).
    UpstreamError,
    /// Answered 403 by `--reject-invalid`.
    Rejected,
    /// Over the body size limit.
    TooLarge,
    /// The client's request was broken or incomplete.
    ClientError,
    /// Read from a HAR file by `import`, not received by the listener.
    Imported,
    /// A Vobiz retry or duplicate delivery: the same callback (`CallUUID`, `Event` and its
    /// identifying fields) as an earlier exchange, with or without a new nonce.
    Duplicate,
    /// The sender closed the connection (or reset the stream) before its answer was written:
    /// the status is what it would have got. Vobiz treats that as a failed callback.
    SenderGone,
    /// Left pending by a process that stopped (killed, crashed) before the exchange ended:
    /// whether and how its sender was answered is unknown.
    Interrupted,
}

impl Flag {
    /// Every flag, for listings (filter help, error messages).
    pub const ALL: [Flag; 11] = [
        Flag::Slow,
        Flag::NonceReused,
        Flag::Replay,
        Flag::UpstreamError,
        Flag::Rejected,
        Flag::TooLarge,
        Flag::ClientError,
        Flag::Imported,
        Flag::Duplicate,
        Flag::SenderGone,
        Flag::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Slow => "slow",
            Flag::NonceReused => "nonce_reused",
            Flag::Replay => "replay",
            Flag::UpstreamError => "upstream_error",
            Flag::Rejected => "rejected",
            Flag::TooLarge => "too_large",
            Flag::ClientError => "client_error",
            Flag::Imported => "imported",
            Flag::Duplicate => "duplicate",
            Flag::SenderGone => "sender_gone",
            Flag::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "slow" => Flag::Slow,
            "nonce_reused" => Flag::NonceReused,
            "replay" => Flag::Replay,
            "upstream_error" => Flag::UpstreamError,
            "rejected" => Flag::Rejected,
            "too_large" => Flag::TooLarge,
            "client_error" => Flag::ClientError,
            "imported" => Flag::Imported,
            "duplicate" => Flag::Duplicate,
            "sender_gone" => Flag::SenderGone,
            "interrupted" => Flag::Interrupted,
            _ => return None,
        })
    }
}

/// One request/response exchange, from receipt to the end.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    /// `None` until the store assigned an id (or when the store could not record it).
    pub id: Option<ExchangeId>,
    /// The exchange this one replays.
    pub replay_of: Option<ExchangeId>,
    /// The earlier exchange that carried the same nonce and signature.
    pub nonce_reused_of: Option<ExchangeId>,
    /// Where a replay was sent, when not to the local server (the whole URL it reached).
    pub sent_to: Option<String>,
    pub request: RequestRecord,
    pub verdict: Verdict,
    /// Vobiz `Event` field (`StartApp`, `Hangup`, ...), derived for filtering.
    pub event: Option<String>,
    /// Vobiz `CallUUID` field, derived for filtering and grouping.
    pub call_uuid: Option<String>,
    pub outcome: Outcome,
    /// What went wrong, in a sentence that names the failing side.
    pub error: Option<String>,
    pub response: Option<ResponseRecord>,
    pub timings: Timings,
    pub flags: Vec<Flag>,
    /// What the Vobiz checks ([`crate::checks`]) found: XML lint and delivery analysis.
    pub findings: Vec<Finding>,
}

impl Exchange {
    /// A freshly received request: derives `event` and `call_uuid` from its fields.
    pub fn received(request: RequestRecord, verdict: Verdict, received_us: i64) -> Self {
        let field = |name: &str| request.form_field(name).filter(|v| !v.is_empty());
        Exchange {
            id: None,
            replay_of: None,
            nonce_reused_of: None,
            sent_to: None,
            event: field("Event"),
            // The Record API's callback names the call in snake_case.
            call_uuid: field("CallUUID").or_else(|| field("call_uuid")),
            request,
            verdict,
            outcome: Outcome::Pending,
            error: None,
            response: None,
            timings: Timings {
                received_us,
                ..Timings::default()
            },
            flags: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }

    pub fn add_flag(&mut self, flag: Flag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
        }
    }

    pub fn has_flag(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// The request was refused as invalid HTTP, so its body holds every byte received, head
    /// included: not a body to read form fields from as it is, or to send again as one. (A
    /// body the sender stopped sending is a client error too, but marked truncated.)
    pub fn body_is_the_raw_request(&self) -> bool {
        self.outcome == Outcome::ClientError && !self.request.body_truncated
    }

    /// The form fields a reader is shown: the request's; for one refused as invalid HTTP,
    /// those of what followed its head.
    pub fn form_fields(&self) -> Vec<(String, String)> {
        match self.body_is_the_raw_request() {
            true => self.request.after_the_head().form_fields(),
            false => self.request.form_fields(),
        }
    }

    /// The local server answered.
    pub fn answered(&mut self, response: ResponseRecord, first_byte_us: i64) {
        self.timings.first_byte_us = Some(first_byte_us);
        self.response = Some(response);
        self.outcome = Outcome::Forwarded;
    }

    /// The tool answered itself: a short plain-text body that says what happened and where,
    /// prefixed `vobiz-tunnel:` so nobody mistakes it for the app's answer.
    pub fn failed(&mut self, outcome: Outcome, status: u16, message: String) {
        let answer = message.clone();
        self.failed_answering(outcome, status, message, answer);
    }

    /// Like [`Exchange::failed`], but the sender is told `answer` rather than `message`.
    pub fn failed_answering(
        &mut self,
        outcome: Outcome,
        status: u16,
        message: String,
        answer: String,
    ) {
        self.outcome = outcome;
        match outcome {
            Outcome::Rejected => self.add_flag(Flag::Rejected),
            Outcome::TooLarge => self.add_flag(Flag::TooLarge),
            Outcome::ClientError => self.add_flag(Flag::ClientError),
            Outcome::UpstreamError | Outcome::UpstreamTimeout => self.add_flag(Flag::UpstreamError),
            Outcome::Pending | Outcome::Forwarded => {}
        }
        self.response = Some(ResponseRecord {
            status,
            headers: Headers(vec![(
                "content-type".into(),
                b"text/plain; charset=utf-8".to_vec(),
            )]),
            body: Bytes::from(format!("vobiz-tunnel: {answer}\n")),
        });
        self.error = Some(message);
    }

    /// The sender stopped waiting at `gone_us` (µs since the epoch), before the answer was
    /// written to it: flagged, and said in `error` (after the failure's own words, if any).
    pub fn sender_gone(&mut self, gone_us: i64, who: WhoLeft) {
        if self.has_flag(Flag::SenderGone) {
            return;
        }
        self.add_flag(Flag::SenderGone);
        let waited = (gone_us - self.timings.received_us).max(0) as f64 / 1_000_000.0;
        let status = self
            .status()
            .map_or_else(|| "answer".to_string(), |s| format!("{s}"));
        let gone = match who {
            WhoLeft::Sender => format!(
                "the sender gave up {waited:.2} s after sending, before the answer: it never \
                 got this {status}"
            ),
            WhoLeft::Relay => format!(
                "the relay stopped waiting {waited:.2} s after the callback arrived, before \
                 the answer (its sender left, the relay stopped, or the tunnel broke): the \
                 sender never got this {status}"
            ),
        };
        self.error = Some(match self.error.take() {
            Some(error) => format!("{error}; {gone}"),
            None => gone,
        });
    }

    /// Stamps the end: the done time, and `slow` when Vobiz would have given up waiting for
    /// the answer (not when its own request took that long to arrive).
    pub fn done(&mut self) {
        self.timings.done_us = Some(now_micros());
        if self.timings.duration_ms().unwrap_or(0.0) > SLOW_AFTER_MS
            && !self.outcome.sender_set_the_pace()
        {
            self.add_flag(Flag::Slow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Screens show who authenticated, never with what.
    #[test]
    fn credentials_are_masked_where_they_are_shown() {
        // base64("vobizuser:BasicSecretPass123")
        let basic = b"Basic dm9iaXp1c2VyOkJhc2ljU2VjcmV0UGFzczEyMw==";
        let shown = Headers::shown_value("Authorization", basic);
        assert_eq!(
            shown,
            "Basic (40 characters hidden): user \"vobizuser\", password hidden"
        );
        let bearer = Headers::shown_value("proxy-authorization", b"Bearer abc.def.ghi");
        assert_eq!(bearer, "Bearer (11 characters hidden)");
        assert_eq!(
            Headers::shown_value("X-Vobiz-Signature-V3", b"abc="),
            "abc="
        );
        let bare = Headers::shown_value("authorization", b"opaque-token");
        assert_eq!(bare, "(12 characters hidden)");
    }

    #[test]
    fn what_follows_the_head_of_a_request_received_whole() {
        let after = |raw: &'static [u8]| {
            let record = RequestRecord {
                body: Bytes::from_static(raw),
                ..RequestRecord::default()
            };
            record.after_the_head().body
        };
        assert_eq!(after(b"POST / HTTP/1.1\r\nHost: h\r\n\r\na=1"), &b"a=1"[..]);
        // A head of bare line feeds, a body that holds a CRLF pair: the head ends first.
        assert_eq!(
            after(b"POST / HTTP/1.1\nHost: h\n\nx=\r\n\r\ny"),
            &b"x=\r\n\r\ny"[..]
        );
        assert_eq!(
            after(b"POST / HTTP/1.1\r\nHost: h"),
            &b""[..],
            "no end: no body"
        );
    }
    use proptest::prelude::*;

    #[test]
    fn a_detached_body_owns_its_bytes_and_not_the_buffer_it_came_from() {
        let buffer = Bytes::from(vec![7u8; 64 * 1024]);
        let slice = buffer.slice(100..800);
        let body = detached(&slice);
        assert_eq!(body, slice);
        let range = buffer.as_ptr_range();
        assert!(
            !range.contains(&body.as_ptr()),
            "the record's body must not point into hyper's read buffer"
        );
    }

    proptest! {
        /// The one-field decoder agrees with serde_urlencoded's whole-form decoding.
        #[test]
        fn a_form_component_decodes_like_serde_urlencoded(
            raw in proptest::collection::vec(
                prop_oneof![Just(b'%'), Just(b'+'), Just(b'A'), Just(b'f'), Just(b'0'), Just(b'9'),
                    Just(b'g'), Just(b' '), Just(0xc3u8), Just(0xa9u8), any::<u8>()]
                    .prop_filter("no pair separators", |b| *b != b'&' && *b != b'='),
                0..24,
            )
        ) {
            let mut form = b"name=".to_vec();
            form.extend_from_slice(&raw);
            let expected: Vec<(String, String)> = serde_urlencoded::from_bytes(&form).unwrap();
            prop_assert_eq!(decode_form_component(&raw), expected[0].1.clone());
        }

        /// Splitting into raw pairs, then decoding each part, gives serde_urlencoded's pairs.
        #[test]
        fn raw_pairs_split_like_serde_urlencoded(
            form in proptest::collection::vec(
                prop_oneof![Just(b'&'), Just(b'='), Just(b'%'), Just(b'+'), Just(b'a'),
                    Just(b'2'), any::<u8>()],
                0..40,
            )
        ) {
            let request = RequestRecord {
                method: "POST".into(),
                headers: Headers(vec![(
                    "content-type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                )]),
                body: form.clone().into(),
                ..RequestRecord::default()
            };
            let split: Vec<(String, String)> = request
                .raw_form_pairs()
                .map(|(name, value)| (decode_form_component(name), decode_form_component(value)))
                .collect();
            let expected: Vec<(String, String)> = serde_urlencoded::from_bytes(&form).unwrap();
            prop_assert_eq!(split, expected);
        }
    }

    #[test]
    fn header_block_round_trips_bytes_and_order() {
        let headers = Headers(vec![
            ("x-b".into(), b"2".to_vec()),
            (
                "content-type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ),
            ("x-a".into(), vec![0xff, b' ', b'z']),
            ("x-b".into(), b"again".to_vec()),
        ]);
        assert_eq!(Headers::from_block(&headers.to_block()), headers);
    }

    #[test]
    fn form_fields_come_from_the_body_or_the_query() {
        let mut request = RequestRecord {
            target: "/cb?Event=Ring&CallUUID=q".into(),
            headers: Headers(vec![(
                "Content-Type".into(),
                b"application/x-www-form-urlencoded; charset=utf-8".to_vec(),
            )]),
            body: Bytes::from_static(b"Event=Hangup&CallUUID=abc&From=%2B91"),
            ..RequestRecord::default()
        };
        let fields = request.form_fields();
        assert!(fields.contains(&("From".into(), "+91".into())));
        assert_eq!(request.form_field("From").as_deref(), Some("+91"));
        assert_eq!(request.form_field("Event").as_deref(), Some("Hangup"));
        assert_eq!(request.form_field("Nope"), None);
        request.headers = Headers(vec![(
            "content-type".into(),
            b"Application/X-WWW-Form-URLEncoded".to_vec(),
        )]);
        assert_eq!(request.form_field("Event").as_deref(), Some("Hangup"));
        request.body = Bytes::new();
        let verdict = crate::signature::verify(
            &crate::signature::CallbackRequest {
                method: "GET",
                url: "https://example.com/cb",
                headers: &[],
                body: b"",
                extra_ports: &[],
                other_urls: &[],
            },
            &crate::signature::Keys::default(),
        );
        let exchange = Exchange::received(request.clone(), verdict.clone(), 0);
        assert_eq!(exchange.event.as_deref(), Some("Ring"));
        assert_eq!(exchange.call_uuid.as_deref(), Some("q"));
        request.target = "/rec?api_id=1&call_uuid=snake".into();
        let exchange = Exchange::received(request, verdict, 0);
        assert_eq!(exchange.call_uuid.as_deref(), Some("snake"));
    }

    proptest::proptest! {
        #[test]
        fn one_field_agrees_with_all_fields(
            pairs in proptest::collection::vec(("[A-Za-z]{1,6}", ".{0,12}"), 0..8),
            wanted in "[A-Za-z]{1,6}",
        ) {
            let body = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            let request = RequestRecord {
                headers: Headers(vec![(
                    "content-type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                )]),
                body: Bytes::from(body),
                ..RequestRecord::default()
            };
            let expected = request
                .form_fields()
                .into_iter()
                .find(|(k, _)| *k == wanted)
                .map(|(_, v)| v);
            proptest::prop_assert_eq!(request.form_field(&wanted), expected);
        }
    }

    #[test]
    fn slow_means_slow_to_answer_not_slow_to_send() {
        let verdict = Verdict::bare(crate::signature::VerdictStatus::Unsigned);
        for (outcome, slow) in [
            (Outcome::Forwarded, true),
            (Outcome::UpstreamTimeout, true),
            (Outcome::ClientError, false),
            (Outcome::TooLarge, false),
        ] {
            let mut exchange = Exchange::received(
                RequestRecord::default(),
                verdict.clone(),
                now_micros() - 5_000_000,
            );
            exchange.outcome = outcome;
            exchange.done();
            assert_eq!(exchange.has_flag(Flag::Slow), slow, "{outcome:?}");
        }
    }

    #[test]
    fn outcome_and_flag_names_round_trip() {
        for outcome in [
            Outcome::Pending,
            Outcome::Forwarded,
            Outcome::Rejected,
            Outcome::TooLarge,
            Outcome::ClientError,
            Outcome::UpstreamError,
            Outcome::UpstreamTimeout,
        ] {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        for flag in Flag::ALL {
            assert_eq!(Flag::parse(flag.as_str()), Some(flag));
        }
    }
}
