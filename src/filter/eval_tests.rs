//! In-memory matching tests. Agreement with the SQL side is tested against a real store in
//! `tests/filter.rs`.

use super::*;
use crate::exchange::{Headers, RequestRecord, ResponseRecord};
use crate::signature::Verdict;

/// A Hangup POST to /vobiz/hangup answered 503, flagged slow.
fn exchange() -> Exchange {
    Exchange {
        id: Some(7),
        replay_of: Some(3),
        nonce_reused_of: None,
        sent_to: None,
        request: RequestRecord {
            method: "POST".into(),
            target: "/vobiz/hangup?x=1".into(),
            headers: Headers(vec![
                (
                    "content-type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                ),
                ("X-Trace".into(), b"abc Def".to_vec()),
                ("x-trace".into(), b"second".to_vec()),
            ]),
            body: bytes::Bytes::from_static(
                b"CallUUID=7d1c-aa&Event=Hangup&HangupCauseName=Normal Hangup&Digits=1&From=%2B1415+x\xff",
            ),
            ..RequestRecord::default()
        },
        verdict: Verdict {
            status: VerdictStatus::Invalid,
            scheme: Some(Scheme::MaV3),
            form: None,
            key: None,
            nonce: None,
            signature: None,
            checks: vec![],
            explanation: vec![],
            would_match: None,
        },
        event: Some("Hangup".into()),
        call_uuid: Some("7d1c-aa".into()),
        outcome: Outcome::Forwarded,
        error: None,
        response: Some(ResponseRecord {
            status: 503,
            ..ResponseRecord::default()
        }),
        timings: Default::default(),
        flags: vec![Flag::Slow, Flag::Replay],
        findings: Vec::new(),
    }
}

#[test]
fn empty_and_blank_text_is_the_empty_filter() {
    for text in ["", "   ", "\t\n"] {
        let filter = Filter::parse(text).unwrap();
        assert!(filter.is_empty());
        assert_eq!(filter.text(), text);
        assert!(filter.matches(&exchange()));
        assert_eq!(
            filter.matches_summary(&ExchangeSummary::of(&exchange())),
            Some(true)
        );
    }
    assert!(Filter::default().is_empty());
}

#[test]
fn matches_every_kind_of_term() {
    let ex = exchange();
    let yes = [
        "hangup",
        "HANGUP",
        "/VOBIZ",
        "x=1",
        "normal",
        "\"Normal Hangup\"",
        "event:hangup",
        "call:7d1c",
        "call:7D1C",
        "call:7d1c-aa",
        "\"from=+1415 x\"",
        "%2b1415+X",
        "method:post",
        "status:503",
        "status:5xx",
        "status:>=500",
        "status:>502",
        "status:<504",
        "status:<=503",
        "sig:invalid",
        "scheme:MA-V3",
        "path:/vobiz/hangup",
        "path:/vobiz/*",
        "path:/vobiz/hang?p",
        "path:*",
        "header:x-trace",
        "header:X-TRACE=Def",
        "header:x-trace=second",
        "body:Digits=1",
        "body:\"Normal Hangup\"",
        "outcome:forwarded",
        "flag:slow",
        "slow",
        "replay",
        "id:7",
        "id:5..7",
        "id:>6",
        "replay_of:3",
        "!reused",
        "!error",
        "!status:none",
        "!sig:valid",
        "!call:7d1c-aab",
        "event:Hangup status:5xx slow",
    ];
    for text in yes {
        assert!(
            Filter::parse(text).unwrap().matches(&ex),
            "{text} should match"
        );
    }
    let no = [
        "ring",
        "event:Hang",
        "call:7D1D",
        "\"1415 x x\"",
        "call:aa",
        "method:get",
        "status:200",
        "status:4xx",
        "status:none",
        "status:>503",
        "sig:valid",
        "scheme:V3",
        "path:/vobiz",
        "path:/vobiz/?",
        "path:/VOBIZ/*",
        "path:*?x=1",
        "header:x-other",
        "header:x-trace=def",
        "body:digits",
        "body:x=1",
        "outcome:rejected",
        "reused",
        "error",
        "id:8..",
        "id:<7",
        "replay_of:4",
        "!slow",
        "!hangup",
        "event:Hangup status:2xx",
    ];
    for text in no {
        assert!(
            !Filter::parse(text).unwrap().matches(&ex),
            "{text} should not match"
        );
    }
}

#[test]
fn no_status_matches_only_status_none_and_missing_fields_match_nothing() {
    let mut ex = exchange();
    ex.response = None;
    ex.event = None;
    ex.call_uuid = None;
    ex.id = None;
    for text in [
        "status:200",
        "status:5xx",
        "status:>=100",
        "status:<=999",
        "call:7",
        "id:..99",
    ] {
        assert!(!Filter::parse(text).unwrap().matches(&ex), "{text}");
    }
    for text in ["status:none", "!status:5xx", "!event:Hangup", "!call:7"] {
        assert!(Filter::parse(text).unwrap().matches(&ex), "{text}");
    }
}

#[test]
fn summaries_decide_unless_headers_or_body_are_needed() {
    let ex = exchange();
    let summary = ExchangeSummary::of(&ex);
    let decide = |text: &str| Filter::parse(text).unwrap().matches_summary(&summary);
    assert_eq!(
        decide("event:Hangup status:5xx !reused id:7 path:/vobiz/*"),
        Some(true)
    );
    assert_eq!(decide("sig:valid"), Some(false));
    assert_eq!(decide("hangup"), None);
    assert_eq!(decide("!body:x header:a"), None);
    assert_eq!(
        decide("hangup sig:valid"),
        Some(false),
        "a failing summary term decides"
    );
    assert_eq!(decide("hangup sig:invalid"), None);
}

#[test]
fn glob_wildcards() {
    use super::eval::glob;
    assert!(glob("*", ""));
    assert!(glob("a*c", "abbbc"));
    assert!(glob("a*c", "ac"));
    assert!(glob("?é?", "xéy"), "? is one character, not one byte");
    assert!(glob("*a*b", "xxaxxab"));
    assert!(glob("[x]", "[x]"), "brackets are literal");
    assert!(!glob("a*c", "abcd"));
    assert!(!glob("?", ""));
    assert!(!glob("a", "A"));
}

proptest::proptest! {
    /// The per-row scan of the stored block agrees with the parsed `Headers` the in-memory
    /// side uses, on arbitrary bytes (lines without a colon, bare CR, invalid UTF-8 ...).
    #[test]
    fn block_scan_agrees_with_from_block(
        block in proptest::collection::vec(
            proptest::sample::select(b"aAbB:: \r\n\xff=-".to_vec()), 0..40),
        name in "[aAbB-]{1,3}",
        value in proptest::option::of("[aAbB :=-]{0,3}"),
    ) {
        let parsed = Headers::from_block(&block);
        let expected = parsed.0.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case(&name)
                && value.as_deref().is_none_or(|t| {
                    t.is_empty() || v.windows(t.len()).any(|w| w == t.as_bytes())
                })
        });
        proptest::prop_assert_eq!(
            super::eval::header_in_block(&block, &name, value.as_deref()),
            expected
        );
    }
}
