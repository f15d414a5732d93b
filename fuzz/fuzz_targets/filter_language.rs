//! The filter language: `Filter::parse` on arbitrary text, then both evaluators on a small
//! store of awkward exchanges (built once per process, in a temporary directory).
//!
//! Properties: nothing panics; an error's column is within the text (or one past its end);
//! a parsed filter keeps its text; the SQL the store runs (`ids_matching`, `count_matching`,
//! `page`) selects exactly the exchanges `Filter::matches` accepts; `matches_summary`, when
//! it decides, agrees with `matches`.

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vobiz_tunnel::exchange::{
    Exchange, ExchangeId, Flag, Headers, Outcome, RequestRecord, ResponseRecord, Timings,
};
use vobiz_tunnel::filter::Filter;
use vobiz_tunnel::signature::{Scheme, Verdict, VerdictStatus};
use vobiz_tunnel::store::{ExchangeSummary, Store, StoreReader};

const PATHS: &[&str] = &[
    "/vobiz/hangup",
    "/vobiz/answer",
    "/answer",
    "/cb",
    "/cb[1]",
    "/a*b",
    "/ünï/x",
    "/CB",
    "/",
    "/%41b_c",
    "/İß/ǅ",
    "/a]b^c",
    "",
];
const EVENTS: &[Option<&str>] = &[
    Some("Hangup"),
    Some("hangup"),
    None,
    Some("StartApp"),
    Some("İNGUP"),
    Some("Ring"),
    Some("a%b_c"),
];
const BODIES: &[&[u8]] = &[
    b"CallUUID=7d1c&Event=Hangup&HangupCauseName=Normal Hangup&Digits=1",
    b"",
    b"status=ERROR \xff\x00 after-nul",
    b"100%_done [x] caf\xc3\xa9 \xc3\x9cN\xc3\x8f \xc4\xb0",
    b"<xml>Digits=1</xml>",
    b"DIGITS=9\r\n\t",
    b"\x00",
];
const CALLS: &[Option<&str>] = &[
    Some("7d1c2c5e-0001"),
    Some("7d1c2c5e-0002"),
    None,
    Some("abc*def"),
    Some("a[b]?c"),
    Some("ÄBC-9"),
];
const HEADERS: &[&[(&str, &[u8])]] = &[
    &[("X-Foo", b"bar baz")],
    &[("x-foo", b"BAR"), ("X-Foo", b"")],
    &[("X-Other", b"bar \xff"), ("X-Colon", b"a: b:c")],
    &[("User-Agent", b"Vobiz/1.0")],
    &[],
    &[("X-Space", b" lead"), ("X-CR", b"a\rb")],
];
const METHODS: &[&str] = &["POST", "GET", "post", "DELETE"];
const ENDINGS: &[(Option<u16>, Outcome, &[Flag])] = &[
    (Some(200), Outcome::Forwarded, &[]),
    (Some(204), Outcome::Forwarded, &[Flag::Slow]),
    (None, Outcome::Pending, &[]),
    (Some(404), Outcome::Forwarded, &[Flag::Duplicate]),
    (Some(502), Outcome::UpstreamError, &[Flag::UpstreamError]),
    (
        Some(504),
        Outcome::UpstreamTimeout,
        &[Flag::UpstreamError, Flag::Slow],
    ),
    (Some(403), Outcome::Rejected, &[Flag::Rejected]),
    (Some(413), Outcome::TooLarge, &[Flag::TooLarge]),
    (Some(400), Outcome::ClientError, &[Flag::ClientError]),
    (Some(999), Outcome::Forwarded, &[Flag::Imported]),
    (Some(100), Outcome::Forwarded, &[]),
];
const VERDICTS: &[(VerdictStatus, Option<Scheme>)] = &[
    (VerdictStatus::Valid, Some(Scheme::V3)),
    (VerdictStatus::Invalid, Some(Scheme::V2)),
    (VerdictStatus::Unsigned, None),
    (VerdictStatus::Valid, Some(Scheme::MaV3)),
    (VerdictStatus::Unchecked, Some(Scheme::MaV2)),
    (VerdictStatus::Unsigned, Some(Scheme::V1)),
];

/// Exchange `i`: each list cycled with its own period, so combinations vary.
fn exchange(i: usize) -> Exchange {
    let (status, outcome, flags) = ENDINGS[i % ENDINGS.len()];
    let (verdict_status, scheme) = VERDICTS[i % VERDICTS.len()];
    let path = PATHS[i % PATHS.len()];
    let mut headers: Vec<(String, Vec<u8>)> = HEADERS[i % HEADERS.len()]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    let content_type: &[u8] = match i % 3 {
        0 => b"application/x-www-form-urlencoded",
        _ => b"text/plain",
    };
    headers.insert(0, ("content-type".into(), content_type.to_vec()));
    let mut flags = flags.to_vec();
    let replay_of = (i >= 20).then_some((i % 7 + 1) as ExchangeId);
    if replay_of.is_some() {
        flags.push(Flag::Replay);
    }
    Exchange {
        id: None,
        replay_of,
        nonce_reused_of: None,
        sent_to: None,
        request: RequestRecord {
            method: METHODS[i % METHODS.len()].into(),
            target: match i % 4 {
                0 => format!("{path}?q=1&Event=x"),
                _ => path.into(),
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
            nonce: Some(format!("nonce-{}", if i % 6 == 5 { i - 5 } else { i })),
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
            done_us: status.map(|_| 1_700_000_000_000_000 + i as i64 * 1_000_000),
            ..Timings::default()
        },
        flags,
        findings: Vec::new(),
    }
}

struct Fixture {
    reader: StoreReader,
    stored: Vec<Exchange>,
    summaries: Vec<ExchangeSummary>,
    _dir: tempfile::TempDir,
}

/// The store, written the way the pipeline writes (insert, then complete), and read back.
fn fixture() -> Fixture {
    const COUNT: usize = 42;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&dir.path().join("fuzz.db")).expect("a store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for i in 0..COUNT {
            let mut ex = exchange(i);
            let inserted = store.insert(Arc::new(ex.clone())).await.expect("insert");
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
    let reader = store.reader().expect("a reader");
    let stored: Vec<Exchange> = (1..=COUNT as ExchangeId)
        .map(|id| reader.get(id).expect("read").expect("stored"))
        .collect();
    let summaries = reader
        .page(&Filter::default(), None, 1000)
        .expect("all summaries");
    assert_eq!(summaries.len(), COUNT);
    Fixture {
        reader,
        stored,
        summaries,
        _dir: dir,
    }
}

static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let filter = match Filter::parse(text) {
        Ok(filter) => filter,
        Err(e) => {
            let chars = text.chars().count();
            assert!(
                (1..=chars + 1).contains(&e.column),
                "column {} of {chars} characters: {e}",
                e.column
            );
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(filter.text(), text);
    assert_eq!(filter.to_string(), text);
    if text.trim().is_empty() {
        assert!(filter.is_empty());
    }

    let fixture = FIXTURE.get_or_init(|| Mutex::new(fixture()));
    let fixture = fixture.lock().unwrap_or_else(|e| e.into_inner());
    let expected: Vec<ExchangeId> = fixture
        .stored
        .iter()
        .filter(|ex| filter.matches(ex))
        .filter_map(|ex| ex.id)
        .collect();
    let reader = &fixture.reader;
    assert_eq!(
        reader.ids_matching(&filter).expect("SQL runs"),
        expected,
        "SQL and memory disagree on {text:?}"
    );
    assert_eq!(
        reader.count_matching(&filter).expect("SQL runs"),
        expected.len() as u64
    );
    let page: Vec<ExchangeId> = reader
        .page(&filter, None, 1000)
        .expect("SQL runs")
        .iter()
        .filter_map(|s| s.id)
        .collect();
    assert_eq!(page, expected, "page for {text:?}");
    for (summary, ex) in fixture.summaries.iter().zip(&fixture.stored) {
        let whole = filter.matches(ex);
        if let Some(answer) = filter.matches_summary(summary) {
            assert_eq!(answer, whole, "summary of #{:?} for {text:?}", ex.id);
        }
        if let Some(answer) = filter.matches_summary(&ExchangeSummary::of(ex)) {
            assert_eq!(answer, whole, "summary of #{:?} for {text:?}", ex.id);
        }
    }
});
