//! Case 5: the tokens appear nowhere — not in the output of any command, not in exports,
//! not in the store or its write-ahead log.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");

fn command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("VOBIZ_AUTH_TOKEN", TOKEN)
        .env("VOBIZ_MAIN_AUTH_TOKEN", MAIN_TOKEN)
        .env("VOBIZ_TUNNEL_STORE", dir.join("s.db"))
        .env_remove("VOBIZ_TUNNEL_LOG_FORMAT")
        .stdin(Stdio::null());
    command
}

/// Fails if `bytes` contain either token (as text, in any case).
fn assert_clean(what: &str, bytes: &[u8]) {
    let lower = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    for token in [TOKEN, MAIN_TOKEN] {
        let needle = token.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{what} contains a token"
        );
        assert!(
            !lower.contains(&token.to_ascii_lowercase()),
            "{what} contains a token (case-folded)"
        );
    }
}

/// Runs a command to completion; checks its stdout and stderr; returns (code, stdout).
fn run_clean(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = command(dir).args(args).output().expect("the binary runs");
    assert_clean(&format!("stdout of {args:?}"), &output.stdout);
    assert_clean(&format!("stderr of {args:?}"), &output.stderr);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn assert_store_clean(dir: &Path) -> usize {
    let mut checked = 0;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = dir.join(format!("s.db{suffix}"));
        if let Ok(bytes) = std::fs::read(&path) {
            assert_clean(&path.display().to_string(), &bytes);
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_any_output_export_or_store_file() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut child = command(dir.path())
        .args(["listen", "--listen", "127.0.0.1:0", "--no-tui"])
        .args(["--log-format", "json", "--forward", &upstream.url()])
        .args(["--certs-dir", certs.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });
    let mut stdout_all = Vec::new();
    let next_line = |stdout_all: &mut Vec<String>| {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from the listener");
        stdout_all.push(line.clone());
        line
    };
    let banner = next_line(&mut stdout_all);
    let banner: serde_json::Value = serde_json::from_str(&banner).expect("a JSON banner");
    let url = banner["url"].as_str().unwrap().to_string();
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let client = TlsClient::new(addr, certs.join("dev-ca.pem"));

    // Valid (V2, V3, MA), invalid (wrong token), tampered and unsigned callbacks.
    let port = addr.port();
    let public = |path: &str| format!("https://localhost:{port}{path}");
    let request = |path: &str, headers: Vec<(String, String)>| {
        let mut builder = hyper::Request::post(path)
            .header("host", format!("localhost:{port}"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                HANGUP_BODY.as_bytes(),
            )))
            .unwrap()
    };
    let valid = vobiz_headers(&public("/s/valid"), TOKEN, Some(MAIN_TOKEN));
    let wrong = vobiz_headers(
        &public("/s/wrong"),
        "WRONGtoken0123456789",
        Some("WRONGmain"),
    );
    let mut tampered = vobiz_headers(&public("/s/tampered"), TOKEN, Some(MAIN_TOKEN));
    for (_, value) in tampered.iter_mut().filter(|(n, _)| !n.ends_with("Nonce")) {
        value.replace_range(0..2, "zz");
    }
    let sent = [
        ("/s/valid", valid.clone()),
        ("/s/wrong", wrong),
        ("/s/tampered", tampered),
        ("/s/unsigned", vec![]),
    ];
    for (path, headers) in &sent {
        assert_eq!(
            client.send(request(path, headers.clone())).await.status,
            200
        );
        upstream.next().await;
    }
    // One JSON line per exchange.
    let mut exchanges = 0;
    while exchanges < sent.len() {
        if next_line(&mut stdout_all).contains("\"/s/") {
            exchanges += 1;
        }
    }

    // While it runs (the write-ahead log is live), and then every read command.
    assert!(assert_store_clean(dir.path()) >= 1);
    let har = dir.path().join("out.har");
    let ndjson = dir.path().join("out.ndjson");
    assert_eq!(
        run_clean(dir.path(), &["export", "--har", har.to_str().unwrap()]).0,
        0
    );
    assert_eq!(
        run_clean(
            dir.path(),
            &["export", "--ndjson", ndjson.to_str().unwrap()]
        )
        .0,
        0
    );
    let (_, ndjson_stdout) = run_clean(dir.path(), &["export", "--ndjson", "-"]);
    assert_eq!(ndjson_stdout.lines().count(), 4, "{ndjson_stdout}");
    for file in [&har, &ndjson] {
        assert_clean(&file.display().to_string(), &std::fs::read(file).unwrap());
    }
    let (code, list) = run_clean(dir.path(), &["list", "--json"]);
    assert_eq!(code, 0);
    assert!(list.contains("/s/valid"), "{list}");
    for id in 1..=4 {
        let (code, show) = run_clean(dir.path(), &["show", &id.to_string(), "--json"]);
        assert_eq!(code, 0, "{show}");
        let (code, _) = run_clean(dir.path(), &["show", &id.to_string()]);
        assert_eq!(code, 0);
    }
    for (url, headers) in [
        (public("/s/valid"), valid.clone()),
        (
            public("/s/other"),
            vobiz_headers(&public("/s/valid"), TOKEN, Some(MAIN_TOKEN)),
        ),
    ] {
        let mut args = vec!["verify".to_string(), "--json".into(), "--url".into(), url];
        args.extend(["--body".into(), HANGUP_BODY.into()]);
        for (name, value) in headers {
            args.extend(["-H".into(), format!("{name}: {value}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out) = run_clean(dir.path(), &args);
        assert!(code == 0 || code == 1, "{out}");
    }
    for args in [
        &["--help"][..],
        &["listen", "--help"],
        &["verify", "--help"],
        &["trigger", "--help"],
    ] {
        let (code, help) = run_clean(dir.path(), args);
        assert_eq!(code, 0, "{args:?}");
        assert!(!help.is_empty());
    }

    // Stop it, and check everything it printed and left behind.
    let pid = child.id() as i32;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let waited = within(tokio::task::spawn_blocking(move || child.wait()))
        .await
        .unwrap()
        .unwrap();
    assert!(waited.success(), "{waited:?}");
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
        stdout_all.push(line);
    }
    assert_clean("the listener's stdout", stdout_all.join("\n").as_bytes());
    assert_clean("the listener's stderr", &stderr_thread.join().unwrap());
    assert!(assert_store_clean(dir.path()) >= 1);
}
