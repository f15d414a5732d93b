//! `export` and `import` end to end: a store filled through the real listener (valid, invalid
//! and unsigned callbacks, a 502 from a dead upstream, a non-UTF-8 body, a GET with a query),
//! exported by the real binary, checked against the HAR 1.2 spec, imported into a fresh store
//! and compared field by field. Import of foreign and malformed HAR files is tested in
//! `export/import.rs`, copy-as-curl in `export/curl.rs`.

mod common;
#[path = "export/curl.rs"]
mod curl;
#[path = "export/har_spec.rs"]
mod har_spec;
#[path = "export/import.rs"]
mod import;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use serde_json::{json, Value};
use vobiz_tunnel::exchange::{Flag, Outcome};
use vobiz_tunnel::store::StoreReader;

/// A body no text field can hold: invalid UTF-8, a NUL, shell metacharacters.
pub const ODD_BODY: &[u8] = b"\xff\xfe\x00'\"$HOME `id` \\n %s\n\xc3(";

/// Runs the binary with `args`; the environment cannot point it at another store.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vobiz-tunnel"))
        .args(args)
        .env_remove("VOBIZ_TUNNEL_STORE")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> &Output {
    assert!(output.status.success(), "failed: {}", text(&output.stderr));
    output
}

/// Six exchanges, ids 1–6: valid, invalid, unsigned, non-UTF-8 body, GET with query, 502.
async fn fill() -> (Arc<tempfile::TempDir>, PathBuf) {
    let upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let url = harness.url("/vobiz/hangup");
    let host = format!("localhost:{}", harness.port());
    let client = harness.client();
    let signed = vobiz_headers(&url, TOKEN, Some(MAIN_TOKEN));
    let forged = vobiz_headers(&url, "NOTtheTOKENatAll0000000000000000000000", None);
    let posts = [
        ("/vobiz/hangup", HANGUP_BODY, signed),
        ("/vobiz/hangup", HANGUP_BODY, forged),
        ("/vobiz/ring", "Event=Ring&CallUUID=u3", vec![]),
    ];
    for (path, body, headers) in posts {
        assert_eq!(
            client
                .send(form_post(&harness, path, body, &headers))
                .await
                .status,
            200
        );
        harness.last_recorded().await;
    }
    let odd = Request::post("/vobiz/binary")
        .header("host", &host)
        .header("content-type", "application/octet-stream")
        .header(
            "x-odd",
            hyper::header::HeaderValue::from_bytes(&[0xfe, b'a', 0xff]).unwrap(),
        )
        .body(Full::new(Bytes::from_static(ODD_BODY)))
        .unwrap();
    assert_eq!(client.send(odd).await.status, 200);
    harness.last_recorded().await;
    let get = Request::get("/vobiz/answer?CallUUID=q5&Event=StartApp&Note=a%20b%2Bc")
        .header("host", &host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.send(get).await.status, 200);
    harness.last_recorded().await;
    let dir = harness.dir.clone();
    harness.tunnel.shutdown().await;

    // The same store, now forwarding to a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let harness = Harness::start(config(&dir, &format!("http://{dead}")), dir.clone()).await;
    let request = form_post(&harness, "/vobiz/dead", "Event=Hangup&CallUUID=u6", &[]);
    assert_eq!(harness.client().send(request).await.status, 502);
    assert_eq!(harness.last_recorded().await.id, Some(6));
    harness.tunnel.shutdown().await;
    let store = dir.path().join("exchanges.db");
    (dir, store)
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn har_export_is_valid_har_and_imports_back_losslessly() {
    let (dir, store) = fill().await;
    let har_file = dir.path().join("out.har");
    let output = run(&["export", "--har", path(&har_file), "--store", path(&store)]);
    let expected = format!("exported 6 exchanges to {}", har_file.display());
    assert!(text(&ok(&output).stderr).contains(&expected));
    let leftovers = std::fs::read_dir(dir.path()).unwrap().flatten();
    let partial = leftovers.filter(|e| e.file_name().to_string_lossy().contains(".partial-"));
    assert_eq!(partial.count(), 0, "the temporary file was renamed");
    let har: Value = serde_json::from_slice(&std::fs::read(&har_file).unwrap()).unwrap();
    har_spec::validate(&har);
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    let vobiz = |i: usize| &entries[i]["_vobizTunnel"];
    assert_eq!(vobiz(0)["signature"]["status"], "valid");
    assert_eq!(vobiz(1)["signature"]["status"], "invalid");
    assert_eq!(vobiz(2)["signature"]["status"], "unsigned");
    assert_eq!(vobiz(0)["event"], "Hangup");
    let params = entries[0]["request"]["postData"]["params"]
        .as_array()
        .unwrap();
    assert!(params.contains(&json!({"name": "HangupCause", "value": "NORMAL_CLEARING"})));
    let body64 = vobiz(3)["request_body_base64"].as_str().unwrap();
    let engine = base64::engine::general_purpose::STANDARD;
    assert_eq!(engine.decode(body64).unwrap(), ODD_BODY);
    let get = &entries[4]["request"];
    assert!(get["url"]
        .as_str()
        .unwrap()
        .ends_with("/vobiz/answer?CallUUID=q5&Event=StartApp&Note=a%20b%2Bc"));
    assert!(get["queryString"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "Note", "value": "a b+c"})));
    assert!(get.get("postData").is_none());
    assert_eq!(entries[5]["response"]["status"], 502);
    assert_eq!(vobiz(5)["outcome"], "upstream_error");

    let fresh = dir.path().join("fresh.db");
    let output = run(&["import", "--har", path(&har_file), "--store", path(&fresh)]);
    assert!(text(&ok(&output).stdout).contains("imported 6 exchanges as #1–#6"));
    // Folded into the .db file at the end: a copy of that file alone holds them all.
    let copy = dir.path().join("copy-of-fresh.db");
    std::fs::copy(&fresh, &copy).unwrap();
    assert_eq!(StoreReader::open(&copy).unwrap().count().unwrap(), 6);
    let (before, after) = (
        StoreReader::open(&store).unwrap(),
        StoreReader::open(&fresh).unwrap(),
    );
    for id in 1..=6 {
        let original = before.get(id).unwrap().unwrap();
        let imported = after.get(id).unwrap().unwrap();
        let (a, b) = (&original.request, &imported.request);
        assert_eq!(
            (&b.method, &b.target, &b.public_url),
            (&a.method, &a.target, &a.public_url)
        );
        assert_eq!(
            b.headers, a.headers,
            "#{id}: headers in order, values exact"
        );
        assert_eq!(b.body, a.body, "#{id}: body bytes");
        assert_eq!(imported.response, original.response, "#{id}: response");
        assert_eq!(imported.verdict.status, original.verdict.status);
        assert_eq!(imported.event, original.event);
        assert_eq!(imported.call_uuid, original.call_uuid);
        let mut flags = original.flags.clone();
        flags.push(Flag::Imported);
        assert_eq!(imported.flags, flags);
        // And everything else: verdict details, timings to the microsecond, TLS, outcome.
        let mut expected = original.clone();
        expected.flags = flags;
        assert_eq!(imported, expected, "#{id}");
    }
    assert_eq!(
        after.get(6).unwrap().unwrap().outcome,
        Outcome::UpstreamError
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_standard_output_and_filters() {
    let (dir, store) = fill().await;
    let file = dir.path().join("out.ndjson");
    ok(&run(&[
        "export",
        "--ndjson",
        path(&file),
        "--store",
        path(&store),
    ]));
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["id"], index as i64 + 1);
        for field in [
            "method",
            "target",
            "public_url",
            "request",
            "signature",
            "outcome",
        ] {
            assert!(!line[field].is_null(), "line {index} has {field}");
        }
    }
    assert_eq!(lines[0]["signature"], "valid");
    assert!(lines[3]["request"]["body"]["base64"].is_string());
    assert_eq!(lines[5]["status"], 502);

    let output = ok(&run(&["export", "--har", "-", "--store", path(&store)])).clone();
    let har: Value = serde_json::from_slice(&output.stdout).unwrap();
    har_spec::validate(&har);
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 6);
    assert!(text(&output.stderr).contains("exported 6 exchanges to standard output"));
    let output = ok(&run(&["export", "--ndjson", "-", "--store", path(&store)])).clone();
    assert_eq!(text(&output.stdout).lines().count(), 6);

    let filtered = |expr: &str| {
        let output = ok(&run(&[
            "export",
            "--har",
            "-",
            "--filter",
            expr,
            "--store",
            path(&store),
        ]))
        .clone();
        let har: Value = serde_json::from_slice(&output.stdout).unwrap();
        let entries = har["log"]["entries"].as_array().unwrap().clone();
        entries
            .iter()
            .map(|e| e["_vobizTunnel"]["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(filtered("sig:valid"), vec![1]);
    assert_eq!(filtered("event:Hangup"), vec![1, 2, 6]);
    assert_eq!(filtered("status:5xx"), vec![6]);
    assert_eq!(filtered("method:get"), vec![5]);
    let nowhere = dir.path().join("no/such/dir/out.har");
    let failed = run(&["export", "--har", path(&nowhere), "--store", path(&store)]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed.stderr).contains(&format!("exporting to {}", nowhere.display())));
    let bad = run(&[
        "export",
        "--har",
        "-",
        "--filter",
        "colour:red",
        "--store",
        path(&store),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("--filter"),
        "{}",
        text(&bad.stderr)
    );
}

/// An exchange stored directly, as the listener would have recorded it.
fn stored_exchange(path: &str, replay_of: Option<i64>) -> vobiz_tunnel::exchange::Exchange {
    let url = format!("https://example.com{path}");
    let request = vobiz_tunnel::exchange::RequestRecord {
        method: "POST".into(),
        target: path.into(),
        public_url: url.clone(),
        body: Bytes::from_static(b"CallUUID=c-1&Event=Hangup"),
        ..Default::default()
    };
    let verdict = vobiz_tunnel::signature::verify(
        &vobiz_tunnel::signature::CallbackRequest {
            method: "POST",
            url: &url,
            headers: &[],
            body: b"",
            extra_ports: &[],
            other_urls: &[],
        },
        &vobiz_tunnel::signature::Keys::default(),
    );
    let mut exchange = vobiz_tunnel::exchange::Exchange::received(request, verdict, 1);
    exchange.replay_of = replay_of;
    if replay_of.is_some() {
        exchange.add_flag(Flag::Replay);
        exchange.sent_to = Some(format!("https://staging.example.com{path}"));
    }
    exchange
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_replay_stays_linked_to_its_imported_original() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    {
        let store = vobiz_tunnel::store::Store::open(&source).unwrap();
        for (path, replay_of) in [("/a", None), ("/b", None), ("/a", Some(1))] {
            let exchange = stored_exchange(path, replay_of);
            store.insert(Arc::new(exchange)).await.unwrap();
        }
        store.flush().await;
    }
    let all = dir.path().join("all.har");
    let replays = dir.path().join("replays.har");
    ok(&run(&[
        "export",
        "--har",
        path(&all),
        "--store",
        path(&source),
    ]));
    ok(&run(&[
        "export",
        "--har",
        path(&replays),
        "--filter",
        "replay",
        "--store",
        path(&source),
    ]));

    // A store that already holds two exchanges: the imported ids are not the exported ones.
    let target = dir.path().join("target.db");
    {
        let store = vobiz_tunnel::store::Store::open(&target).unwrap();
        for path in ["/x", "/y"] {
            store
                .insert(Arc::new(stored_exchange(path, None)))
                .await
                .unwrap();
        }
        store.flush().await;
    }
    let output = run(&["import", "--har", path(&all), "--store", path(&target)]);
    assert!(text(&ok(&output).stdout).contains("imported 3 exchanges as #3–#5"));
    // The same replay again, on purpose: here, without the original it came with.
    let output = run(&[
        "import",
        "--har",
        path(&replays),
        "--again",
        "--store",
        path(&target),
    ]);
    assert!(text(&ok(&output).stdout).contains("imported 1 exchange as #6"));

    let reader = StoreReader::open(&target).unwrap();
    let linked = reader.get(5).unwrap().unwrap();
    assert_eq!(
        linked.replay_of,
        Some(3),
        "linked to the imported /a, not to #1 of this store"
    );
    assert_eq!(linked.request.target, "/a");
    assert!(linked.has_flag(Flag::Replay) && linked.has_flag(Flag::Imported));
    let where_it_went = Some("https://staging.example.com/a");
    assert_eq!(linked.sent_to.as_deref(), where_it_went);
    let alone = reader.get(6).unwrap().unwrap();
    assert_eq!(
        alone.replay_of, None,
        "its original was not imported with it: linked to nothing"
    );
    assert!(alone.has_flag(Flag::Replay), "still marked as a replay");
    let shown = vobiz_tunnel::report::exchange_text(&alone, time::UtcOffset::UTC);
    assert!(
        shown.contains("(a replay, sent to https://staging.example.com/a)"),
        "where it went shows without its original: {shown}"
    );
    for id in [1, 2, 3, 4] {
        assert_eq!(reader.get(id).unwrap().unwrap().replay_of, None, "#{id}");
    }
}

/// A million exchanges must export in bounded memory: with 60 MB of bodies in the store the
/// export's peak resident memory stays far below that (Linux: read from /proc while it runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_memory_does_not_grow_with_the_store() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc to read the export's peak memory from");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("big.db");
    let store = vobiz_tunnel::store::Store::open(&store_path).unwrap();
    let body = Bytes::from(vec![b'a'; 40_000]);
    for _ in 0..1500 {
        let request = vobiz_tunnel::exchange::RequestRecord {
            method: "POST".into(),
            target: "/big".into(),
            public_url: "https://example.com/big".into(),
            body: body.clone(),
            ..Default::default()
        };
        let verdict = vobiz_tunnel::signature::verify(
            &vobiz_tunnel::signature::CallbackRequest {
                method: "POST",
                url: "https://example.com/big",
                headers: &[],
                body: b"",
                extra_ports: &[],
                other_urls: &[],
            },
            &vobiz_tunnel::signature::Keys::default(),
        );
        let exchange = vobiz_tunnel::exchange::Exchange::received(request, verdict, 1);
        store.insert(Arc::new(exchange)).await.unwrap();
    }
    drop(store);
    for format in ["--har", "--ndjson"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vobiz-tunnel"))
            .args(["export", format, "-", "--store", path(&store_path)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status_file = format!("/proc/{}/status", child.id());
        let mut peak_kb = 0u64;
        while child.try_wait().unwrap().is_none() {
            let status = std::fs::read_to_string(&status_file).unwrap_or_default();
            let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
            if let Some(kb) = hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let output = child.wait_with_output().unwrap();
        assert!(text(&output.stderr).contains("exported 1500 exchanges"));
        eprintln!("export {format}: peak resident memory {peak_kb} kB");
        assert!(
            peak_kb < 30_000,
            "{format}: peak {peak_kb} kB for 60 MB of bodies"
        );
    }
}
