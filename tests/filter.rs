//! The filter language against a real store: the SQL the store runs must select exactly the
//! exchanges `Filter::matches` accepts (listed expressions and generated ones), pagination
//! must walk the same set, and `list --filter` must work from the command line.

#[path = "filter/fixture.rs"]
mod fixture;

use std::path::Path;
use std::process::Command;

use fixture::fill;
use proptest::prelude::*;
use vobiz_tunnel::exchange::{Exchange, ExchangeId, Flag};
use vobiz_tunnel::filter::Filter;
use vobiz_tunnel::store::{ExchangeSummary, StoreReader};

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");

/// Checks one expression: SQL ids, counts, pages and summaries against `matches`.
fn check(reader: &StoreReader, stored: &[Exchange], text: &str) -> usize {
    let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let expected: Vec<ExchangeId> = stored
        .iter()
        .filter(|ex| filter.matches(ex))
        .filter_map(|ex| ex.id)
        .collect();
    assert_eq!(
        reader.ids_matching(&filter).unwrap(),
        expected,
        "ids for {text:?}"
    );
    assert_eq!(
        reader.count_matching(&filter).unwrap(),
        expected.len() as u64,
        "{text:?}"
    );
    let ids = |rows: Vec<ExchangeSummary>| -> Vec<ExchangeId> {
        rows.iter().filter_map(|s| s.id).collect()
    };
    assert_eq!(
        ids(reader.page(&filter, None, 1000).unwrap()),
        expected,
        "{text:?}"
    );
    assert_eq!(
        ids(reader.page_after(&filter, 0, 1000).unwrap()),
        expected,
        "{text:?}"
    );
    for summary in reader.page(&Filter::default(), None, 1000).unwrap() {
        let ex = &stored[summary.id.unwrap() as usize - 1];
        if let Some(answer) = filter.matches_summary(&summary) {
            assert_eq!(
                answer,
                filter.matches(ex),
                "summary of #{:?} for {text:?}",
                ex.id
            );
        }
    }
    expected.len()
}

/// Expressions, separated by `;` and line breaks. Those marked `~` must match some but not all exchanges, so the
/// list cannot pass by selecting nothing (or everything) on both sides.
const EXPRESSIONS: &str = r#"
~hangup; ~HANGUP; ~q=1; ~?Q=; ~!q=1
~"normal hangup"
~vobiz; ~/answer; ~digits; ~"error"; ~100%; ~_done; ~[x]; ~ünï; CAFÉ; ~CAFé; ~"ÜNÏ"
~"after-nul"
~"john doe"; ~JOHN+DOE; ~+1415; ~%2b1415; ~"name=john doe&from=+1"; ~%zz%4; ~!"john doe"
~event:Hangup; ~!event:Hangup; ~event:ring; event:nothing
~call:7d1c2c5e; ~call:7d1c2c5e-0001; ~call:abc*; ~call:abc*def; call:ab?; ~!call:7d1c
~call:ABC; ~call:7D1C; ~call:Abc*D; ~!call:abc
~method:GET; ~method:post; ~!method:POST
~status:200; ~status:2xx; ~status:5xx; ~status:>=400; ~status:<300; ~status:>500
~status:<=204; ~status:=404; status:1xx; ~status:none; ~!status:none; ~!status:5xx
~sig:valid; ~sig:invalid; ~sig:unsigned; ~sig:unchecked; ~!sig:valid
~scheme:V3; ~scheme:v2; ~scheme:MA-V3; ~scheme:MA-V2; ~!scheme:V3; scheme:V1
~path:/answer; ~path:/answer*; ~path:/vobiz/*; ~path:*answer*; ~path:/cb???; ~path:/cb[1]
~path:/a*b; ~path:/a?b; ~path:*/x; ~path:/CB; path:/ANSWER*; ~!path:/vobiz/*; ~path:/ünï/?
~header:X-Foo; ~header:x-foo; ~header:X-Foo=bar; ~header:x-foo=BAR; ~header:X-Foo=baz
~header:user-agent=Vobiz; ~header:X-Other=bar; ~header:CONTENT-TYPE=text; header:X-Missing
~header:X-Foo="bar baz"
~!header:X-Foo
~body:Digits=1; body:digits
~body:"Normal Hangup"
~body:%; ~body:"DIGITS"; ~!body:Digits
~outcome:forwarded; ~outcome:rejected; ~outcome:too_large; ~outcome:client_error
~outcome:upstream_error; ~outcome:upstream_timeout; ~outcome:pending
~flag:slow; ~flag:nonce_reused; ~flag:replay; ~flag:imported; ~flag:upstream_error
~flag:rejected; ~flag:too_large; ~flag:client_error
~finding:xml-root; ~finding:XML-ROOT; ~finding:error; ~finding:warning; ~!finding:unsigned
finding:info; finding:xml-status
~slow; ~replay; ~reused; ~error; ~!error; ~!slow
~id:5; ~id:>10; ~id:>=10; ~id:<5; ~id:<=5; ~id:5..20; ~id:30..; ~id:..3; ~!id:5..20
id:1000..
~replay_of:3; ~!replay_of:3
~event:Hangup status:5xx; ~!sig:valid path:/vobiz/*; ~hangup !status:none
~header:X-Foo=bar body:Digits; ~error !replay id:>3; ~"Normal Hangup" !sig:invalid
~method:post !body:xml header:content-type !slow; event:Hangup event:Ring
"#;

/// The expressions of [`EXPRESSIONS`], each with its `~` mark if it has one.
fn expressions() -> impl Iterator<Item = &'static str> {
    EXPRESSIONS
        .split([';', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

#[test]
fn sql_and_memory_agree_on_every_listed_expression() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, stored) = fill(&dir.path().join("s.db"), 48);
    assert!(
        stored.iter().any(|ex| ex.has_flag(Flag::NonceReused)),
        "the fixture reuses nonces"
    );
    let mut checked = 0;
    let mut trivial = Vec::new();
    for line in expressions() {
        let (meaningful, text) = match line.strip_prefix('~') {
            Some(text) => (true, text),
            None => (false, line),
        };
        let count = check(&reader, &stored, text);
        if meaningful && (count == 0 || count == stored.len()) {
            trivial.push(format!("{text:?} matched {count}"));
        }
        checked += 1;
    }
    assert!(trivial.is_empty(), "{trivial:#?}");
    assert!(checked > 120, "{checked}");
}

/// A term built from the fixture's vocabulary or from generated values.
fn term() -> impl Strategy<Value = String> {
    let listed: Vec<String> = expressions()
        .map(|e| e.trim_start_matches('~'))
        .filter(|e| !e.contains(' ') && !e.starts_with('!'))
        .map(str::to_string)
        .collect();
    let ops = prop::sample::select(vec!["", "=", ">", ">=", "<", "<="]);
    prop_oneof![
        prop::sample::select(listed),
        (ops.clone(), 100u16..700).prop_map(|(op, n)| format!("status:{op}{n}")),
        (1u8..8).prop_map(|d| format!("status:{d}xx")),
        (ops, 0i64..60).prop_map(|(op, n)| format!("id:{op}{n}")),
        (0i64..60, 0i64..60).prop_map(|(a, b)| format!("id:{}..{}", a.min(b), a.max(b))),
        "[a-zA-Z0-9=/_%.]{1,4}".prop_map(|t| format!("\"{t}\"")),
        "[A-Za-z0-9=% _]{1,5}".prop_map(|t| format!("body:\"{t}\"")),
        "[/a-zA-Z0-9*?\\[\\]]{1,6}".prop_map(|t| format!("path:{t}")),
        "[0-9a-fA-F*?\\[-]{1,5}".prop_map(|t| format!("call:{t}")),
        (
            prop::sample::select(vec![
                "X-Foo",
                "x-foo",
                "User-Agent",
                "x-other",
                "content-type"
            ]),
            prop::option::of("[a-zA-Z/ ]{1,3}"),
        )
            .prop_map(|(name, value)| match value {
                Some(value) => format!("header:\"{name}={value}\""),
                None => format!("header:{name}"),
            }),
    ]
}

#[test]
fn sql_and_memory_agree_on_generated_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, stored) = fill(&dir.path().join("s.db"), 48);
    let filters = prop::collection::vec((any::<bool>(), term()), 1..4).prop_map(|terms| {
        let terms: Vec<String> = terms
            .into_iter()
            .map(|(not, t)| format!("{}{t}", if not { "!" } else { "" }))
            .collect();
        terms.join(" ")
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(&filters, |text| {
            check(&reader, &stored, &text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn keyset_pages_walk_the_matching_rows_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, stored) = fill(&dir.path().join("s.db"), 48);
    // The summaries built here equal the reader's own (the row mapping is shared logic).
    assert_eq!(
        reader.page(&Filter::default(), None, 30).unwrap(),
        reader.latest(30).unwrap()
    );
    for text in ["", "!status:none", "header:X-Foo", "hangup"] {
        let filter = Filter::parse(text).unwrap();
        let all = reader.ids_matching(&filter).unwrap();
        for size in [1, 2, 7] {
            let mut walked = Vec::new();
            let mut before = None;
            loop {
                let page = reader.page(&filter, before, size).unwrap();
                assert!(page.len() <= size);
                assert!(page.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
                let Some(first) = page.first() else { break };
                before = first.id;
                walked.splice(0..0, page.iter().filter_map(|s| s.id));
            }
            assert_eq!(walked, all, "{text:?} in pages of {size}");
            let after = reader.page_after(&filter, all[2], size).unwrap();
            let expected: Vec<_> = all[3..].iter().take(size).copied().collect();
            assert_eq!(
                after.iter().filter_map(|s| s.id).collect::<Vec<_>>(),
                expected
            );
        }
    }
    assert!(reader
        .page(&Filter::default(), Some(1), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        reader.count_matching(&Filter::default()).unwrap(),
        stored.len() as u64
    );
}

fn list(store: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("list")
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn list_filter_prints_the_newest_matches_oldest_first_and_explains_bad_filters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let (reader, _) = fill(&path, 48);
    let hangups = reader
        .ids_matching(&Filter::parse("event:hangup").unwrap())
        .unwrap();

    let (code, out, err) = list(
        &path,
        &["--filter", "event:hangup", "--limit", "3", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let ids: Vec<i64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, hangups[hangups.len() - 3..]);

    let (code, out, _) = list(&path, &["--filter", "status:5xx !replay"]);
    assert_eq!(code, 0);
    assert!(
        !out.is_empty() && out.lines().all(|l| l.contains(" 50")),
        "{out}"
    );

    let (code, out, err) = list(&path, &["--filter", "event:nothing"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(err.contains("no exchanges match"), "{err}");

    let (code, out, err) = list(&path, &["--filter", "event:Hangup status:9zz"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("status:9zz is not a status") && err.contains("column 21"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (code, _, err) = list(&path, &["--filter", "foo:bar"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown field \"foo\"") && err.contains("column 1"),
        "{err}"
    );
}

/// The inspector's whole-store counts (top bar, health view) agree with the rows.
#[test]
fn the_store_tally_counts_every_row_by_verdict_and_status_class() {
    use vobiz_tunnel::store::Tally;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let (reader, stored) = fill(&path, 48);
    let mut expected = Tally {
        total: stored.len() as u64,
        newest: stored.iter().filter_map(|ex| ex.id).max(),
        // Still pending when counted, newest first.
        pending: stored
            .iter()
            .rev()
            .filter(|ex| ex.outcome == vobiz_tunnel::exchange::Outcome::Pending)
            .filter_map(|ex| ex.id)
            .collect(),
        ..Tally::default()
    };
    for ex in &stored {
        expected.by_class[Tally::class_index(ex.status())] += 1;
        expected.by_verdict[Tally::verdict_index(ex.verdict.status)] += 1;
    }
    assert!(
        expected.by_verdict.iter().filter(|&&n| n > 0).count() >= 3
            && expected.by_class.iter().filter(|&&n| n > 0).count() >= 3,
        "the fixture varies both: {expected:?}"
    );
    assert_eq!(reader.tally().unwrap(), expected);
}
