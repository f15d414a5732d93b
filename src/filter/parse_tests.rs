//! Parser tests: every field, keywords, quoting, negation, and errors with their columns.

use super::*;

fn test_of(text: &str) -> Test {
    let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(filter.terms.len(), 1, "{text}");
    filter.terms[0].test.clone()
}

fn err(text: &str) -> FilterError {
    Filter::parse(text).expect_err(text)
}

#[test]
fn every_field_parses() {
    use Test::*;
    let cases: Vec<(&str, Test)> = vec![
        ("event:Hangup", Event("Hangup".into())),
        ("EVENT:hangup", Event("hangup".into())),
        ("call:7d1c", CallPrefix("7d1c".into())),
        ("method:get", Method("get".into())),
        ("status:200", Status { min: 200, max: 200 }),
        ("status:=204", Status { min: 204, max: 204 }),
        ("status:5xx", Status { min: 500, max: 599 }),
        ("status:4XX", Status { min: 400, max: 499 }),
        (
            "status:>=400",
            Status {
                min: 400,
                max: u16::MAX,
            },
        ),
        (
            "status:>500",
            Status {
                min: 501,
                max: u16::MAX,
            },
        ),
        ("status:<300", Status { min: 0, max: 299 }),
        ("status:<=204", Status { min: 0, max: 204 }),
        ("status:none", StatusNone),
        ("sig:valid", Signature(VerdictStatus::Valid)),
        ("sig:Invalid", Signature(VerdictStatus::Invalid)),
        ("sig:unsigned", Signature(VerdictStatus::Unsigned)),
        ("sig:unchecked", Signature(VerdictStatus::Unchecked)),
        ("scheme:V3", Scheme(crate::signature::Scheme::V3)),
        ("scheme:v2", Scheme(crate::signature::Scheme::V2)),
        ("scheme:MA-V3", Scheme(crate::signature::Scheme::MaV3)),
        ("scheme:ma-v2", Scheme(crate::signature::Scheme::MaV2)),
        ("path:/answer", PathExact("/answer".into())),
        ("path:/answer*", PathGlob("/answer*".into())),
        ("path:/cb?", PathGlob("/cb?".into())),
        (
            "header:X-Foo",
            Header {
                name: "X-Foo".into(),
                value: None,
            },
        ),
        (
            "header:X-Foo=a=b",
            Header {
                name: "X-Foo".into(),
                value: Some("a=b".into()),
            },
        ),
        ("body:Digits=1", Body("Digits=1".into())),
        (
            "outcome:too_large",
            Outcome(vec![crate::exchange::Outcome::TooLarge]),
        ),
        (
            "flag:nonce_reused",
            Flag(crate::exchange::Flag::NonceReused),
        ),
        ("flag:Imported", Flag(crate::exchange::Flag::Imported)),
        ("id:42", Id { min: 42, max: 42 }),
        (
            "id:>100",
            Id {
                min: 101,
                max: i64::MAX,
            },
        ),
        (
            "id:>=100",
            Id {
                min: 100,
                max: i64::MAX,
            },
        ),
        (
            "id:<20",
            Id {
                min: i64::MIN,
                max: 19,
            },
        ),
        (
            "id:<=20",
            Id {
                min: i64::MIN,
                max: 20,
            },
        ),
        ("id:5..20", Id { min: 5, max: 20 }),
        (
            "id:5..",
            Id {
                min: 5,
                max: i64::MAX,
            },
        ),
        (
            "id:..20",
            Id {
                min: i64::MIN,
                max: 20,
            },
        ),
        ("id:>9223372036854775807", Id { min: 1, max: 0 }),
        ("replay_of:12", ReplayOf(12)),
    ];
    for (text, expected) in cases {
        assert_eq!(test_of(text), expected, "{text}");
    }
}

#[test]
fn shorthands_are_keywords_unless_quoted() {
    assert_eq!(test_of("slow"), Test::Flag(Flag::Slow));
    assert_eq!(test_of("Replay"), Test::Flag(Flag::Replay));
    assert_eq!(test_of("reused"), Test::Flag(Flag::NonceReused));
    assert_eq!(
        test_of("error"),
        Test::Outcome(vec![
            Outcome::UpstreamError,
            Outcome::UpstreamTimeout,
            Outcome::ClientError
        ])
    );
    assert_eq!(test_of("\"error\""), Test::Text("error".into()));
    assert_eq!(test_of("Hangup"), Test::Text("hangup".into()));
}

#[test]
fn quotes_hold_spaces_colons_and_escapes() {
    assert_eq!(
        test_of(r#"body:"Normal Hangup""#),
        Test::Body("Normal Hangup".into())
    );
    assert_eq!(
        test_of(r#"body:Cause="Normal Hangup""#),
        Test::Body("Cause=Normal Hangup".into())
    );
    assert_eq!(test_of(r#""http://x y""#), Test::Text("http://x y".into()));
    assert_eq!(
        test_of(r#"body:"say \"hi\" \\ ok""#),
        Test::Body(r#"say "hi" \ ok"#.into())
    );
    assert_eq!(
        test_of(r"body:a\b"),
        Test::Body(r"a\b".into()),
        "backslash is literal outside quotes"
    );
    assert_eq!(
        test_of("/a:b"),
        Test::Text("/a:b".into()),
        "not a field name"
    );
}

#[test]
fn terms_are_anded_and_negation_applies_to_one_term() {
    let filter = Filter::parse("  !event:Ring\tstatus:5xx  !\"x y\"").unwrap();
    let negated: Vec<bool> = filter.terms.iter().map(|t| t.negated).collect();
    assert_eq!(negated, [true, false, true]);
    assert_eq!(filter.terms[2].test, Test::Text("x y".into()));
}

#[test]
fn errors_give_the_column_and_list_what_is_valid() {
    let cases: [(&str, usize, &str); 18] = [
        (
            "foo:bar",
            1,
            "unknown field \"foo\"; fields are event, call, method, status",
        ),
        ("event:Hangup http://x", 14, "unknown field \"http\""),
        (
            "status:9zz",
            8,
            "status:9zz is not a status; use a code (status:200), a class (status:5xx)",
        ),
        ("status:20", 8, "is not a status"),
        ("status:>=abc", 8, "is not a status"),
        (
            "sig:maybe",
            5,
            "use sig:valid, sig:invalid, sig:unsigned or sig:unchecked",
        ),
        (
            "scheme:V4",
            8,
            "scheme:V3, scheme:V2, scheme:MA-V3, scheme:MA-V2",
        ),
        (
            "outcome:done",
            9,
            "forwarded, rejected, too_large, client_error, upstream_error",
        ),
        (
            "flag:fast",
            6,
            "flags are slow, nonce_reused, replay, upstream_error",
        ),
        (
            "finding:xml-rot",
            9,
            "is not a rule or a severity; rules are xml-status, xml-content-type",
        ),
        ("id:x", 4, "use id:42, id:>100"),
        (
            "id:20..5",
            4,
            "id:20..5 is backwards; write the lower id first (id:5..20)",
        ),
        ("replay_of:-1", 11, "replay_of:-1 is not an exchange id"),
        ("event:", 7, "\"event:\" needs a value, e.g. event:Hangup"),
        ("header:\"X Foo\"", 10, "\"X Foo\" is not a header name"),
        ("a !", 3, "\"!\" must be followed by a term"),
        ("body:\"open", 6, "this quote is never closed"),
        ("\"\"", 1, "empty quotes"),
    ];
    for (text, column, message) in cases {
        let e = err(text);
        assert_eq!(e.column, column, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
    assert_eq!(
        err("header:X:Y=1").column,
        9,
        "the first bad character of the name"
    );
    assert_eq!(err("header:X-Foo=").column, 13);
    assert_eq!(err("!!slow").column, 2);
    assert_eq!(
        err("ünïcode foo:1").column,
        9,
        "columns count characters, not bytes"
    );
    assert_eq!(err("body:a\u{0}b").column, 7);
    assert_eq!(
        err("foo:bar").to_string(),
        "unknown field \"foo\"; fields are event, call, method, status, sig, scheme, path, \
         header, body, outcome, flag, finding, id, replay_of (to search for text with a colon, \
         put it in double quotes) (at column 1)"
    );
}

proptest::proptest! {
    /// Nothing the user types makes the parser panic, and errors point inside the text.
    #[test]
    fn parsing_never_panics(text in "[a-z:!\"\\\\ *?=<>.0-9x\u{e9}-]{0,24}") {
        if let Err(e) = Filter::parse(&text) {
            proptest::prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}");
        }
    }
}
