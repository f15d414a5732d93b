//! The binary as a user runs it: `listen` with JSON output, `list`, `show`, `verify`, and the
//! promises about secrets and start-up errors.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");

/// The first V3 vector of the official SDK (docs form, no body).
const V3_URL: &str = "https://example.com/vobiz/answer";
const V3_SIG: &str = "a18JaPl7HXBX0zNSNd98kEby1PR5hMyTjOowITAkBDQ=";
const NONCE: &str = "12345678901234567890";

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("VOBIZ_AUTH_TOKEN")
        .env_remove("VOBIZ_MAIN_AUTH_TOKEN");
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn verify_accepts_the_sdk_vector_and_exits_zero() {
    let (code, out, _) = run(
        &[
            "verify",
            "--url",
            V3_URL,
            "--header",
            &format!("X-Vobiz-Signature-V3: {V3_SIG}"),
            "-H",
            &format!("X-Vobiz-Signature-V3-Nonce: {NONCE}"),
        ],
        &[("VOBIZ_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid (V3"), "{out}");
    assert!(!out.contains(TOKEN), "the token is never printed");
}

#[test]
fn verify_never_prints_the_password_of_a_url_with_credentials() {
    // Signed whole, credentials included, as the Python SDK checks it.
    let url = "https://bob:SuperPass99@hooks.example.com/cb";
    let signature = vobiz_tunnel::signature::sign_v3_docs(
        &vobiz_tunnel::signature::AuthToken::new(TOKEN),
        url,
        NONCE,
    );
    let signature_header = format!("X-Vobiz-Signature-V3: {signature}");
    let nonce_header = format!("X-Vobiz-Signature-V3-Nonce: {NONCE}");
    for (wrong, extra) in [("", None), ("x", None), ("", Some("--json"))] {
        let url = format!("{url}{wrong}");
        let mut args = vec![
            "verify",
            "--url",
            &url,
            "-H",
            &signature_header,
            "-H",
            &nonce_header,
        ];
        args.extend(extra);
        let (code, out, err) = run(&args, &[("VOBIZ_AUTH_TOKEN", TOKEN)]);
        assert_eq!(code, if wrong.is_empty() { 0 } else { 1 }, "{out}{err}");
        assert!(
            !out.contains("SuperPass99") && !err.contains("SuperPass99"),
            "{out}"
        );
        if !wrong.is_empty() {
            assert!(
                out.contains("https://bob:****@hooks.example.com/cbx"),
                "{out}"
            );
        }
    }
}

#[test]
fn verify_explains_a_failure_and_exits_one() {
    // Same signature, but the URL as the user configured it has an explicit :443.
    let (code, out, _) = run(
        &[
            "verify",
            "--url",
            "https://example.com:443/vobiz/answer",
            "--header",
            &format!("X-Vobiz-Signature-V3: {V3_SIG}"),
            "--header",
            &format!("X-Vobiz-Signature-V3-Nonce: {NONCE}"),
            "--auth-token",
            TOKEN,
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("https://example.com/vobiz/answer"),
        "names the matching URL: {out}"
    );
    assert!(
        out.contains("https://example.com:443/vobiz/answer.12345678901234567890"),
        "shows the signed string: {out}"
    );
    assert!(!out.contains(TOKEN));
}

#[test]
fn verify_tells_wrong_input_from_an_invalid_signature() {
    let header = format!("X-Vobiz-Signature-V3: {V3_SIG}");
    for (args, says) in [
        (
            vec!["--url", "not a url", "--header", &header],
            "absolute http(s) URL",
        ),
        (
            vec!["--url", "", "--header", &header],
            "absolute http(s) URL",
        ),
        (
            vec!["--url", V3_URL, "--header", "X-Vobiz-Signature-V3 abc"],
            "'Name: value'",
        ),
        (
            vec!["--url", V3_URL, "--body", "@/nonexistent/body.txt"],
            "body file",
        ),
        (
            vec!["--url", V3_URL, "--header", "Bad Name: x"],
            "not an HTTP header name",
        ),
        (vec!["--url", V3_URL, "--header", "X-A: a\nb"], "line break"),
    ] {
        let mut all = vec!["verify"];
        all.extend(&args);
        all.extend(["--auth-token", TOKEN]);
        let (code, _, err) = run(&all, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn verify_json_reports_the_verdict_fields() {
    let (code, out, _) = run(
        &[
            "verify",
            "--json",
            "--url",
            V3_URL,
            "--header",
            &format!("X-Vobiz-Signature-V3: {V3_SIG}"),
            "--header",
            &format!("X-Vobiz-Signature-V3-Nonce: {NONCE}"),
        ],
        &[("VOBIZ_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0);
    let verdict: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verdict["status"], "valid");
    assert_eq!(verdict["scheme"], "V3");
    assert_eq!(verdict["form"], "docs");
}

#[test]
fn verify_without_tokens_is_unchecked_and_not_zero() {
    let (code, out, _) = run(
        &[
            "verify",
            "--url",
            V3_URL,
            "--header",
            &format!("X-Vobiz-Signature-V3: {V3_SIG}"),
            "--header",
            &format!("X-Vobiz-Signature-V3-Nonce: {NONCE}"),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("VOBIZ_AUTH_TOKEN"),
        "says how to configure a token: {out}"
    );
}

#[test]
fn help_never_shows_a_token_from_the_environment() {
    for args in [
        &["--help"][..],
        &["listen", "--help"],
        &["verify", "--help"],
    ] {
        let (code, out, err) = run(
            args,
            &[
                ("VOBIZ_AUTH_TOKEN", TOKEN),
                ("VOBIZ_MAIN_AUTH_TOKEN", MAIN_TOKEN),
            ],
        );
        assert_eq!(code, 0);
        assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{args:?}");
        assert!(!out.contains(MAIN_TOKEN), "{args:?}");
    }
}

#[test]
fn reading_a_missing_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.db");
    let (code, _, err) = run(&["list", "--store", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("none.db"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A folder given for the file: said so, for reading and for listening.
    let folder = dir.path().to_str().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    let listen = ["listen", "--no-tui", "--listen", "127.0.0.1:0"];
    for args in [
        vec!["list", "--store", folder],
        [&listen[..], &["--store", folder, "--certs-dir", certs]].concat(),
    ] {
        let (code, _, err) = run(&args, &[]);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("is a folder, not a store"), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["list", "--limit", "0", "--store", folder], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("give 1 or more"), "{err}");
}

#[test]
fn a_store_that_cannot_be_opened_stops_start_up_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    let certs = dir.path().join("certs");
    let (code, _, err) = run(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            path.to_str().unwrap(),
            "--certs-dir",
            certs.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("taken"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.matches("is a folder, not a store").count(),
        1,
        "each cause is said once: {err}"
    );
}

#[test]
fn reject_invalid_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("exchanges.db");
    let certs = dir.path().join("certs");
    let (code, _, err) = run(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--no-tui",
            "--reject-invalid",
            "--store",
            store.to_str().unwrap(),
            "--certs-dir",
            certs.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--reject-invalid needs a token") && err.contains("VOBIZ_AUTH_TOKEN"),
        "{err}"
    );
    assert!(!store.exists(), "it stopped before opening anything");
    let (code, _, err) = run(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--no-tui",
            "--reject-replays",
            "--store",
            store.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--reject-replays needs a token"), "{err}");
    assert!(!store.exists());
    // Set in the environment as shells and container files write it: 1, yes, on.
    for value in ["1", "yes", "on", "true"] {
        let (code, _, err) = run(
            &["listen", "--listen", "127.0.0.1:0", "--no-tui"],
            &[("VOBIZ_TUNNEL_REJECT_INVALID", value)],
        );
        assert_eq!(code, 1, "{value}: {err}");
        assert!(
            err.contains("--reject-invalid needs a token"),
            "{value}: {err}"
        );
    }
}

/// A wait too long for any use is refused with the flag's name; it used to panic.
#[test]
fn waits_out_of_range_are_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("exchanges.db");
    let store = store.to_str().unwrap();
    for flag in ["--forward-timeout", "--header-timeout", "--body-timeout"] {
        let args = [
            "listen",
            "--no-tui",
            "--listen",
            "127.0.0.1:0",
            flag,
            "1e20",
        ];
        let (code, _, err) = run(&[&args[..], &["--store", store]].concat(), &[]);
        assert_eq!(code, 1, "{flag}: {err}");
        assert!(err.contains(flag) && err.contains("at most 86400"), "{err}");
    }
    let (code, _, err) = run(&["replay", "1", "--store", store, "--timeout", "1e20"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--timeout") && err.contains("at most 86400"),
        "{err}"
    );
}

/// A running `vobiz-tunnel listen`, its stdout read line by line on a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn next_line(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line within 20 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_listen(args: &[&str], envs: &[(&str, &str)]) -> Running {
    let mut command = Command::new(BIN);
    command
        .arg("listen")
        .args(args)
        .env_remove("VOBIZ_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines }
}

#[tokio::test]
async fn listen_prints_json_lines_and_list_and_show_read_the_store() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let certs = dir.path().join("certs");
    let running = spawn_listen(
        &[
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &upstream.url(),
            "--store",
            store.to_str().unwrap(),
            "--certs-dir",
            certs.to_str().unwrap(),
            "--no-tui",
            "--log-format",
            "json",
        ],
        &[("VOBIZ_AUTH_TOKEN", TOKEN)],
    );
    let listening = running.next_line();
    assert_eq!(listening["type"], "listening");
    assert_eq!(listening["forward"], upstream.url());
    assert_eq!(listening["store"], store.to_str().unwrap());
    let url = listening["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();

    let client = TlsClient::new(addr, certs.join("dev-ca.pem"));
    let public = format!("https://localhost:{}/vobiz/hangup", addr.port());
    let request = hyper::Request::post("/vobiz/hangup")
        .header("host", format!("localhost:{}", addr.port()))
        .header("content-type", "application/x-www-form-urlencoded");
    let request = vobiz_headers(&public, TOKEN, None)
        .into_iter()
        .fold(request, |r, (n, v)| r.header(n, v))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            HANGUP_BODY.as_bytes(),
        )))
        .unwrap();
    assert_eq!(client.send(request).await.status, 200);
    upstream.next().await;

    let line = running.next_line();
    assert_eq!(line["type"], "exchange");
    assert_eq!(line["id"], 1);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/vobiz/hangup");
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(line["signature"], "valid");
    assert_eq!(line["signature_scheme"], "V3");
    assert_eq!(line["event"], "Hangup");
    assert_eq!(line["call_uuid"], "7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11");
    assert!(line["flags"].as_array().unwrap().is_empty());

    // Readers work while the listener runs.
    let store_arg = store.to_str().unwrap();
    let (code, out, err) = run(&["list", "--json", "--store", store_arg], &[]);
    assert_eq!(code, 0, "{err}");
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["id"], 1);
    assert_eq!(row["event"], "Hangup");
    assert_eq!(row["signature"], "valid");

    let (code, out, _) = run(&["show", "1", "--store", store_arg], &[]);
    assert_eq!(code, 0);
    for expected in [
        "Exchange #1",
        "x-vobiz-signature-v3",
        "HangupCause",
        "NORMAL_CLEARING",
        "Response 200",
        "first byte",
        "valid (V3",
    ] {
        assert!(out.contains(expected), "show prints {expected:?}:\n{out}");
    }
    let (code, out, _) = run(&["show", "1", "--json", "--store", store_arg], &[]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["request"]["body"]["text"], HANGUP_BODY);
    assert_eq!(shown["signature_detail"]["status"], "valid");
    let (code, _, err) = run(&["show", "99", "--store", store_arg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no exchange #99"), "{err}");

    // A replay another process records in this store is in the listener's log too.
    let replay = within(
        tokio::process::Command::new(BIN)
            .args([
                "replay",
                "1",
                "--store",
                store_arg,
                "--forward",
                &upstream.url(),
            ])
            .output(),
    )
    .await
    .unwrap();
    assert!(replay.status.success(), "{replay:?}");
    upstream.next().await;
    let line = running.next_line();
    assert_eq!(line["type"], "exchange");
    assert_eq!(line["replay_of"], 1, "{line}");
    assert!(
        line["flags"].as_array().unwrap().contains(&"replay".into()),
        "{line}"
    );

    // A reader that stops reading (`| head`) ends the command quietly, never in a panic.
    for args in [
        &["list", "--store", store_arg][..],
        &["list", "--json", "--store", store_arg],
        &["show", "1", "--store", store_arg],
        &["show", "1", "--json", "--store", store_arg],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }

    // The token is nowhere: not in the store file (database and WAL), not in the output.
    drop(running);
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", store.display());
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "the token was written to {path}"
            );
        }
    }
}

/// `vobiz-tunnel listen` with its text lines read, storing `s.db` in `dir`, forwarding to
/// `forward`; and a TLS client of it. Its first line said where it listens.
fn listen_with_text_lines(forward: &str, dir: &std::path::Path) -> (Running, TlsClient) {
    let certs = dir.join("certs");
    let mut command = Command::new(BIN);
    command
        .args(["--listen", "127.0.0.1:0", "--forward", forward, "--no-tui"])
        .args(["--store", dir.join("s.db").to_str().unwrap()])
        .args(["--certs-dir", certs.to_str().unwrap()])
        .env_remove("VOBIZ_AUTH_TOKEN")
        .stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running { child, lines };
    let first = running.lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        first.starts_with("vobiz-tunnel listening on https://127.0.0.1:"),
        "{first}"
    );
    let url = first.rsplit(' ').next().unwrap().to_string();
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    (running, TlsClient::new(addr, certs.join("dev-ca.pem")))
}

#[tokio::test]
async fn text_output_has_one_readable_line_per_exchange() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = listen_with_text_lines(&upstream.url(), dir.path());
    let request = hyper::Request::post("/vobiz/answer")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"Event=StartApp&CallUUID=u1",
        )))
        .unwrap();
    client.send(request).await;
    upstream.next().await;
    let line = loop {
        let line = running.lines.recv_timeout(Duration::from_secs(20)).unwrap();
        if line.contains("/vobiz/answer") {
            break line;
        }
    };
    for part in [
        "#1",
        "POST",
        "/vobiz/answer",
        "StartApp",
        "200",
        "ms",
        "unsigned",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
}

/// A sender's escape sequences never reach the terminal: the live line, `list` and `show`
/// show them as `\u{1b}`, and a line feed in a field cannot start a forged log line.
#[tokio::test]
async fn escape_sequences_from_a_sender_are_shown_not_obeyed() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let (running, client) = listen_with_text_lines(&upstream.url(), dir.path());
    // Clear the screen, paint red, retitle the window, write the clipboard, forge a line.
    let body = "Event=%1b%5b2J%1b%5b31mEVIL%07&CallUUID=%1b%5d0;title%07x\
                &Digits=%1b%5d52;c;ZXZpbA%3d%3d%07&Note=a%0d%0a22:00:00.000  #99  POST  forged";
    let request = hyper::Request::post("/vobiz/escape")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    client.send(request).await;
    upstream.next().await;
    let live = loop {
        let line = running.lines.recv_timeout(Duration::from_secs(20)).unwrap();
        if line.contains("/vobiz/escape") {
            break line;
        }
    };
    let obeyed = |text: &str| text.contains(['\u{1b}', '\u{7}']);
    assert!(!obeyed(&live) && live.contains("\\u{1b}[2J"), "{live:?}");
    drop(running);
    let store = store.to_str().unwrap();
    let (code, listed, _) = run(&["list", "--store", store], &[]);
    assert_eq!(code, 0);
    assert!(
        !obeyed(&listed) && listed.contains("\\u{1b}[2J"),
        "{listed:?}"
    );
    let (code, shown, _) = run(&["show", "1", "--store", store], &[]);
    assert_eq!(code, 0);
    assert!(!obeyed(&shown), "{shown:?}");
    assert!(shown.contains("\\u{1b}]52;c;ZXZpbA==\\u{7}"), "{shown}");
    // The body's CR LF reads as a line end; nothing else is obeyed, and the line feed in a
    // form field does not start a line of the report.
    assert!(!shown.contains('\r'), "{shown:?}");
    assert!(
        !shown.lines().any(|line| line.starts_with("22:00:00.000")),
        "{shown}"
    );
}

#[test]
fn sigterm_stops_the_listener_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = spawn_listen(
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            dir.path().join("s.db").to_str().unwrap(),
            "--certs-dir",
            dir.path().join("certs").to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[],
    );
    assert_eq!(running.next_line()["type"], "listening");
    let pid = running.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));

    // The WAL was folded back in: the .db file alone is a complete store (a copy, a backup).
    let copy = dir.path().join("copy.db");
    std::fs::copy(dir.path().join("s.db"), &copy).unwrap();
    let tables: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'exchanges'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "the schema is in the .db file itself");
}

/// Starts `listen` under an open-files limit of `soft`/`hard` (as `ulimit -n` would).
#[cfg(target_os = "linux")]
fn listen_with_open_files(dir: &std::path::Path, soft: u64, hard: u64) -> Child {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(BIN);
    command
        .args(["listen", "--listen", "127.0.0.1:0", "--no-tui"])
        .args(["--log-format", "json", "--store"])
        .arg(dir.join("store.db"))
        .arg("--certs-dir")
        .arg(dir.join("certs"))
        .env_remove("VOBIZ_AUTH_TOKEN")
        .env("VOBIZ_TUNNEL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: between fork and exec, setrlimit is async-signal-safe and touches only `limit`.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command.spawn().unwrap()
}

/// The listener's "listening" line, then what `/proc` says of its open-files limit.
#[cfg(target_os = "linux")]
fn started_with_limit(child: &mut Child) -> String {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"listening\""), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files"));
    open_files.unwrap().to_string()
}

/// Transparent huge pages would keep ~24 MiB more resident under load: the process turns
/// them off for itself, whatever the system's setting.
#[cfg(target_os = "linux")]
#[test]
fn the_listener_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = listen_with_open_files(dir.path(), 4096, 4096);
    started_with_limit(&mut child);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    } else {
        eprintln!("skipped: this kernel's /proc/PID/status has no THP_enabled line");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_open_files_limit_is_raised_or_the_connection_cap_lowered_to_fit() {
    let dir = tempfile::tempdir().unwrap();

    // A soft limit below the hard one: raised, and the default cap of 2048 kept.
    let mut child = listen_with_open_files(dir.path(), 256, 8192);
    let limit = started_with_limit(&mut child);
    let words: Vec<&str> = limit.split_whitespace().collect();
    assert_eq!(&words[3..5], ["8192", "8192"], "{limit}");
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("open files"), "no warning: {stderr}");

    // A hard limit of 256: the cap goes down to what fits, and says so.
    let mut child = listen_with_open_files(dir.path(), 256, 256);
    started_with_limit(&mut child);
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\x1b'), "no colours in a pipe: {stderr:?}");
    assert!(
        stderr.contains("--max-connections 2048 needs about 6208 open files")
            && stderr.contains("may open 256 (ulimit -n); serving at most 64 connections"),
        "{stderr}"
    );
}
