//! Import of HAR files this tool did not write (a browser's, with pseudo-headers, base64
//! content and a request that got no answer), and of malformed ones: a clear error naming the
//! file and the entry, exit status 1, and nothing stored.

use serde_json::{json, Value};
use vobiz_tunnel::exchange::Flag;
use vobiz_tunnel::signature::VerdictStatus;
use vobiz_tunnel::store::StoreReader;

use super::{har_spec, ok, path, run, text};

#[test]
fn a_malformed_har_file_is_a_clear_error_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let good = json!({"startedDateTime": "2026-06-08T00:00:00Z",
                      "request": {"method": "GET", "url": "https://a.example/x"}});
    let bad_url = json!({"startedDateTime": "2026-06-08T00:00:00Z",
                         "request": {"method": "GET", "url": "not a url"}});
    let cases = [
        ("broken.har", b"{\"log\": [".to_vec(), "not JSON"),
        ("empty.har", b"{}".to_vec(), "not a HAR file"),
        (
            "url.har",
            serde_json::to_vec(&json!({"log": {"entries": [good, bad_url]}})).unwrap(),
            "entry 1: request.url is not a URL",
        ),
    ];
    let with_header = |name: &str, value: &str| {
        let entry = json!({"startedDateTime": "2026-06-08T00:00:00Z",
                           "request": {"method": "POST", "url": "https://a.example/x",
                                       "headers": [{"name": name, "value": value}]}});
        serde_json::to_vec(&json!({"log": {"entries": [entry]}})).unwrap()
    };
    let cases = cases.into_iter().chain([
        // A line break in a value would become a header of its own, sent by a replay.
        (
            "injected.har",
            with_header("X-Evil", "a\r\nInjected: 1"),
            "entry 0: request.headers[0].value of X-Evil holds a line break",
        ),
        (
            "colon.har",
            with_header("X:Colon", "v"),
            "entry 0: request.headers[0].name is not an HTTP header name (\"X:Colon\")",
        ),
        (
            "unnamed.har",
            with_header("", "v"),
            "entry 0: request.headers[0].name is not an HTTP header name (\"\")",
        ),
    ]);
    for (name, bytes, expected) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let output = run(&["import", "--har", path(&file), "--store", path(&store)]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: {stderr:?} should say {expected:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !store.exists(),
            "nothing is stored from a file with a bad entry"
        );
    }
    let missing = run(&[
        "import",
        "--har",
        "/nonexistent/x.har",
        "--store",
        path(&store),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read /nonexistent/x.har"));
}

#[test]
fn a_browser_har_imports_with_an_unchecked_verdict_and_exports_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let har = json!({"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
        "entries": [
        {"startedDateTime": "2026-06-08T17:11:20.130+05:30", "time": 40.5,
         "request": {"method": "POST", "url": "https://cb.example.com:8443/vobiz/hangup?v=1",
            "httpVersion": "http/2.0",
            "headers": [{"name": ":authority", "value": "cb.example.com:8443"},
                        {"name": "content-type", "value": "application/x-www-form-urlencoded"},
                        {"name": "X-Vobiz-Signature-V3", "value": "c2lnbmF0dXJl"},
                        {"name": "X-Vobiz-Signature-V3-Nonce", "value": "12345678901234567890"}],
            "postData": {"mimeType": "application/x-www-form-urlencoded",
                         "text": "Event=Hangup&CallUUID=c1"}},
         "response": {"status": 200, "headers": [{"name": "content-type", "value": "image/png"}],
            "content": {"size": 4, "mimeType": "image/png", "text": "iVBORw==", "encoding": "base64"}},
         "timings": {"send": 1.5, "wait": 30, "receive": 9}},
        {"startedDateTime": "2026-06-08T11:41:21Z", "time": 3,
         "request": {"method": "GET", "url": "http://cb.example.com/ping"},
         "response": {"status": 0, "_error": "net::ERR_CONNECTION_REFUSED"}}
    ]}});
    let file = dir.path().join("browser.har");
    std::fs::write(&file, serde_json::to_vec_pretty(&har).unwrap()).unwrap();
    let output = run(&["import", "--har", path(&file), "--store", path(&store)]);
    assert!(text(&ok(&output).stdout).contains("imported 2 exchanges as #1–#2"));

    let reader = StoreReader::open(&store).unwrap();
    let post = reader.get(1).unwrap().unwrap();
    assert_eq!(post.request.target, "/vobiz/hangup?v=1");
    assert_eq!(post.request.host.as_deref(), Some("cb.example.com:8443"));
    assert_eq!(
        post.request.public_url,
        "https://cb.example.com:8443/vobiz/hangup?v=1"
    );
    assert_eq!(
        post.request.headers.0.len(),
        3,
        "the :authority pseudo-header is dropped"
    );
    assert_eq!(&post.request.body[..], b"Event=Hangup&CallUUID=c1");
    assert_eq!(post.verdict.status, VerdictStatus::Unchecked);
    assert_eq!(
        (post.event.as_deref(), post.call_uuid.as_deref()),
        (Some("Hangup"), Some("c1"))
    );
    let response = post.response.as_ref().unwrap();
    assert_eq!(&response.body[..], b"\x89PNG");
    assert_eq!(post.timings.received_us, 1_780_918_880_130_000);
    assert_eq!(post.timings.duration_ms(), Some(40.5));
    assert_eq!(post.flags, vec![Flag::Imported]);
    let ping = reader.get(2).unwrap().unwrap();
    assert_eq!(ping.verdict.status, VerdictStatus::Unsigned);
    assert_eq!(ping.response, None);
    assert_eq!(ping.error.as_deref(), Some("net::ERR_CONNECTION_REFUSED"));
    assert_eq!(ping.timings.duration_ms(), Some(3.0));

    let output = ok(&run(&[
        "export",
        "--har",
        "-",
        "--filter",
        "flag:imported",
        "--store",
        path(&store),
    ]))
    .clone();
    let again: Value = serde_json::from_slice(&output.stdout).unwrap();
    har_spec::validate(&again);
    assert_eq!(
        again["log"]["entries"][0]["response"]["content"]["encoding"],
        "base64"
    );
    assert_eq!(again["log"]["entries"][1]["response"]["status"], 0);
}
