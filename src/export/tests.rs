//! Unit tests of the HAR round trip, foreign HAR files and import errors, with a shared
//! [`sample`] exchange that has every awkward part (non-UTF-8 header value and body).

use bytes::Bytes;
use serde_json::{json, Value};

use super::{har_entry, parse_har};
use crate::exchange::{Exchange, Flag, Headers, Outcome, RequestRecord, ResponseRecord};
use crate::signature::{verify, CallbackRequest, Keys, VerdictStatus};

/// A finished exchange with the awkward parts: non-UTF-8 header value and bodies.
pub(crate) fn sample() -> Exchange {
    let request = RequestRecord {
        method: "POST".into(),
        target: "/cb?x=1&y=%20".into(),
        http_version: "HTTP/1.1".into(),
        host: Some("example.com".into()),
        public_url: "https://example.com/cb?x=1&y=%20".into(),
        headers: Headers(vec![
            (
                "Content-Type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ),
            ("x-odd".into(), vec![0xfe, b'a', 0xff]),
        ]),
        body: Bytes::from_static(b"Event=Hangup&CallUUID=abc"),
        client_addr: Some("127.0.0.1:5555".into()),
        ..RequestRecord::default()
    };
    let verdict = verify(
        &CallbackRequest {
            method: "POST",
            url: &request.public_url,
            headers: &[],
            body: &request.body,
            extra_ports: &[],
            other_urls: &[],
        },
        &Keys::default(),
    );
    let mut exchange = Exchange::received(request, verdict, 1_780_918_880_130_248);
    exchange.id = Some(7);
    exchange.outcome = Outcome::Forwarded;
    exchange.response = Some(ResponseRecord {
        status: 200,
        headers: Headers(vec![(
            "content-type".into(),
            b"application/octet-stream".to_vec(),
        )]),
        body: Bytes::from_static(&[0, 159, 146, 150]),
    });
    exchange.timings.forwarded_us = Some(exchange.timings.received_us + 7);
    exchange.timings.done_us = Some(exchange.timings.received_us + 1_234);
    exchange.add_flag(Flag::Slow);
    exchange
}

fn har(entries: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"log": {"version": "1.2", "entries": entries}})).unwrap()
}

#[test]
fn our_entries_come_back_exactly() {
    let original = sample();
    let har_file = har(Value::Array(vec![har_entry(&original)]));
    let imported = parse_har(&har_file).unwrap().remove(0);
    // Ids included: they are the exporting store's until `store_all` renumbers them.
    let mut expected = original;
    expected.add_flag(Flag::Imported);
    assert_eq!(imported, expected);
}

#[test]
fn a_browser_entry_with_only_the_required_fields_imports() {
    let entry = json!({
        "startedDateTime": "2026-06-08T17:11:20.130+05:30",
        "time": 12.5,
        "request": {"method": "POST", "url": "https://h.example:8443/cb?a=b",
                    "headers": [{"name": ":authority", "value": "h"},
                                {"name": "X-Vobiz-Signature-V3", "value": "abc"},
                                {"name": "Content-Type", "value": "application/x-www-form-urlencoded"}],
                    "postData": {"mimeType": "application/x-www-form-urlencoded",
                                 "params": [{"name": "Event", "value": "Ring Ring"}]}},
        "response": {"status": 0, "_error": "net::ERR_CONNECTION_REFUSED"},
    });
    let exchange = parse_har(&har(json!([entry]))).unwrap().remove(0);
    let request = &exchange.request;
    assert_eq!(request.target, "/cb?a=b");
    assert_eq!(request.host.as_deref(), Some("h.example:8443"));
    assert_eq!(
        request.headers.0.len(),
        2,
        "the :authority pseudo-header is dropped"
    );
    assert_eq!(&request.body[..], b"Event=Ring+Ring");
    assert_eq!(exchange.event.as_deref(), Some("Ring Ring"));
    assert_eq!(exchange.verdict.status, VerdictStatus::Unchecked);
    assert_eq!(exchange.response, None);
    assert_eq!(
        exchange.error.as_deref(),
        Some("net::ERR_CONNECTION_REFUSED")
    );
    assert_eq!(exchange.timings.received_us, 1_780_918_880_130_000);
    assert_eq!(exchange.timings.duration_ms(), Some(12.5));
    assert_eq!(exchange.flags, vec![Flag::Imported]);
}

#[test]
fn malformed_input_is_an_error_naming_the_entry() {
    let good = json!({"startedDateTime": "2026-06-08T00:00:00Z",
        "request": {"method": "GET", "url": "http://a/"}});
    let cases = [
        (b"{".to_vec(), "not JSON"),
        (b"{\"log\": {}}".to_vec(), "no log.entries"),
        (har(json!([good, 3])), "entry 1: is not an object"),
        (
            har(json!([{"request": {"method": "GET", "url": "/x"}}])),
            "entry 0: request.url is not a URL",
        ),
        (
            har(json!([{"request": {"method": "GET /", "url": "http://a/"}}])),
            "entry 0: request.method is not an HTTP method",
        ),
        (
            har(json!([{"request": {"method": "GET", "url": "http://a/"}}])),
            "entry 0: startedDateTime is missing",
        ),
        (
            har(json!([{"startedDateTime": "2026-06-08T00:00:00Z",
            "request": {"method": "GET", "url": "http://a/", "headers": {}}}])),
            "entry 0: request.headers is not an array",
        ),
        (
            har(json!([{"startedDateTime": "2026-06-08T00:00:00Z",
            "request": {"method": "GET", "url": "http://a/"},
            "response": {"status": 70000}}])),
            "entry 0: response.status is not an HTTP status",
        ),
    ];
    for (bytes, expected) in cases {
        let error = parse_har(&bytes).err().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
    }
}

/// Found by `cargo fuzz run har_import`: timings far out of range (phases of 1e19 ms, or
/// `_vobizTunnel.timings` at both ends of `i64`) overflowed i64 arithmetic in the import, in
/// `duration_ms`, in the HAR phases and in `show`. They now saturate.
#[test]
fn extreme_timings_import_export_and_show_without_overflow() {
    let huge_phases = json!({"startedDateTime": "2026-06-08T00:00:00Z", "time": 1e300,
        "request": {"method": "GET", "url": "http://a/"},
        "response": {"status": 200},
        "timings": {"send": 9.2e18, "wait": 1e300, "receive": 1e19}});
    let huge_total = json!({"startedDateTime": "2026-06-08T00:00:00Z", "time": 1e300,
        "request": {"method": "GET", "url": "http://a/"}});
    let extremes = json!({"startedDateTime": "2026-06-08T00:00:00Z",
        "request": {"method": "GET", "url": "http://a/"},
        "_vobizTunnel": {"timings": {"received_us": i64::MIN, "forwarded_us": 0,
            "first_byte_us": i64::MIN, "done_us": i64::MAX}}});
    let exchanges = parse_har(&har(json!([huge_phases, huge_total, extremes]))).unwrap();
    assert_eq!(exchanges[0].timings.done_us, Some(i64::MAX));
    assert_eq!(exchanges[1].timings.done_us, Some(i64::MAX));
    assert_eq!(
        exchanges[2].timings.duration_ms(),
        Some(i64::MAX as f64 / 1000.0)
    );
    for exchange in &exchanges {
        let _ = crate::report::exchange_text(exchange, time::UtcOffset::UTC);
        let entry = har_entry(exchange);
        let again = parse_har(&har(json!([entry]))).unwrap().remove(0);
        assert_eq!(&again, exchange);
    }
}

/// The entries are read as a stream: `log.entries` may come anywhere among other keys, which
/// are skipped whatever they hold; a file and a slice read alike.
#[test]
fn entries_are_found_wherever_they_are_and_files_read_as_slices_do() {
    let entry = har_entry(&sample());
    let document = json!({
        "comment": {"nested": [1, {"entries": "not these"}]},
        "log": {"creator": {"name": "x"}, "entries": [entry.clone(), entry], "pages": []},
        "after": true
    });
    let bytes = serde_json::to_vec(&document).unwrap();
    let from_slice = parse_har(&bytes).unwrap();
    assert_eq!(from_slice.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.har");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(super::parse_har_file(&file).unwrap(), from_slice);
    assert!(parse_har(br#"{"log": {"entries": []}}"#)
        .unwrap()
        .is_empty());

    for (bytes, expected) in [
        (&br#"{"log": []}"#[..], "not a HAR file"),
        (br#"{"log": {"entries": {}}}"#, "not a HAR file"),
        (br#"{"log": {"entries": [], "x": "#, "not JSON"),
        (br#"{"log": {"entries": []}} trailing"#, "not JSON"),
        (br#"[1, 2"#, "not JSON"),
    ] {
        let error = parse_har(bytes).unwrap_err();
        assert!(error.starts_with(expected), "{error}");
    }
}

#[test]
fn id_lists_name_runs_and_count_the_rest() {
    assert_eq!(super::id_list(&[3]), "#3");
    assert_eq!(super::id_list(&[3, 9]), "#3, #9");
    assert_eq!(super::id_list(&[3, 4, 5, 6, 7, 9]), "#3–#7, #9");
    // Eight runs named; the ids of the others counted.
    let ids: Vec<i64> = (0..10).map(|run| run * 10).chain([91, 92]).collect();
    assert_eq!(
        super::id_list(&ids),
        "#0, #10, #20, #30, #40, #50, #60, #70, and 4 more"
    );
}
