//! Import of HAR files this tool did not write (a browser's, with pseudo-headers, base64
//! content and a request that got no answer), and of malformed ones: a clear error naming the
//! file and the entry, exit status 1, and nothing stored. Importing what the store already
//! holds adds nothing, and says so.

use std::sync::Arc;

use serde_json::{json, Value};
use vobiz_tunnel::exchange::Flag;
use vobiz_tunnel::signature::VerdictStatus;
use vobiz_tunnel::store::StoreReader;

use super::{fill, har_spec, ok, path, run, stored_exchange, text};

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
            "entry 0: request.headers[0].name cannot be a header name (\"X:Colon\")",
        ),
        (
            "unnamed.har",
            with_header("", "v"),
            "entry 0: request.headers[0].name cannot be a header name (\"\")",
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

/// The listener records a request it refused for a header no HTTP message may carry (an
/// escape sequence in a value): its export imports again, byte for byte.
#[test]
fn a_header_the_listener_refused_survives_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let value = "a\u{1b}[2Jb";
    let entry = json!({"startedDateTime": "2026-06-08T00:00:00Z",
                       "request": {"method": "POST", "url": "https://a.example/x",
                                   "headers": [{"name": "X-Evil", "value": value}]}});
    let file = dir.path().join("escape.har");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({"log": {"entries": [entry]}})).unwrap(),
    )
    .unwrap();
    let output = run(&["import", "--har", path(&file), "--store", path(&store)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let exported = dir.path().join("again.har");
    let output = run(&["export", "--har", path(&exported), "--store", path(&store)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    #[cfg(unix)]
    {
        // It holds what the store holds: its owner's alone.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    let headers = &again["log"]["entries"][0]["request"]["headers"];
    let evil = headers
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "X-Evil")
        .unwrap_or_else(|| panic!("{headers}"));
    assert_eq!(evil["value"], value);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_what_the_store_already_holds_adds_only_what_is_new() {
    // Six exchanges recorded by the real listener; two of them name no call (a binary body,
    // the 502's is a POST with one), so both ways of finding a row are used.
    let (dir, source) = fill().await;
    let export = |name: &str| {
        let file = dir.path().join(name);
        ok(&run(&[
            "export",
            "--har",
            path(&file),
            "--store",
            path(&source),
        ]));
        file
    };
    let import = |file: &std::path::Path, store: &std::path::Path, again: bool| {
        let mut args = vec!["import", "--har", path(file), "--store", path(store)];
        if again {
            args.push("--again");
        }
        text(&ok(&run(&args)).stdout)
    };
    let first = export("first.har");

    // Into the store it came from: nothing is new.
    assert_eq!(
        import(&first, &source, false).trim(),
        "imported 0 exchanges; 6 exchanges already in the store (#1–#6) skipped \
         (--again imports them anyway)"
    );
    assert_eq!(StoreReader::open(&source).unwrap().count().unwrap(), 6);

    // Into a store of its own, twice: ids move by the row it held before.
    let target = dir.path().join("target.db");
    {
        let store = vobiz_tunnel::store::Store::open(&target).unwrap();
        store
            .insert(Arc::new(stored_exchange("/x", None)))
            .await
            .unwrap();
        store.flush().await;
    }
    assert!(import(&first, &target, false).contains("imported 6 exchanges as #2–#7"));
    let output = import(&first, &target, false);
    assert!(
        output.contains("imported 0 exchanges; 6 exchanges already in the store (#2–#7)"),
        "{output}"
    );

    // A newer export of the source: a replay of its #1 was recorded since. Only the replay
    // is new, and it is linked to the row that already holds its original here.
    {
        let store = vobiz_tunnel::store::Store::open(&source).unwrap();
        let original = StoreReader::open(&source).unwrap().get(1).unwrap().unwrap();
        let mut replay = original.clone();
        replay.id = None;
        replay.replay_of = Some(1);
        replay.timings.received_us += 1_000_000;
        replay.add_flag(Flag::Replay);
        store.insert(Arc::new(replay)).await.unwrap();
        store.flush().await;
    }
    let newer = export("newer.har");
    let output = import(&newer, &target, false);
    assert!(
        output.contains("imported 1 exchange as #8; 6 exchanges already in the store (#2–#7)"),
        "{output}"
    );
    let reader = StoreReader::open(&target).unwrap();
    assert_eq!(reader.get(8).unwrap().unwrap().replay_of, Some(2));
    assert_eq!(reader.count().unwrap(), 8);

    // Asked for, they are imported again.
    assert!(import(&first, &target, true).contains("imported 6 exchanges as #9–#14"));
    assert_eq!(StoreReader::open(&target).unwrap().count().unwrap(), 14);
}

#[test]
fn identical_entries_without_a_call_are_each_their_own_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let ping = |at: &str| {
        json!({"startedDateTime": at, "time": 3,
               "request": {"method": "GET", "url": "http://cb.example.com/ping"},
               "response": {"status": 204}})
    };
    let har = json!({"log": {"entries": [
        ping("2026-06-08T11:41:21Z"),
        ping("2026-06-08T11:41:21Z"),
        ping("2026-06-08T11:41:22Z"),
    ]}});
    let file = dir.path().join("pings.har");
    std::fs::write(&file, serde_json::to_vec(&har).unwrap()).unwrap();
    let import = || {
        text(
            &ok(&run(&[
                "import",
                "--har",
                path(&file),
                "--store",
                path(&store),
            ]))
            .stdout,
        )
    };
    assert!(import().contains("imported 3 exchanges as #1–#3"));
    let output = import();
    assert!(
        output.contains("imported 0 exchanges; 3 exchanges already in the store (#1–#3)"),
        "two identical entries find two rows, not one twice: {output}"
    );

    // One more entry: the two identical ones are still both known.
    let har = json!({"log": {"entries": [
        ping("2026-06-08T11:41:21Z"),
        ping("2026-06-08T11:41:21Z"),
        ping("2026-06-08T11:41:21Z"),
    ]}});
    std::fs::write(&file, serde_json::to_vec(&har).unwrap()).unwrap();
    let output = import();
    assert!(
        output.contains("imported 1 exchange as #4; 2 exchanges already in the store (#1–#2)"),
        "{output}"
    );
}
