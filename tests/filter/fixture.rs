//! The fixture store of `tests/filter.rs`: exchanges that vary every field a filter can test,
//! written the way the pipeline writes them.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use vobiz_tunnel::checks::{Finding, Severity};
use vobiz_tunnel::exchange::{
    Exchange, ExchangeId, Flag, Headers, Outcome, RequestRecord, ResponseRecord, Timings,
};
use vobiz_tunnel::signature::{Scheme, Verdict, VerdictStatus};
use vobiz_tunnel::store::{Store, StoreReader};

const EVENTS: [Option<&str>; 6] = [
    Some("Hangup"),
    Some("StartApp"),
    None,
    Some("hangup"),
    Some("Ring"),
    Some("DTMF"),
];
const PATHS: [&str; 9] = [
    "/vobiz/hangup",
    "/vobiz/answer",
    "/answer",
    "/answer/v2",
    "/cb",
    "/cb[1]",
    "/a*b",
    "/ünï/x",
    "/CB",
];
const BODIES: [&[u8]; 8] = [
    b"CallUUID=7d1c&Event=Hangup&HangupCauseName=Normal Hangup&Digits=1",
    b"Event=StartApp&Digits=12",
    b"",
    b"status=ERROR \xff\x00 after-nul",
    b"100%_done [x] caf\xc3\xa9 \xc3\x9cN\xc3\x8f",
    b"<xml>Digits=1</xml>",
    b"DIGITS=9",
    b"CallerName=John+Doe&From=%2B14155550100&Odd=%zz%4",
];
const CALLS: [Option<&str>; 5] = [
    Some("7d1c2c5e-0001"),
    Some("7d1c2c5e-0002"),
    None,
    Some("abc*def"),
    Some("ABC-9"),
];
/// (status, outcome, flags). A `None` status is an exchange that never finished.
const ENDINGS: [(Option<u16>, Outcome, &[Flag]); 12] = [
    (Some(200), Outcome::Forwarded, &[]),
    (Some(204), Outcome::Forwarded, &[Flag::Slow]),
    (None, Outcome::Pending, &[]),
    (Some(404), Outcome::Forwarded, &[]),
    (Some(502), Outcome::UpstreamError, &[Flag::UpstreamError]),
    (
        Some(504),
        Outcome::UpstreamTimeout,
        &[Flag::UpstreamError, Flag::Slow],
    ),
    (Some(403), Outcome::Rejected, &[Flag::Rejected]),
    (Some(413), Outcome::TooLarge, &[Flag::TooLarge]),
    (Some(400), Outcome::ClientError, &[Flag::ClientError]),
    (Some(500), Outcome::Forwarded, &[Flag::Imported]),
    (Some(301), Outcome::Forwarded, &[]),
    (None, Outcome::Pending, &[Flag::Imported]),
];
const VERDICTS: [(VerdictStatus, Option<Scheme>); 7] = [
    (VerdictStatus::Valid, Some(Scheme::V3)),
    (VerdictStatus::Invalid, Some(Scheme::V2)),
    (VerdictStatus::Unsigned, None),
    (VerdictStatus::Valid, Some(Scheme::MaV3)),
    (VerdictStatus::Unchecked, Some(Scheme::MaV2)),
    (VerdictStatus::Invalid, Some(Scheme::V3)),
    (VerdictStatus::Valid, Some(Scheme::V2)),
];

/// Exchange number `i` of the fixture: every list above is cycled with a different period,
/// so combinations vary. Exchanges 20 and up replay an earlier one; a few share a nonce.
pub fn exchange(i: usize) -> Exchange {
    let (status, outcome, flags) = ENDINGS[i % ENDINGS.len()];
    let (verdict_status, scheme) = VERDICTS[i % VERDICTS.len()];
    let content_type: &[u8] = if i.is_multiple_of(2) {
        b"text/plain"
    } else {
        b"application/x-www-form-urlencoded"
    };
    let mut headers = vec![("content-type".to_string(), content_type.to_vec())];
    match i % 5 {
        0 => headers.push(("X-Foo".into(), b"bar baz".to_vec())),
        1 => headers.push(("x-foo".into(), b"BAR".to_vec())),
        2 => headers.push(("X-Other".into(), b"bar \xff".to_vec())),
        3 => headers.push(("User-Agent".into(), b"Vobiz/1.0".to_vec())),
        _ => {}
    }
    let mut flags = flags.to_vec();
    let replay_of = (i >= 20).then_some((i % 7 + 1) as ExchangeId);
    if replay_of.is_some() {
        flags.push(Flag::Replay);
    }
    let path = PATHS[i % PATHS.len()];
    Exchange {
        id: None,
        replay_of,
        nonce_reused_of: None,
        sent_to: None,
        request: RequestRecord {
            method: ["POST", "GET", "post"][i % 3].into(),
            target: if i.is_multiple_of(4) {
                format!("{path}?q=1")
            } else {
                path.into()
            },
            http_version: "HTTP/1.1".into(),
            public_url: format!("https://example.com{path}"),
            headers: Headers(headers),
            body: Bytes::from_static(BODIES[i % BODIES.len()]),
            ..RequestRecord::default()
        },
        verdict: Verdict {
            status: verdict_status,
            scheme,
            form: None,
            key: None,
            // Every sixth exchange shares a nonce with the one six before: the store flags it.
            nonce: Some(format!(
                "nonce-{}",
                if i % 6 == 5 && i > 6 { i - 6 } else { i }
            )),
            signature: Some("sig".into()),
            checks: vec![],
            explanation: vec![],
            would_match: None,
        },
        event: EVENTS[i % EVENTS.len()].map(str::to_string),
        call_uuid: CALLS[i % CALLS.len()].map(str::to_string),
        outcome,
        error: None,
        response: status.map(|status| ResponseRecord {
            status,
            ..ResponseRecord::default()
        }),
        timings: Timings {
            received_us: 1_700_000_000_000_000 + i as i64,
            ..Timings::default()
        },
        flags,
        // Some rows with findings, a message quoting what a rule's name looks like.
        findings: match i % 5 {
            0 => vec![Finding::new("xml-root", Severity::Error, "2 root elements")],
            1 => vec![
                Finding::new(
                    "slow-answer",
                    Severity::Warning,
                    r#"took "rule":"xml-root""#,
                ),
                Finding::new("unsigned", Severity::Warning, "unsigned"),
            ],
            _ => Vec::new(),
        },
    }
}

/// Fills a store with `count` fixture exchanges the way the pipeline does (insert, then
/// complete), and returns the exchanges as read back.
pub fn fill(path: &Path, count: usize) -> (StoreReader, Vec<Exchange>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Store::open(path).unwrap();
    runtime.block_on(async {
        for i in 0..count {
            let mut ex = exchange(i);
            let inserted = store.insert(Arc::new(ex.clone())).await.unwrap();
            ex.id = Some(inserted.id);
            if let Some(earlier) = inserted.nonce_reused_of {
                ex.nonce_reused_of = Some(earlier);
                ex.flags.push(Flag::NonceReused);
            }
            if ex.outcome != Outcome::Pending {
                store.complete(Arc::new(ex));
            }
        }
        store.flush().await;
    });
    let reader = store.reader().unwrap();
    let stored = (1..=count as ExchangeId)
        .map(|id| reader.get(id).unwrap().unwrap())
        .collect();
    (reader, stored)
}
