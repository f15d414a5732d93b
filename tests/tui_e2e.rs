//! The real binary with its live UI in a real pseudo-terminal: signed callbacks over TLS
//! show up on screen, keys replay and filter them, and every way out (`q`, Ctrl-C, SIGTERM)
//! leaves the terminal as it was. The screen is kept by a `vt100` model of everything the
//! program wrote; every wait polls it with a deadline.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");
const COLS: u16 = 120;
const ROWS: u16 = 36;
/// The longest any single wait on the screen may take.
const SCREEN_WAIT: Duration = Duration::from_secs(10);

/// What the program wrote: the screen model, the raw bytes, and whether the PTY closed.
struct Output {
    parser: vt100::Parser,
    raw: Vec<u8>,
    closed: bool,
}

/// The binary running in a PTY of 120x36.
struct Tui {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    output: Arc<Mutex<Output>>,
    dir: tempfile::TempDir,
}

impl Tui {
    /// Starts `vobiz-tunnel` forwarding to `forward`, with a fresh store and certificates.
    fn start(forward: &str) -> Tui {
        Tui::start_with(forward, &[])
    }

    /// Like [`Tui::start`], with `env` set in the program's environment (an `EDITOR`).
    fn start_with(forward: &str, env: &[(&str, &str)]) -> Tui {
        Tui::start_in(tempfile::tempdir().unwrap(), forward, env)
    }

    /// Like [`Tui::start_with`], in `dir`, whose `exchanges.db` may already hold exchanges.
    fn start_in(dir: tempfile::TempDir, forward: &str, env: &[(&str, &str)]) -> Tui {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(BIN);
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--forward",
            forward,
            "--store",
            dir.path().join("exchanges.db").to_str().unwrap(),
            "--certs-dir",
            dir.path().join("certs").to_str().unwrap(),
        ]);
        // Nothing of the caller's configuration leaks in: every VOBIZ_* setting is cleared
        // (a hand-kept list goes stale as options are added), and no editor is launched.
        let inherited = std::env::vars_os().map(|(name, _)| name);
        for name in inherited.filter(|name| name.to_string_lossy().starts_with("VOBIZ_")) {
            command.env_remove(name);
        }
        for name in ["VISUAL", "EDITOR"] {
            command.env_remove(name);
        }
        command.env("VOBIZ_AUTH_TOKEN", TOKEN);
        command.env("TERM", "xterm-256color");
        for (name, value) in env {
            command.env(name, value);
        }
        command.cwd(dir.path());
        let child = pty.slave.spawn_command(command).expect("the binary starts");
        // Only the child holds the terminal side now, so its exit closes our reader.
        drop(pty.slave);
        let output = Arc::new(Mutex::new(Output {
            parser: vt100::Parser::new(
                std::num::NonZeroU16::new(ROWS).unwrap(),
                std::num::NonZeroU16::new(COLS).unwrap(),
                0,
            ),
            raw: Vec::new(),
            closed: false,
        }));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut output = sink.lock().unwrap();
                        output.parser.process(&buffer[..n]);
                        output.raw.extend_from_slice(&buffer[..n]);
                    }
                }
            }
            sink.lock().unwrap().closed = true;
        });
        let writer = pty.master.take_writer().unwrap();
        Tui {
            child,
            master: pty.master,
            writer,
            output,
            dir,
        }
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("exchanges.db")
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs").join("dev-ca.pem")
    }

    /// The screen as text, rows joined by newlines.
    fn screen(&self) -> String {
        self.output.lock().unwrap().parser.screen().contents()
    }

    /// Prints the screen when `TUI_E2E_SHOW` is set (for looking at what a test saw).
    fn show(&self, label: &str) {
        if std::env::var_os("TUI_E2E_SHOW").is_some() {
            println!("--- {label}\n{}", self.screen());
        }
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Polls the screen until `ready` holds; fails with the screen after [`SCREEN_WAIT`].
    async fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_for_text(&self, needle: &str) -> String {
        self.wait_for(needle, |s| s.contains(needle)).await
    }

    /// The listening address, read from the top bar.
    async fn listen_addr(&self) -> SocketAddr {
        let screen = self.wait_for_text("https://127.0.0.1:").await;
        let start = screen.find("https://127.0.0.1:").unwrap() + "https://".len();
        let rest = &screen[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        rest[..end].parse().expect("an address in the top bar")
    }

    /// Waits for the process to exit and the PTY to close; returns the exit code.
    async fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + SCREEN_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                panic!("the process did not exit; the screen:\n{}", self.screen());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        while !self.output.lock().unwrap().closed {
            if Instant::now() > deadline {
                panic!("the terminal was not closed after the exit");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(status.signal().is_none(), "killed by {:?}", status.signal());
        status.exit_code()
    }

    /// After the exit: the alternate screen was left last, the cursor is shown, mouse
    /// reporting is off, and the terminal is back in canonical mode with echo.
    fn assert_restored(&self) {
        let output = self.output.lock().unwrap();
        let raw = &output.raw;
        let entered = find_last(raw, b"\x1b[?1049h").expect("the alternate screen was entered");
        let left = find_last(raw, b"\x1b[?1049l").expect("the alternate screen was left");
        assert!(
            left > entered,
            "the alternate screen is left after it is entered"
        );
        let screen = output.parser.screen();
        assert!(!screen.alternate_screen(), "back on the normal screen");
        assert!(!screen.hide_cursor(), "the cursor is visible");
        assert_eq!(
            screen.mouse_protocol_mode(),
            vt100::MouseProtocolMode::None,
            "mouse reporting is off"
        );
        let fd = self.master.as_raw_fd().expect("a unix pty");
        // SAFETY: tcgetattr only writes the termios struct we own; `fd` is the open master.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut termios) }, 0);
        assert_ne!(
            termios.c_lflag & libc::ICANON,
            0,
            "raw mode is off (ICANON)"
        );
        assert_ne!(termios.c_lflag & libc::ECHO, 0, "raw mode is off (ECHO)");
        assert_ne!(termios.c_lflag & libc::ISIG, 0, "raw mode is off (ISIG)");
    }

    fn pid(&self) -> u32 {
        self.child.process_id().expect("a pid")
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The line of the screen that shows exchange `#id` in the list.
fn list_row(screen: &str, id: i64) -> Option<&str> {
    let tag = format!(" #{id} ");
    screen
        .lines()
        .find(|line| line.starts_with('│') && line.contains(&tag) && line.contains("POST"))
}

/// The id in the detail pane's title (`┌ #12 ───`).
fn detail_id(screen: &str) -> Option<i64> {
    screen.lines().find_map(|line| {
        let rest = line.strip_prefix("┌ #")?;
        rest.split(' ').next()?.parse().ok()
    })
}

/// One keep-alive HTTP/1.1 connection over TLS to the listener.
async fn connect(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tls_connector(ca, b"http/1.1")
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// A form POST as Vobiz sends it, signed for `https://localhost:PORT/path`.
fn callback(
    port: u16,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path)
        .header("host", format!("localhost:{port}"))
        .header("user-agent", "Vobiz")
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn send(addr: SocketAddr, ca: &std::path::Path, request: Request<Full<Bytes>>) -> u16 {
    within(async {
        let mut sender = connect(addr, ca).await;
        let response = sender.send_request(request).await.unwrap();
        response.status().as_u16()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_show_up_and_keys_replay_filter_and_quit() {
    let mut upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    let addr = tui.listen_addr().await;
    let port = addr.port();
    let url = format!("https://localhost:{port}/vobiz/hangup");
    tui.wait_for_text("No exchanges yet.").await;

    // #1: a Ring on another path, so that the filter has something to hide.
    let ring = "CallUUID=7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11&Event=Ring&From=919876543210";
    let ring_url = format!("https://localhost:{port}/vobiz/ring");
    let status = send(
        addr,
        &tui.ca_path(),
        callback(
            port,
            "/vobiz/ring",
            ring,
            &vobiz_headers_fresh(&ring_url, TOKEN, 1),
        ),
    )
    .await;
    assert_eq!(status, 200);
    upstream.next().await;

    // #2: the signed Hangup.
    let signed = vobiz_headers(&url, TOKEN, None);
    let status = send(
        addr,
        &tui.ca_path(),
        callback(port, "/vobiz/hangup", HANGUP_BODY, &signed),
    )
    .await;
    assert_eq!(status, 200);
    let original = upstream.next().await;
    assert_eq!(original.body, Bytes::from(HANGUP_BODY));
    let screen = tui
        .wait_for("#2 on screen", |s| list_row(s, 2).is_some())
        .await;
    let row = list_row(&screen, 2).unwrap();
    for fact in ["/vobiz/hangup", "Hangup", "200", "✓ valid"] {
        assert!(row.contains(fact), "{fact} in {row:?}\n{screen}");
    }

    // r: the same bytes again, seen by the upstream, shown as #3 ↺#2 with a reused nonce.
    tui.press("r");
    let replayed = upstream.next().await;
    assert_eq!(replayed.body, original.body, "the same body");
    assert_eq!(
        replayed.header("x-vobiz-signature-v3-nonce"),
        original.header("x-vobiz-signature-v3-nonce"),
        "as-is: the same nonce"
    );
    let screen = tui
        .wait_for("the replay #3 with its flags", |s| {
            list_row(s, 3).is_some_and(|row| row.contains("↺#2") && row.contains("reused"))
        })
        .await;
    assert_eq!(
        detail_id(&screen),
        Some(2),
        "the original stays selected: r again resends it, not the replay"
    );
    tui.show("after r");

    // j/k are answered at once: the detail pane follows the selection.
    tui.press("k");
    tui.wait_for("#1 selected", |s| detail_id(s) == Some(1))
        .await;
    let pressed = Instant::now();
    tui.press("j");
    tui.wait_for("#2 selected", |s| detail_id(s) == Some(2))
        .await;
    let latency = pressed.elapsed();
    println!("key latency (j to a changed screen): {latency:?}");
    assert!(latency < Duration::from_secs(2), "j took {latency:?}");

    // R on #2: re-signed, so the upstream sees a fresh nonce.
    tui.press("R");
    let resigned = upstream.next().await;
    assert_eq!(resigned.body, original.body);
    let nonce = resigned.header("x-vobiz-signature-v3-nonce").unwrap();
    assert_ne!(Some(nonce), original.header("x-vobiz-signature-v3-nonce"));
    assert_eq!(nonce.len(), 20);
    let screen = tui
        .wait_for("the re-signed replay #4", |s| list_row(s, 4).is_some())
        .await;
    let row = list_row(&screen, 4).unwrap();
    assert!(row.contains("↺#2") && row.contains("✓ valid"), "{row}");
    assert!(
        !row.contains("reused"),
        "a fresh nonce is not a reuse: {row}"
    );

    // / event:Hangup Enter: the Ring disappears.
    assert!(list_row(&screen, 1).is_some());
    tui.press("/");
    tui.wait_for_text("filter /").await;
    tui.press("event:Hangup");
    tui.wait_for_text("filter / event:Hangup").await;
    tui.press("\r");
    // Keys are drawn at once, so the "loading…" frame of the filtered page may show first.
    let screen = tui
        .wait_for_text("Exchanges (3) filter: event:Hangup")
        .await;
    assert!(
        screen.contains("Exchanges (3) filter: event:Hangup"),
        "{screen}"
    );
    assert!(
        list_row(&screen, 1).is_none(),
        "the Ring is filtered out:\n{screen}"
    );
    assert!(list_row(&screen, 2).is_some() && list_row(&screen, 4).is_some());
    tui.show("filtered");

    // c: the selected exchange as curl, to the clipboard (OSC 52) and whole on screen.
    let selected = detail_id(&screen).expect("a selected exchange");
    tui.press("c");
    let title = format!("#{selected} as curl, copied (OSC 52) — Esc closes");
    let screen = tui.wait_for_text(&title).await;
    assert!(screen.contains("curl --cacert"), "{screen}");
    let osc52 = find_last(&tui.output.lock().unwrap().raw, b"\x1b]52;c;");
    assert!(osc52.is_some(), "the command went to the clipboard");
    tui.press("\x1b");
    tui.wait_for("the box closed", |s| !s.contains(&title))
        .await;

    // ? shows the keys; q quits with status 0 and the terminal restored.
    tui.press("?");
    let screen = tui.wait_for_text("Keys (? or Esc closes)").await;
    assert!(screen.contains("replay re-signed"), "{screen}");
    tui.show("help");
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
    tui.show("after q");
    let screen = tui.screen();
    assert!(
        screen.contains("vobiz-tunnel stopped; exchanges are in"),
        "the goodbye line is on the normal screen:\n{screen}"
    );
    let count = vobiz_tunnel::store::StoreReader::open(&tui.store_path())
        .unwrap()
        .count()
        .unwrap();
    assert_eq!(count, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_quits_and_restores_the_terminal() {
    let upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;
    tui.press("\x03");
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
}

/// What the settings' warnings say before the start is on screen, not behind the inspector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_warnings_show_in_the_inspector() {
    let upstream = upstream(Reply::default()).await;
    let env = [
        ("VOBIZ_TUNNEL_RELAY", "127.0.0.1:1"),
        ("VOBIZ_TUNNEL_RELAY_TOKEN", "relay-token-0123456789abcdef"),
        ("VOBIZ_TUNNEL_PUBLIC_URL", "https://other.example.com"),
    ];
    let mut tui = Tui::start_with(&upstream.url(), &env);
    tui.wait_for_text("warning: --public-url https://other.example.com")
        .await;
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_quits_and_restores_the_terminal() {
    let upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;
    // SAFETY: kill(2) with our own child's pid and a signal number has no memory effects.
    let sent = unsafe { libc::kill(tui.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill -TERM {}", tui.pid());
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_recorded_and_keys_are_answered_during_it() {
    const CALLBACKS: usize = 2_000;
    const CONNECTIONS: usize = 16;
    let mut upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    let addr = tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;
    let port = addr.port();
    let url = format!("https://localhost:{port}/vobiz/hangup");

    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for connection in 0..CONNECTIONS {
        let ca = tui.ca_path();
        let url = url.clone();
        let answered = answered.clone();
        clients.push(tokio::spawn(async move {
            let mut sender = connect(addr, &ca).await;
            let mut statuses = Vec::new();
            for i in (connection..CALLBACKS).step_by(CONNECTIONS) {
                let headers = vobiz_headers_fresh(&url, TOKEN, i as u64);
                let request = callback(port, "/vobiz/hangup", HANGUP_BODY, &headers);
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                statuses.push(response.status().as_u16());
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            statuses
        }));
    }

    // Mid-burst: p must be answered while callbacks keep arriving.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(std::sync::atomic::Ordering::Relaxed) < CALLBACKS / 4 {
        assert!(Instant::now() < deadline, "the burst stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at = answered.load(std::sync::atomic::Ordering::Relaxed);
    let pressed = Instant::now();
    tui.press("p");
    tui.wait_for_text("PAUSED (").await;
    let latency = pressed.elapsed();
    let after = answered.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "mid-burst key latency (p to PAUSED on screen): {latency:?} \
         (pressed after {at} answers, shown after {after})"
    );
    assert!(latency < Duration::from_secs(2), "p took {latency:?}");
    tui.press("p");

    let mut ok = 0;
    for client in clients {
        let statuses =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), client)
                .await
                .expect("the burst finishes within 60 s")
                .unwrap();
        ok += statuses.iter().filter(|&&s| s == 200).count();
    }
    let elapsed = started.elapsed();
    println!(
        "burst: {CALLBACKS} signed callbacks over {CONNECTIONS} connections in {elapsed:?} \
         ({:.0}/s)",
        CALLBACKS as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(ok, CALLBACKS, "every callback got 200");
    let mut seen = 0;
    while seen < CALLBACKS {
        upstream.next().await;
        seen += 1;
    }

    let reader = vobiz_tunnel::store::StoreReader::open(&tui.store_path()).unwrap();
    assert_eq!(
        reader.count().unwrap(),
        CALLBACKS as u64,
        "every callback is stored"
    );
    // Every row is listed once. (The top bar's total is not checked exactly: an exchange
    // that both the event channel and the store poll deliver is counted twice.)
    let screen = tui
        .wait_for("every row listed", |s| {
            s.contains(&format!("Exchanges ({CALLBACKS})"))
                && list_row(s, CALLBACKS as i64).is_some()
        })
        .await;
    assert!(!screen.contains("PAUSED"), "resumed:\n{screen}");
    let top = screen.lines().next().unwrap_or("");
    println!("top bar after the burst: {}", top.trim());
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
}

/// Sends a signed form POST of `body` to `path` on its own connection; returns the status.
async fn send_signed(tui: &Tui, addr: SocketAddr, path: &str, body: &str, seed: u64) -> u16 {
    let port = addr.port();
    let url = format!("https://localhost:{port}{path}");
    let headers = vobiz_headers_fresh(&url, TOKEN, seed);
    send(addr, &tui.ca_path(), callback(port, path, body, &headers)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_view_follows_callbacks_as_they_arrive() {
    let mut upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    let addr = tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;

    let ring_a = "CallUUID=call-a-0001&Event=Ring&From=919876543210";
    assert_eq!(send_signed(&tui, addr, "/ring", ring_a, 1).await, 200);
    upstream.next().await;
    tui.wait_for("the Ring listed", |s| list_row(s, 1).is_some())
        .await;

    // v: the call view; Enter opens call A's timeline.
    tui.press("v");
    tui.wait_for_text("Calls (1)").await;
    tui.press("\r");
    tui.wait_for_text("Call call-a-0001").await;

    // While the view is open, call A hangs up and call B rings: both show without a key.
    let hangup_a = "CallUUID=call-a-0001&Event=Hangup&HangupCause=NORMAL_CLEARING";
    assert_eq!(send_signed(&tui, addr, "/hangup", hangup_a, 2).await, 200);
    let ring_b = "CallUUID=call-b-0002&Event=Ring&From=919876500000";
    assert_eq!(send_signed(&tui, addr, "/ring", ring_b, 3).await, 200);
    upstream.next().await;
    upstream.next().await;
    let screen = tui
        .wait_for("both calls, and call A's timeline with its Hangup", |s| {
            s.contains("Calls (2)")
                && s.contains("call-b-0002")
                && s.lines().any(|l| l.contains("Ring → Hangup"))
                && s.lines()
                    .any(|l| l.contains("Hangup") && l.contains("/hangup"))
        })
        .await;
    tui.show("call view after arrivals");
    assert!(
        screen.contains("Call call-a-0001"),
        "the open timeline is still call A's:\n{screen}"
    );

    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_forward_shows_as_the_last_error() {
    // A port nothing listens on: the local server "is not running".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut tui = Tui::start(&dead);
    let addr = tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;

    let ring = "CallUUID=call-c-0003&Event=Ring";
    assert_eq!(send_signed(&tui, addr, "/ring", ring, 4).await, 502);
    let screen = tui
        .wait_for("the forwarding failure in the status bar", |s| {
            s.contains("last error: #1 POST /ring: cannot reach your local server")
        })
        .await;
    tui.show("last error");
    assert!(list_row(&screen, 1).is_some(), "and the row is listed");
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
}

/// The mouse in a real terminal: a click (SGR reporting) selects the row under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_selects_the_row_under_the_pointer() {
    let mut upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    let addr = tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;
    for seed in 1..=3 {
        let body = format!("CallUUID=call-m-000{seed}&Event=Ring");
        assert_eq!(send_signed(&tui, addr, "/ring", &body, seed).await, 200);
        upstream.next().await;
    }
    let screen = tui
        .wait_for("three rows, the newest selected", |s| {
            list_row(s, 3).is_some() && detail_id(s) == Some(3)
        })
        .await;
    let row = screen
        .lines()
        .position(|line| list_row(line, 1).is_some())
        .expect("row #1 on screen");
    // Press and release of the left button at column 20 of that row (1-based).
    tui.press(&format!("\x1b[<0;20;{}M\x1b[<0;20;{}m", row + 1, row + 1));
    tui.wait_for("#1 selected by the click", |s| detail_id(s) == Some(1))
        .await;
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
}

/// `x` exports to the path typed; a file already there is replaced only after a `y`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_asks_before_replacing_a_file() {
    let mut upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    let addr = tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;
    let body = "CallUUID=call-x-0001&Event=Ring";
    assert_eq!(send_signed(&tui, addr, "/ring", body, 7).await, 200);
    upstream.next().await;
    tui.wait_for("the row", |s| list_row(s, 1).is_some()).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.har");
    std::fs::write(&file, "keep me").unwrap();
    let export_to = |tui: &mut Tui| {
        // x opens the prompt pre-filled; Ctrl-U clears it.
        tui.press("x\x15");
        tui.press(&format!("{}\r", file.display()));
    };
    export_to(&mut tui);
    tui.wait_for_text("mine.har exists: overwrite it?").await;
    tui.press("n");
    tui.wait_for_text("not exported").await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    export_to(&mut tui);
    tui.wait_for_text("overwrite it?").await;
    tui.press("y");
    tui.wait_for_text("exported 1 exchange to").await;
    let har: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 1);

    // A folder is no file to write; a relative name is said in full (it is the listener's
    // folder it lands in, which may not be the one the user thinks of).
    tui.press("x\x15");
    tui.press(&format!("{}\r", dir.path().display()));
    tui.wait_for_text("is a folder: type a file name").await;
    tui.press("x\x15");
    tui.press("relative.har\r");
    let landed = tui.store_path().with_file_name("relative.har");
    tui.wait_for_text(&format!("exported 1 exchange to {}", landed.display()))
        .await;
    assert!(landed.exists());
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
}

/// After a restart on a large store, the top bar counts the whole store, not the page of
/// rows loaded (here the invalid callbacks are all older than that page), and `g` goes to
/// the oldest row at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_bar_counts_the_whole_store_after_a_restart() {
    use vobiz_tunnel::signature::VerdictStatus;
    let dir = tempfile::tempdir().unwrap();
    let store = vobiz_tunnel::store::Store::open(&dir.path().join("exchanges.db")).unwrap();
    for i in 0..620 {
        let verdict = if i < 30 {
            VerdictStatus::Invalid
        } else {
            VerdictStatus::Valid
        };
        let status = if i < 10 { 500 } else { 200 };
        record(&store, answered("/cb", verdict, status)).await;
    }
    store.flush().await;
    drop(store);

    let mut tui = Tui::start_in(dir, "http://127.0.0.1:9", &[]);
    let screen = tui.wait_for_text("620 stored ✓590 ✗30").await;
    assert!(screen.contains("Exchanges (620)"), "{screen}");
    // One g reaches the oldest exchange, though only the newest 500 were loaded.
    tui.press("g");
    tui.wait_for("#1 selected", |s| detail_id(s) == Some(1))
        .await;
    tui.press("vv");
    let screen = tui.wait_for_text("Health (620 exchanges seen)").await;
    assert!(screen.contains("5xx 10"), "{screen}");
    assert!(screen.contains("invalid 30"), "{screen}");
}

/// Records `count` unsigned exchanges answered 200 in the store at `path`, as another
/// process (a `replay` or `import` run) would.
async fn record_answered(path: &std::path::Path, count: usize) {
    record_answered_at(path, &vec!["/cb"; count]).await;
}

/// Like [`record_answered`], one exchange per target (a query names its Event).
async fn record_answered_at(path: &std::path::Path, targets: &[&str]) {
    use vobiz_tunnel::signature::VerdictStatus;
    let store = vobiz_tunnel::store::Store::open(path).unwrap();
    for target in targets {
        record(&store, answered(target, VerdictStatus::Unsigned, 200)).await;
    }
    store.flush().await;
}

/// A POST to `target` with `verdict`, answered `status`.
fn answered(
    target: &str,
    verdict: vobiz_tunnel::signature::VerdictStatus,
    status: u16,
) -> vobiz_tunnel::exchange::Exchange {
    use vobiz_tunnel::exchange::{Exchange, Outcome, RequestRecord, ResponseRecord};
    let request = RequestRecord {
        method: "POST".into(),
        target: target.to_string(),
        http_version: "HTTP/1.1".into(),
        public_url: "https://example.com/cb".into(),
        ..RequestRecord::default()
    };
    let mut exchange =
        Exchange::received(request, vobiz_tunnel::signature::Verdict::bare(verdict), 0);
    exchange.outcome = Outcome::Forwarded;
    exchange.response = Some(ResponseRecord {
        status,
        ..ResponseRecord::default()
    });
    exchange
}

/// Writes `exchange` as the listener does: its row, then its end.
async fn record(
    store: &vobiz_tunnel::store::Store,
    mut exchange: vobiz_tunnel::exchange::Exchange,
) {
    let inserted = store
        .insert(std::sync::Arc::new(exchange.clone()))
        .await
        .unwrap();
    exchange.id = Some(inserted.id);
    store.complete(std::sync::Arc::new(exchange));
}

/// Esc clears the filter and keeps the exchange selected under it in view, among its
/// neighbours, newer ones included; nothing is counted as new, as nothing arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_filter_shows_the_kept_exchange_with_its_newer_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    record_answered(&dir.path().join("exchanges.db"), 5).await;
    let mut tui = Tui::start_in(dir, "http://127.0.0.1:9", &[]);
    tui.wait_for("#5 listed", |s| list_row(s, 5).is_some())
        .await;
    tui.press("/");
    tui.wait_for_text("filter /").await;
    tui.press("id:..3\r");
    tui.wait_for("#3 selected under the filter", |s| {
        s.contains("filter: id:..3") && list_row(s, 4).is_none() && detail_id(s) == Some(3)
    })
    .await;
    tui.press("\x1b");
    tui.wait_for("#1 to #5 listed", |s| {
        !s.contains("filter:") && (1..=5).all(|id| list_row(s, id).is_some())
    })
    .await;
    // A few store polls later: still nothing new.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let screen = tui.wait_for_text(" 5 stored ").await;
    assert!(!screen.contains("new ↓"), "{screen}");
    assert_eq!(
        detail_id(&screen),
        Some(3),
        "#3 is still selected: {screen}"
    );
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
}

/// With a filter, the top bar still counts the whole store: rows another process writes
/// (a `replay` or `import` run) are counted though the filter hides them from the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_bar_counts_what_another_process_writes_under_a_filter() {
    let mut tui = Tui::start("http://127.0.0.1:9");
    tui.wait_for_text("No exchanges yet.").await;
    tui.press("/");
    tui.wait_for_text("filter /").await;
    tui.press("event:Ring\r");
    tui.wait_for_text("filter: event:Ring").await;

    // Another writer on the same store.
    record_answered(&tui.store_path(), 3).await;

    let screen = tui.wait_for_text(" 3 stored ").await;
    assert!(screen.contains("-3 "), "counted as unsigned: {screen}");
    assert!(list_row(&screen, 1).is_none(), "not listed: {screen}");

    // Rows it hides, then one it shows, written together: all are counted, the last listed.
    let targets = ["/cb?Event=Hangup", "/cb?Event=Hangup", "/cb?Event=Ring"];
    record_answered_at(&tui.store_path(), &targets).await;
    let screen = tui
        .wait_for("#6 listed", |s| list_row(s, 6).is_some())
        .await;
    let screen = match screen.contains(" 6 stored ") {
        true => screen,
        false => tui.wait_for_text(" 6 stored ").await,
    };
    assert!(list_row(&screen, 4).is_none(), "{screen}");
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
}

/// The store file deleted under the running listener: the listener starts a new store, and
/// the inspector reads that one (details, pages) instead of the deleted file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_follows_a_store_recreated_under_it() {
    let mut upstream = upstream(Reply::default()).await;
    let mut tui = Tui::start(&upstream.url());
    let addr = tui.listen_addr().await;
    tui.wait_for_text("No exchanges yet.").await;
    let body = "CallUUID=call-s-0001&Event=Ring";
    assert_eq!(send_signed(&tui, addr, "/first", body, 11).await, 200);
    upstream.next().await;
    tui.wait_for("#1 listed", |s| list_row(s, 1).is_some())
        .await;

    let store = tui.store_path();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    // The listener notices within 0.1 s and starts a new store; its ids start at 1 again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (path, seed) in [("/second", 12), ("/third", 13)] {
        assert_eq!(send_signed(&tui, addr, path, body, seed).await, 200);
        upstream.next().await;
    }
    tui.wait_for_text("the store file was replaced").await;
    let screen = tui
        .wait_for("the new store's two rows", |s| {
            list_row(s, 2).is_some_and(|row| row.contains("/third"))
        })
        .await;
    assert!(!screen.contains("/first"), "{screen}");
    // #1 of the new store, read from the store: /second, not the deleted file's /first.
    tui.press("k");
    let screen = tui
        .wait_for("#1's detail", |s| detail_id(s) == Some(1))
        .await;
    assert!(screen.contains("/second"), "{screen}");
    assert!(!screen.contains("/first"), "{screen}");
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
}

/// `e` opens the request in `$EDITOR`: quitting without a change sends nothing; a save that
/// cannot be read comes back in the editor with the reason on top; the fixed save is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_replay_sends_the_fixed_save_and_nothing_when_unchanged() {
    let mut upstream = upstream(Reply::default()).await;
    let tools = tempfile::tempdir().unwrap();
    let editor = tools.path().join("editor.sh");
    std::fs::write(
        &editor,
        r#"#!/bin/sh
here=$(dirname "$0")
case "$(cat "$here/mode")" in
  keep) ;;
  break)
    if grep -q '^# vobiz-tunnel: line 1' "$1"; then
      sed -i '/^# vobiz-tunnel:/d; s|^GARBAGE LINE$|POST /vobiz/hangup HTTP/1.1|; s/NORMAL_CLEARING/USER_BUSY/' "$1"
      touch "$here/saw-note"
    else
      sed -i '1s/.*/GARBAGE LINE/' "$1"
    fi ;;
esac
"#,
    )
    .unwrap();
    let mode = |m: &str| std::fs::write(tools.path().join("mode"), m).unwrap();
    let editor_command = format!("sh {}", editor.display());
    let mut tui = Tui::start_with(&upstream.url(), &[("EDITOR", &editor_command)]);
    let addr = tui.listen_addr().await;
    let port = addr.port();
    let url = format!("https://localhost:{port}/vobiz/hangup");
    let signed = vobiz_headers(&url, TOKEN, None);
    let request = callback(port, "/vobiz/hangup", HANGUP_BODY, &signed);
    assert_eq!(send(addr, &tui.ca_path(), request).await, 200);
    upstream.next().await;
    tui.wait_for("#1 on screen", |s| list_row(s, 1).is_some())
        .await;

    // Quit without saving: nothing is sent.
    mode("keep");
    tui.press("e");
    tui.wait_for_text("was not changed: nothing sent").await;
    upstream.assert_nothing(Duration::from_millis(300)).await;

    // A broken save comes back with the reason; the fixed one goes out.
    mode("break");
    tui.press("e");
    let replayed = upstream.next().await;
    assert!(
        tools.path().join("saw-note").exists(),
        "the editor showed why"
    );
    assert!(
        String::from_utf8_lossy(&replayed.body).contains("HangupCause=USER_BUSY"),
        "{:?}",
        replayed.body
    );
    tui.wait_for_text("replayed #1 (edited) as #2: 200").await;
    tui.press("q");
    tui.wait_exit().await;
}

/// A stop while `$EDITOR` is open does not wait for the editor: it is closed, the edit is
/// not sent, and the terminal is restored. Quitting while a replay waits for a slow local
/// server gives it a moment to be answered, and its row says how it went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_the_editor_and_quitting_lets_a_replay_finish() {
    let mut upstream = upstream(Reply {
        delay: Duration::from_millis(700),
        ..Reply::default()
    })
    .await;
    let tools = tempfile::tempdir().unwrap();
    let editor = tools.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\ntouch \"$(dirname \"$0\")/started\"\nsleep 30\n\
         sed -i 's/NORMAL_CLEARING/USER_BUSY/' \"$1\"\n",
    )
    .unwrap();
    let editor_command = format!("sh {}", editor.display());

    // Quitting while a replay waits for its answer.
    let mut tui = Tui::start_with(&upstream.url(), &[("EDITOR", &editor_command)]);
    let addr = tui.listen_addr().await;
    let port = addr.port();
    let request = callback(port, "/vobiz/hangup", HANGUP_BODY, &[]);
    assert_eq!(send(addr, &tui.ca_path(), request).await, 200);
    upstream.next().await;
    tui.wait_for("#1 on screen", |s| list_row(s, 1).is_some())
        .await;
    tui.press("r");
    upstream.next().await; // the replay reached the local server, which takes its time
    tui.press("q");
    assert_eq!(tui.wait_exit().await, 0);
    let reader = vobiz_tunnel::store::StoreReader::open(&tui.store_path()).unwrap();
    let replay = reader.get(2).unwrap().expect("the replay's row");
    assert_eq!(replay.replay_of, Some(1));
    assert_eq!(replay.status(), Some(200), "{replay:?}");

    // SIGTERM while the editor is open.
    let mut tui = Tui::start_with(&upstream.url(), &[("EDITOR", &editor_command)]);
    let addr = tui.listen_addr().await;
    let request = callback(addr.port(), "/vobiz/hangup", HANGUP_BODY, &[]);
    assert_eq!(send(addr, &tui.ca_path(), request).await, 200);
    upstream.next().await;
    tui.wait_for("#1 on screen", |s| list_row(s, 1).is_some())
        .await;
    tui.press("e");
    within(async {
        while !tools.path().join("started").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // SAFETY: kill(2) with our own child's pid and a signal number has no memory effects.
    let sent = unsafe { libc::kill(tui.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    assert_eq!(tui.wait_exit().await, 0);
    tui.assert_restored();
    upstream.assert_nothing(Duration::from_millis(300)).await;
    let reader = vobiz_tunnel::store::StoreReader::open(&tui.store_path()).unwrap();
    assert_eq!(reader.count().unwrap(), 1, "the edit was not sent");
}
