//! In-memory evaluation, over a whole exchange or over a list summary. Every comparison here
//! has a twin in `sql.rs`; the two must give the same answer for every stored exchange, so
//! case folding is ASCII-only (as SQLite's `lower` and `NOCASE`) and text tests work on bytes.

use super::{Term, Test};
use crate::checks::Finding;
use crate::exchange::{Exchange, ExchangeId, Flag, Headers, Outcome};
use crate::signature::{Scheme, VerdictStatus};
use crate::store::ExchangeSummary;

/// The fields a term may look at. `request` (headers, body) is `None` for a summary.
pub(super) struct Record<'a> {
    id: Option<ExchangeId>,
    method: &'a str,
    path: &'a str,
    /// The path and query as received.
    target: &'a str,
    status: Option<u16>,
    signature: VerdictStatus,
    scheme: Option<Scheme>,
    event: Option<&'a str>,
    call_uuid: Option<&'a str>,
    outcome: Outcome,
    flags: &'a [Flag],
    findings: &'a [Finding],
    replay_of: Option<ExchangeId>,
    request: Option<(&'a Headers, &'a [u8])>,
}

impl<'a> Record<'a> {
    pub(super) fn of_exchange(exchange: &'a Exchange) -> Self {
        Record {
            id: exchange.id,
            method: &exchange.request.method,
            path: exchange.request.path(),
            target: &exchange.request.target,
            status: exchange.status(),
            signature: exchange.verdict.status,
            scheme: exchange.verdict.scheme,
            event: exchange.event.as_deref(),
            call_uuid: exchange.call_uuid.as_deref(),
            outcome: exchange.outcome,
            flags: &exchange.flags,
            findings: &exchange.findings,
            replay_of: exchange.replay_of,
            request: Some((&exchange.request.headers, &exchange.request.body)),
        }
    }

    pub(super) fn of_summary(summary: &'a ExchangeSummary) -> Self {
        Record {
            id: summary.id,
            method: &summary.method,
            path: &summary.path,
            target: &summary.target,
            status: summary.status,
            signature: summary.signature,
            scheme: summary.signature_scheme,
            event: summary.event.as_deref(),
            call_uuid: summary.call_uuid.as_deref(),
            outcome: summary.outcome,
            flags: &summary.flags,
            findings: &summary.findings,
            replay_of: summary.replay_of,
            request: None,
        }
    }
}

impl Term {
    /// `None` when the record lacks what the term needs (a summary has no headers or body).
    pub(super) fn eval(&self, record: &Record<'_>) -> Option<bool> {
        let answer = self.test.eval(record)?;
        Some(answer != self.negated)
    }
}

impl Test {
    fn eval(&self, r: &Record<'_>) -> Option<bool> {
        Some(match self {
            Test::Text(needle) => {
                let (_, body) = r.request?;
                let needle = needle.as_bytes();
                // The query too: a GET callback's fields are there.
                body_contains_ignoring_case(r.target.as_bytes(), needle)
                    || r.event
                        .is_some_and(|e| contains_ignoring_case(e.as_bytes(), needle))
                    || body_contains_ignoring_case(body, needle)
            }
            Test::Event(event) => r.event.is_some_and(|e| e.eq_ignore_ascii_case(event)),
            Test::CallPrefix(prefix) => r.call_uuid.is_some_and(|c| {
                c.as_bytes()
                    .get(..prefix.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
            }),
            Test::Method(method) => r.method.eq_ignore_ascii_case(method),
            Test::StatusNone => r.status.is_none(),
            Test::Status { min, max } => r.status.is_some_and(|s| (*min..=*max).contains(&s)),
            Test::Signature(status) => r.signature == *status,
            Test::Scheme(scheme) => r.scheme == Some(*scheme),
            Test::PathExact(path) => r.path == path,
            Test::PathGlob(pattern) => glob(pattern, r.path),
            Test::Header { name, value } => {
                let (headers, _) = r.request?;
                headers
                    .0
                    .iter()
                    .any(|(n, v)| header_matches(n.as_bytes(), v, name, value.as_deref()))
            }
            Test::Body(text) => contains(r.request?.1, text.as_bytes()),
            Test::Outcome(outcomes) => outcomes.contains(&r.outcome),
            Test::Flag(flag) => r.flags.contains(flag),
            Test::Finding(wanted) => r
                .findings
                .iter()
                .any(|f| f.rule == *wanted || f.severity.as_str() == *wanted),
            Test::Id { min, max } => r.id.is_some_and(|id| (*min..=*max).contains(&id)),
            Test::ReplayOf(id) => r.replay_of == Some(*id),
        })
    }
}

/// Whether `haystack` contains `needle`, byte for byte.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Like [`contains`], with ASCII letters folded; `needle` is already lower-case.
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack.windows(needle.len()).any(|w| {
            w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

/// A bare word against a request body: the body as stored or, for a form, as people read
/// it (`John+Doe` is found by `john doe`, `%2B1415` by `+1415`).
pub(super) fn body_contains_ignoring_case(body: &[u8], needle: &[u8]) -> bool {
    contains_ignoring_case(body, needle) || {
        let decoded = crate::exchange::form_decoded_bytes(body);
        matches!(decoded, std::borrow::Cow::Owned(_)) && contains_ignoring_case(&decoded, needle)
    }
}

/// Glob match over characters: `*` matches any run (also empty), `?` exactly one character,
/// anything else itself. Same answers as SQLite's GLOB once `[` is escaped (see `sql.rs`).
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((star_pi, star_ti)) => {
                    pi = star_pi + 1;
                    ti = star_ti + 1;
                    star = Some((star_pi, star_ti + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One header against a `header:` term: name equal ignoring ASCII case, value containing
/// `value` (byte for byte) when one is asked for.
fn header_matches(name: &[u8], value: &[u8], want: &str, want_value: Option<&str>) -> bool {
    name.eq_ignore_ascii_case(want.as_bytes())
        && want_value.is_none_or(|text| contains(value, text.as_bytes()))
}

/// [`header_matches`] over a stored header block, split exactly as
/// [`Headers::from_block`] splits it, without allocating (it runs once per scanned row).
pub(super) fn header_in_block(block: &[u8], want: &str, want_value: Option<&str>) -> bool {
    block.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        header_matches(&line[..colon], value, want, want_value)
    })
}
