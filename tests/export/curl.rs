//! Copy as curl: the shell quoting is checked by letting `sh` expand it, the argument vector
//! by running the command with `curl` replaced by a shell function that records what it got,
//! and the whole command by running the real curl against the real listener (when installed).

use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use vobiz_tunnel::exchange::{Exchange, Headers, RequestRecord};
use vobiz_tunnel::export::{curl_command, printf_command, shell_quote};
use vobiz_tunnel::signature::{verify, CallbackRequest, Keys, VerdictStatus};

use super::common::*;
use super::ODD_BODY;

/// Runs `script` with `sh -c` in `dir`; stdin empty. Returns stdout, failing on a non-zero exit.
fn sh(script: &str, dir: &Path) -> Vec<u8> {
    let output = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}\n{stderr}");
    output.stdout
}

const TRICKY: &[&[u8]] = &[
    b"",
    b"plain",
    b"it's a 'quote'",
    b"\"double\" and 'single'''",
    b"line one\nline two\n",
    b"\n\n",
    b"$HOME ${PATH} $(id) `id` \\$",
    b"back\\slash \\n \\\\ %s %d %% -n",
    "नमस्ते, emoji 📞, accents é".as_bytes(),
    b"\xff\xfe invalid \xc3( bytes\x80",
    b"\xe2\x82",
    b"*?[a-z] ~ ; | & < > # !",
    b"tab\tcr\rbell\x07esc\x1b",
    b"@starts-with-at",
    b"-starts-with-dash",
];

#[test]
fn shell_quoting_round_trips_through_sh() {
    let dir = tempfile::tempdir().unwrap();
    for &bytes in TRICKY {
        let script = format!("printf %s {}", shell_quote(bytes));
        assert_eq!(sh(&script, dir.path()), bytes, "{script}");
        assert_eq!(sh(&printf_command(bytes), dir.path()), bytes);
    }
    let with_nul = b"a\0b\0\xff\0";
    assert_eq!(sh(&printf_command(with_nul), dir.path()), with_nul);
}

fn exchange(method: &str, url: &str, headers: Vec<(&str, &[u8])>, body: &[u8]) -> Exchange {
    let request = RequestRecord {
        method: method.into(),
        target: "/cb".into(),
        http_version: "HTTP/1.1".into(),
        public_url: url.into(),
        headers: Headers(
            headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
        ),
        body: Bytes::copy_from_slice(body),
        ..RequestRecord::default()
    };
    let verdict = verify(
        &CallbackRequest {
            method,
            url,
            headers: &[],
            body,
            extra_ports: &[],
            other_urls: &[],
        },
        &Keys::default(),
    );
    Exchange::received(request, verdict, 0)
}

/// The arguments curl would get and what it would read on stdin, with `curl` a shell
/// function that writes them to files.
fn argv_and_stdin(command: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let fake =
        "curl() { for a in \"$@\"; do printf '%s\\0' \"$a\"; done > args.bin; cat > stdin.bin; }";
    sh(&format!("{fake}\n{command}"), dir.path());
    let args = std::fs::read(dir.path().join("args.bin")).unwrap();
    let mut args: Vec<Vec<u8>> = args.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    args.pop(); // after the last NUL
    (args, std::fs::read(dir.path().join("stdin.bin")).unwrap())
}

fn strings(words: &[&[u8]]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.to_vec()).collect()
}

#[test]
fn the_command_passes_exactly_the_recorded_request() {
    for &body in TRICKY.iter().chain([ODD_BODY].iter()) {
        let headers = vec![
            ("Host", &b"example.com"[..]),
            ("Connection", b"keep-alive, X-Hop"),
            ("X-Hop", b"1"),
            ("X-Empty", b""),
            ("Content-Length", b"999"),
            ("X-Quote", b"it's $HOME `id`"),
            ("x-odd", b"\xfea\xff"),
        ];
        let url = "http://example.com/cb?a=[1]&b='x'";
        let command = curl_command(&exchange("PUT", url, headers, body), url, None);
        let (args, stdin) = argv_and_stdin(&command);
        let mut expected: Vec<&[u8]> = vec![b"--globoff", b"-X", b"PUT", url.as_bytes()];
        for header in [
            &b"Host: example.com"[..],
            b"X-Empty;",
            b"X-Quote: it's $HOME `id`",
            b"x-odd: \xfea\xff",
        ] {
            expected.extend([&b"-H"[..], header]);
        }
        let piped = body.contains(&0) || body.starts_with(b"@");
        if !body.is_empty() {
            expected.extend([&b"-H"[..], b"Content-Type:", b"--data-binary"]);
            expected.push(if piped { b"@-" } else { body });
        }
        assert_eq!(args, strings(&expected), "{command}");
        assert_eq!(stdin, if piped { body } else { b"" }, "{command}");
    }
    let get = exchange("GET", "https://localhost:8443/cb", vec![], b"");
    let ca = Path::new("/home/dev/my certs/dev-ca.pem");
    let command = curl_command(&get, "https://localhost:8443/cb", Some(ca));
    assert_eq!(
        command,
        "curl --cacert '/home/dev/my certs/dev-ca.pem' --http1.1 'https://localhost:8443/cb'"
    );
    // A certificate of the user's own: no CA of ours to name.
    let command = curl_command(&get, "https://localhost:8443/cb", None);
    assert_eq!(command, "curl --http1.1 'https://localhost:8443/cb'");
    let post = exchange(
        "POST",
        "https://127.0.0.1/cb",
        vec![("Content-Type", b"text/plain")],
        b"x",
    );
    let (args, _) = argv_and_stdin(&curl_command(&post, "https://example.com/cb", Some(ca)));
    assert!(!args.contains(&b"--cacert".to_vec()) && !args.contains(&b"-X".to_vec()));
}

fn curl_installed() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Header pairs as a sorted multiset: curl puts its own defaults first, so order differs.
fn header_set(headers: &Headers) -> Vec<(String, Vec<u8>)> {
    let mut set: Vec<_> = headers
        .0
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    set.sort();
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reproduces_recorded_requests_against_the_listener() {
    if !curl_installed() {
        eprintln!("skipped running curl: `curl --version` did not run (curl not installed)");
        return;
    }
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let host = format!("localhost:{}", harness.port());
    let url = harness.url("/vobiz/hangup");
    let signed = form_post(
        &harness,
        "/vobiz/hangup",
        HANGUP_BODY,
        &vobiz_headers(&url, TOKEN, None),
    );
    let odd = Request::put("/vobiz/odd?x=[1]&y=%27")
        .header("host", &host)
        .header("user-agent", "Vobiz")
        .header("accept", "*/*")
        .header("x-empty", "")
        .header(
            "x-odd",
            hyper::header::HeaderValue::from_bytes(b"\xfea\xff").unwrap(),
        )
        .body(Full::new(Bytes::from_static(ODD_BODY)))
        .unwrap();
    let text = Request::post("/vobiz/text")
        .header("host", &host)
        .header("user-agent", "Vobiz")
        .header("accept", "*/*")
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(TRICKY[6..10].concat())))
        .unwrap();
    for request in [signed, odd, text] {
        harness.client().send(request).await;
        upstream.next().await;
        let original = harness.last_recorded().await;
        let command = curl_command(
            &original,
            &harness.url(&original.request.target),
            Some(&harness.ca_path()),
        );
        // Pasted in a folder without the certificates: the CA is named by its whole path.
        let elsewhere = tempfile::tempdir().unwrap();
        let script = format!("{command} --silent --show-error");
        let stdout = tokio::task::spawn_blocking(move || sh(&script, elsewhere.path()))
            .await
            .unwrap();
        assert_eq!(stdout, Reply::default().body.as_bytes(), "{command}");
        upstream.next().await;
        let again = harness.last_recorded().await;
        assert_eq!(again.id, original.id.map(|id| id + 1));
        let (a, b) = (&original.request, &again.request);
        assert_eq!((&b.method, &b.target), (&a.method, &a.target), "{command}");
        assert_eq!(b.body, a.body, "{command}");
        assert_eq!(header_set(&b.headers), header_set(&a.headers), "{command}");
        assert_eq!(again.verdict.status, original.verdict.status);
    }
    let first = harness.reader().get(2).unwrap().unwrap();
    assert_eq!(first.verdict.status, VerdictStatus::Valid);
    assert_eq!(first.nonce_reused_of, Some(1), "curl resent the same nonce");
}
