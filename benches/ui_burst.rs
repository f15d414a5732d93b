//! Does the live inspector slow the proxy down? The real binary is run twice on a fresh store
//! and certificate folder each time, in front of a fast loopback origin:
//!
//! 1. detached: `listen --no-tui --log-format json` (a JSON line per exchange on a pipe);
//! 2. attached: the same without `--no-tui`, in a pseudo-terminal, so the inspector runs.
//!
//! Each run takes a burst of signed Vobiz Hangup callbacks (V2 + V3, fresh nonces, for the URL
//! the proxy sees) over keep-alive TLS connections and measures the throughput. During the
//! attached burst `?` is pressed every ~200 ms (opening, then closing the key help) and the
//! time from the key to the screen showing the change is measured on a `vt100` model of the
//! terminal, fed by a thread that keeps reading the pty like a real terminal does. At the end
//! every answered callback must be in the store (`SELECT count(*) FROM exchanges`). A few
//! presses before the burst give the idle key latency as a baseline.
//!
//! Target (the issue): attached throughput >= 0.8x detached, keys answered within ~100 ms.
//!
//! Run: `cargo bench --bench ui_burst`. Without `--bench` (`cargo test --benches`) it is a
//! smoke run of 200 callbacks. Environment:
//! - `UI_BURST_N` callbacks per burst (default 10 000; smoke 200);
//! - `UI_BURST_CONNS` keep-alive TLS connections (default 16);
//! - `UI_BURST_KEY_MS` milliseconds between key presses (default 200);
//! - `UI_BURST_SIZE` the terminal, `COLSxROWS` (default 200x50);
//! - `UI_BURST_ROUNDS` detached + attached pairs, alternating which goes first (default 3;
//!   a 10 000 burst takes about a second here, so one pair is noisy);
//! - `UI_BURST_STRICT=1` fails the run when a target is missed (otherwise it is reported);
//! - `UI_BURST_PERF=DIR` records `perf record` of each child during its burst into
//!   `DIR/{detached,attached}.perf.data`, the last round's (`UI_BURST_PERF_ARGS`, default
//!   `-g -F 999`).
//!
//! Everything binds 127.0.0.1 on ports the system picks; every wait is bounded; the children
//! are killed on every way out (drop guards).

#[path = "common/mod.rs"]
mod common;
#[path = "load/origin.rs"]
mod origin;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use vobiz_tunnel::signature::AuthToken;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");
/// Bound on start-up: certificate generation, the listening line or the top bar.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one request (connect, handshake, send, read the answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole burst.
const BURST_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on the store catching up, and on a child's exit.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// A key not answered by then counts as missed.
const KEY_TIMEOUT: Duration = Duration::from_secs(5);
/// The title of the `?` overlay: on screen exactly while the help is open.
const HELP_TITLE: &str = "Keys (? or Esc closes)";
/// Settings from the environment that would change what is listened on, signed or verified.
const CLEARED_ENV: [&str; 12] = [
    "VOBIZ_MAIN_AUTH_TOKEN",
    "VOBIZ_TUNNEL_LISTEN",
    "VOBIZ_TUNNEL_FORWARD",
    "VOBIZ_TUNNEL_STORE",
    "VOBIZ_TUNNEL_CERTS_DIR",
    "VOBIZ_TUNNEL_CERT",
    "VOBIZ_TUNNEL_KEY",
    "VOBIZ_TUNNEL_PUBLIC_URL",
    "VOBIZ_TUNNEL_LOG_FORMAT",
    "VOBIZ_TUNNEL_LOG",
    "VISUAL",
    "EDITOR",
];

/// Nonces and CallUUIDs, unique across both runs.
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

struct Settings {
    bench: bool,
    callbacks: u64,
    conns: usize,
    key_every: Duration,
    cols: u16,
    rows: u16,
    rounds: u64,
    strict: bool,
    perf: Option<PathBuf>,
    perf_args: Vec<String>,
}

impl Settings {
    fn from_env(bench: bool) -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| {
            var(name)
                .and_then(|v| v.trim().replace('_', "").parse().ok())
                .unwrap_or(default)
        };
        let (cols, rows) = var("UI_BURST_SIZE")
            .and_then(|v| {
                let (c, r) = v.trim().split_once(['x', 'X'])?;
                Some((c.parse().ok()?, r.parse().ok()?))
            })
            .unwrap_or((200, 50));
        Settings {
            bench,
            callbacks: number("UI_BURST_N", if bench { 10_000 } else { 200 }).max(1),
            conns: number("UI_BURST_CONNS", 16).clamp(1, 1000) as usize,
            // A smoke burst is short: press often enough to time a key or two during it.
            key_every: Duration::from_millis(
                number("UI_BURST_KEY_MS", if bench { 200 } else { 25 }).clamp(10, 10_000),
            ),
            cols: u16::clamp(cols, 40, 1000),
            rows: u16::clamp(rows, 10, 500),
            rounds: number("UI_BURST_ROUNDS", if bench { 3 } else { 1 }).clamp(1, 100),
            strict: var("UI_BURST_STRICT").is_some_and(|v| v != "0"),
            perf: var("UI_BURST_PERF").map(PathBuf::from),
            perf_args: var("UI_BURST_PERF_ARGS")
                .unwrap_or_else(|| "-g -F 999".into())
                .split_whitespace()
                .map(String::from)
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The children, and what they cost.

/// SIGKILLs `pid` and reaps it through `try_wait`, waiting a bounded time.
fn kill_and_reap(pid: u32, mut try_wait: impl FnMut() -> bool) {
    if try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !try_wait() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `timeout` for `try_wait` to report an exit.
fn wait_exit(timeout: Duration, mut try_wait: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if try_wait() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CPU time (user + system) of a process, or of one of its threads, from `/proc`.
fn cpu_time(pid: u32, tid: Option<u32>) -> Duration {
    let path = match tid {
        Some(tid) => format!("/proc/{pid}/task/{tid}/stat"),
        None => format!("/proc/{pid}/stat"),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// Busy CPU time of the whole machine (every CPU), from `/proc/stat`.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    // cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// CPU used during a burst by the child, by its main thread (the inspector's, when attached),
/// by this process, and by everything else on the machine (other work skews the figures).
#[derive(Default, Clone, Copy)]
struct Cpu {
    child: Duration,
    main_thread: Duration,
    bench: Duration,
    others: Duration,
}

impl Cpu {
    fn now(pid: u32) -> Cpu {
        Cpu {
            child: cpu_time(pid, None),
            main_thread: cpu_time(pid, Some(pid)),
            bench: cpu_time(std::process::id(), None),
            others: machine_busy(),
        }
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            child: self.child.saturating_sub(start.child),
            main_thread: self.main_thread.saturating_sub(start.main_thread),
            bench: self.bench.saturating_sub(start.bench),
            others: (self.others.saturating_sub(start.others))
                .saturating_sub(self.child.saturating_sub(start.child))
                .saturating_sub(self.bench.saturating_sub(start.bench)),
        }
    }
}

/// `perf record` of one child while it takes its burst; stopped with SIGINT (so it writes its
/// data), killed if it does not stop.
struct Perf {
    child: std::process::Child,
    path: PathBuf,
}

impl Perf {
    fn start(settings: &Settings, pid: u32, name: &str) -> Option<Perf> {
        let dir = settings.perf.as_ref()?;
        std::fs::create_dir_all(dir).ok()?;
        let path = dir.join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .arg("record")
            .args(&settings.perf_args)
            .arg("-o")
            .arg(&path)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| println!("  perf did not start: {e}"))
            .ok()?;
        // perf needs a moment to attach before the burst starts.
        std::thread::sleep(Duration::from_millis(500));
        Some(Perf { child, path })
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        if wait_exit(SETTLE_TIMEOUT, || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            println!("  perf data: {}", self.path.display());
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let pid = self.child.id();
        kill_and_reap(pid, || !matches!(self.child.try_wait(), Ok(None)));
    }
}

/// The binary with `--no-tui`, its stdout (one JSON line per exchange) drained by a thread.
struct Detached {
    child: std::process::Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Detached {
    fn start(forward: &str) -> Detached {
        let dir = tempfile::tempdir().expect("a temp dir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("a log file");
        let mut command = Command::new(BIN);
        command
            .args(listen_args(dir.path(), forward))
            .arg("--no-tui");
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        // A session of its own, like the attached child (a pty's controlling process must
        // lead a session). With autogroup scheduling (Linux's default) every session is
        // a group that gets a fair share of CPUs: on a busy machine a child sharing this
        // process's group ran faster than one in a group of its own, which is not the UI.
        // SAFETY: setsid(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = command
            .env("VOBIZ_AUTH_TOKEN", common::TOKEN)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read every line, as a log collector would: the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut first = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(tx) = first.take() {
                    let _ = tx.send(line);
                }
            }
        });
        let mut detached = Detached {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "no listening line from the detached binary; stderr:\n{}",
                detached.stderr()
            )
        });
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(value["type"], "listening", "the first line: {line}");
        let url = value["url"].as_str().expect("a url");
        detached.addr = url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .expect("an address in the url");
        detached
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as an operator stops it; the exit is awaited a bounded time.
    fn stop(&mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let child = &mut self.child;
        wait_exit(SETTLE_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let pid = self.pid();
        let child = &mut self.child;
        kill_and_reap(pid, || !matches!(child.try_wait(), Ok(None)));
    }
}

/// A key press being timed: the screen must show (or stop showing) the help.
struct Probe {
    pressed: Instant,
    want_help: bool,
}

/// Everything the program wrote, as a screen, plus the timing of the key probe.
struct Term {
    parser: vt100::Parser,
    bytes: u64,
    closed: bool,
    probe: Option<Probe>,
    /// Latency of each answered probe.
    answered: Vec<Duration>,
}

impl Term {
    fn help_shown(&self) -> bool {
        self.parser.screen().contents().contains(HELP_TITLE)
    }
}

struct Screen {
    term: Mutex<Term>,
    changed: Condvar,
}

impl Screen {
    /// Waits up to `timeout` for `ready`; the screen text if it held.
    fn wait_for(&self, timeout: Duration, ready: impl Fn(&Term) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut term = self.term.lock().unwrap();
        loop {
            if ready(&term) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || term.closed {
                return Err(term.parser.screen().contents());
            }
            term = self.changed.wait_timeout(term, left).unwrap().0;
        }
    }
}

/// The binary in a pseudo-terminal with its inspector, the terminal read by a thread.
struct Attached {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Screen>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// Set once the child is known to have exited and been reaped (its pid may be reused).
    reaped: Arc<AtomicBool>,
}

impl Attached {
    fn start(forward: &str, settings: &Settings) -> Attached {
        let dir = tempfile::tempdir().expect("a temp dir");
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: settings.rows,
                cols: settings.cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(BIN);
        command.args(listen_args(dir.path(), forward));
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        command.env("VOBIZ_AUTH_TOKEN", common::TOKEN);
        command.env("TERM", "xterm-256color");
        command.cwd(dir.path());
        let child = pty.slave.spawn_command(command).expect("the binary starts");
        // Only the child holds the terminal side now, so its exit ends our reads.
        drop(pty.slave);
        let screen = Arc::new(Screen {
            term: Mutex::new(Term {
                parser: vt100::Parser::new(
                    std::num::NonZeroU16::new(settings.rows).unwrap(),
                    std::num::NonZeroU16::new(settings.cols).unwrap(),
                    0,
                ),
                bytes: 0,
                closed: false,
                probe: None,
                answered: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let mut reader = pty.master.try_clone_reader().expect("a pty reader");
        let sink = screen.clone();
        // The terminal: reads all the time, so the program never blocks on a full pty; a
        // probe is answered by the first read after which the screen shows the change.
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let now = Instant::now();
                let mut term = sink.term.lock().unwrap();
                term.parser.process(&buffer[..n]);
                term.bytes += n as u64;
                if let Some(probe) = &term.probe {
                    if term.help_shown() == probe.want_help {
                        let latency = now - probe.pressed;
                        term.answered.push(latency);
                        term.probe = None;
                    }
                }
                drop(term);
                sink.changed.notify_all();
            }
            sink.term.lock().unwrap().closed = true;
            sink.changed.notify_all();
        });
        let writer = pty.master.take_writer().expect("a pty writer");
        let mut attached = Attached {
            child,
            _master: pty.master,
            writer,
            screen,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reaped: Arc::new(AtomicBool::new(false)),
        };
        // The listener's address is in the top bar (`https://127.0.0.1:PORT → ...`).
        const PREFIX: &str = "https://127.0.0.1:";
        let ready = |t: &Term| {
            let text = t.parser.screen().contents();
            text.contains(PREFIX) && text.contains("No exchanges yet.")
        };
        if let Err(screen) = attached.screen.wait_for(START_TIMEOUT, ready) {
            panic!("the inspector did not start; the screen:\n{screen}");
        }
        let text = attached.contents();
        let start = text.find(PREFIX).unwrap() + "https://".len();
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        attached.addr = rest[..end].parse().expect("an address in the top bar");
        attached
    }

    fn contents(&self) -> String {
        self.screen.term.lock().unwrap().parser.screen().contents()
    }

    fn pid(&self) -> u32 {
        self.child.process_id().expect("a pid")
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("a key press");
        self.writer.flush().expect("a key press");
    }

    /// `?` pressed and timed: returns once the screen shows the change, or after
    /// [`KEY_TIMEOUT`] (a miss, `false`).
    fn probe(&mut self) -> bool {
        {
            let mut term = self.screen.term.lock().unwrap();
            let want_help = !term.help_shown();
            term.probe = Some(Probe {
                pressed: Instant::now(),
                want_help,
            });
        }
        self.press("?");
        let answered = self
            .screen
            .wait_for(KEY_TIMEOUT, |t| t.probe.is_none())
            .is_ok();
        self.screen.term.lock().unwrap().probe = None;
        answered
    }

    /// `q`, then the exit and the terminal closing, within a bounded time.
    fn quit(&mut self) -> bool {
        self.press("q");
        let child = &mut self.child;
        let exited = wait_exit(SETTLE_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
        self.reaped.store(exited, Ordering::SeqCst);
        exited && self.screen.wait_for(SETTLE_TIMEOUT, |t| t.closed).is_ok()
    }
}

/// While the key thread shares the [`Attached`], its drop guard might never run (a panic in
/// `main` ends the process without unwinding other threads): this one, owned by the
/// function, stops the key thread and kills the child unless it was reaped.
struct SharedGuard {
    pid: u32,
    reaped: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if !self.reaped.load(Ordering::SeqCst) {
            // SAFETY: kill(2) on our own child's pid (not reaped, so not reused).
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let pid = self.pid();
        let child = &mut self.child;
        kill_and_reap(pid, || !matches!(child.try_wait(), Ok(None)));
        self.reaped.store(true, Ordering::SeqCst);
    }
}

/// The same listener settings for both runs (the attached run only drops `--no-tui`).
fn listen_args(dir: &Path, forward: &str) -> Vec<String> {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    [
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--forward",
        forward,
        "--store",
        &path("exchanges.db"),
        "--certs-dir",
        &path("certs"),
    ]
    .map(String::from)
    .to_vec()
}

/// Rows in the store, read with SQL on a read-only connection (the schema is public).
fn count_rows(store: &Path) -> rusqlite::Result<u64> {
    let conn = rusqlite::Connection::open_with_flags(
        store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))
}

/// Polls the store until it holds `want` rows; the last count seen.
fn wait_for_rows(store: &Path, want: u64) -> u64 {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let rows = count_rows(store).unwrap_or(0);
        if rows >= want || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The sender.

/// What one burst did.
#[derive(Default)]
struct Burst {
    answered: u64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Per-request latency, microseconds.
    latencies_us: Vec<u32>,
}

impl Burst {
    fn req_per_s(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Client {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    host: String,
    sign_url: String,
    token: AuthToken,
}

impl Client {
    fn new(addr: SocketAddr, ca: &Path) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("the dev CA") {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let port = addr.port();
        Client {
            addr,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            // Vobiz calls `https://localhost:PORT/...`: the proxy rebuilds that URL from Host.
            host: format!("localhost:{port}"),
            sign_url: common::url(port),
            token: AuthToken::new(common::TOKEN),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let work = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from("localhost").expect("a valid name");
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(sender)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {REQUEST_TIMEOUT:?}")))
    }

    /// A signed Hangup callback, number `n`, with its own CallUUID and nonces.
    fn request(&self, n: u64) -> Request<Full<Bytes>> {
        let body = common::hangup_body(&common::call_uuid(n));
        let mut builder = Request::post(common::PATH)
            .header(HOST, &self.host)
            .header(USER_AGENT, "Vobiz")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "*/*");
        for (name, value) in common::v2_v3_headers(&self.token, &self.sign_url, n) {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .expect("a well-formed request")
    }

    /// Takes callbacks from `issued` until `total` are taken; reconnects once after a failure.
    async fn worker(
        self: Arc<Self>,
        mut sender: SendRequest<Full<Bytes>>,
        issued: Arc<AtomicU64>,
        total: u64,
    ) -> (Burst, Option<Instant>) {
        let mut tally = Burst::default();
        let mut last = None;
        while issued.fetch_add(1, Ordering::Relaxed) < total {
            let request = self.request(SEQUENCE.fetch_add(1, Ordering::Relaxed));
            let start = Instant::now();
            let exchange = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| format!("connection: {e}"))?;
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| format!("request: {e}"))?;
                let status = response.status().as_u16();
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("response body: {e}"))?;
                Ok::<_, String>(status)
            };
            let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
            let done = Instant::now();
            match result {
                Ok(status) => {
                    tally.answered += 1;
                    tally.ok += u64::from(status == 200);
                    let micros = (done - start).as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    last = Some(done);
                }
                Err(reason) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(reason);
                    match self.connect().await {
                        Ok(fresh) => sender = fresh,
                        Err(reason) => {
                            tally.first_error.get_or_insert(reason);
                            break;
                        }
                    }
                }
            }
        }
        (tally, last)
    }
}

/// Opens `conns` connections, then sends `total` callbacks over them as fast as they are
/// answered. The clock starts once every connection is open.
async fn burst(client: Arc<Client>, conns: usize, total: u64) -> Burst {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        senders.push(client.connect().await.expect("a connection to the proxy"));
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(client.clone().worker(sender, issued.clone(), total)))
        .collect();
    let deadline = tokio::time::Instant::now() + BURST_TIMEOUT;
    let mut merged = Burst::default();
    let mut end = start;
    for mut worker in workers {
        let (tally, last) = match tokio::time::timeout_at(deadline, &mut worker).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!("a sender failed: {e}"),
            Err(_) => {
                worker.abort();
                panic!("the burst did not finish within {BURST_TIMEOUT:?}");
            }
        };
        merged.answered += tally.answered;
        merged.ok += tally.ok;
        merged.errors += tally.errors;
        merged.first_error = merged.first_error.or(tally.first_error);
        merged.latencies_us.extend(tally.latencies_us);
        end = end.max(last.unwrap_or(start));
    }
    merged.elapsed = end - start;
    merged.latencies_us.sort_unstable();
    merged
}

// ---------------------------------------------------------------------------------------------
// The two runs.

/// What one run measured.
#[derive(Default)]
struct Outcome {
    burst: Burst,
    cpu: Cpu,
    rows: u64,
    /// Bytes the program wrote to the terminal during the burst (attached only).
    pty_bytes: u64,
    /// Key → screen latency of each press during the burst (attached only).
    keys: Vec<Duration>,
    /// The same with no load, before the burst: the baseline.
    idle_keys: Vec<Duration>,
    /// Presses not answered within [`KEY_TIMEOUT`].
    missed: u64,
}

fn detached(runtime: &tokio::runtime::Runtime, forward: &str, settings: &Settings) -> Outcome {
    let mut child = Detached::start(forward);
    let client = Arc::new(Client::new(
        child.addr,
        &child.dir.path().join("certs/dev-ca.pem"),
    ));
    let perf = Perf::start(settings, child.pid(), "detached");
    let cpu = Cpu::now(child.pid());
    let burst = runtime.block_on(burst(client, settings.conns, settings.callbacks));
    let cpu = Cpu::now(child.pid()).since(cpu);
    if let Some(perf) = perf {
        perf.stop();
    }
    let store = child.dir.path().join("exchanges.db");
    wait_for_rows(&store, burst.answered);
    assert!(
        child.stop(),
        "the detached binary did not stop on SIGTERM; stderr:\n{}",
        child.stderr()
    );
    let rows = count_rows(&store).expect("the store opens");
    Outcome {
        burst,
        cpu,
        rows,
        ..Outcome::default()
    }
}

/// Presses `?` every `every` while `running`, each press timed; returns the misses.
fn press_keys(tui: &Mutex<Attached>, every: Duration, running: &AtomicBool) -> u64 {
    let mut missed = 0;
    let mut next = Instant::now() + every;
    loop {
        while running.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(2).min(next - Instant::now()));
        }
        if !running.load(Ordering::Relaxed) {
            return missed;
        }
        if !tui.lock().unwrap().probe() {
            missed += 1;
        }
        // A slow answer delays the next press rather than queueing presses up.
        next = (next + every).max(Instant::now());
    }
}

/// Presses that do not reach the burst: the idle baseline before it.
const IDLE_PRESSES: usize = 4;

fn attached(runtime: &tokio::runtime::Runtime, forward: &str, settings: &Settings) -> Outcome {
    let mut tui = Attached::start(forward, settings);
    let (pid, addr) = (tui.pid(), tui.addr);
    let ca = tui.dir.path().join("certs/dev-ca.pem");
    let store = tui.dir.path().join("exchanges.db");
    let client = Arc::new(Client::new(addr, &ca));
    let mut missed = 0;
    for _ in 0..IDLE_PRESSES {
        missed += u64::from(!tui.probe());
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle_keys = std::mem::take(&mut tui.screen.term.lock().unwrap().answered);
    let perf = Perf::start(settings, pid, "attached");
    let running = Arc::new(AtomicBool::new(true));
    let _guard = SharedGuard {
        pid,
        reaped: tui.reaped.clone(),
        running: running.clone(),
    };
    let tui = Arc::new(Mutex::new(tui));
    let bytes_before = tui.lock().unwrap().screen.term.lock().unwrap().bytes;
    let cpu = Cpu::now(pid);
    let keys = {
        let (tui, running, every) = (tui.clone(), running.clone(), settings.key_every);
        std::thread::spawn(move || press_keys(&tui, every, &running))
    };
    let burst = runtime.block_on(burst(client, settings.conns, settings.callbacks));
    let cpu = Cpu::now(pid).since(cpu);
    running.store(false, Ordering::Relaxed);
    // The key thread ends after at most one probe (bounded by KEY_TIMEOUT).
    let deadline = Instant::now() + KEY_TIMEOUT + SETTLE_TIMEOUT;
    while !keys.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(keys.is_finished(), "the key thread did not stop");
    missed += keys.join().expect("the key thread");
    if let Some(perf) = perf {
        perf.stop();
    }
    let mut tui = match Arc::try_unwrap(tui) {
        Ok(tui) => tui.into_inner().unwrap(),
        Err(_) => panic!("the key thread still holds the terminal"),
    };
    let (pty_bytes, keys) = {
        let mut term = tui.screen.term.lock().unwrap();
        (
            term.bytes - bytes_before,
            std::mem::take(&mut term.answered),
        )
    };
    if tui.screen.term.lock().unwrap().help_shown() {
        tui.probe();
    }
    let shown = wait_for_rows(&store, burst.answered);
    // The inspector shows the last callback (the list follows new arrivals).
    let last = format!("#{shown} ");
    if let Err(screen) = tui.screen.wait_for(SETTLE_TIMEOUT, |t| {
        t.parser.screen().contents().contains(&last)
    }) {
        println!("  (the inspector does not show {last}after the burst:\n{screen})");
    }
    assert!(tui.quit(), "the inspector did not quit on q");
    let rows = count_rows(&store).expect("the store opens");
    Outcome {
        burst,
        cpu,
        rows,
        pty_bytes,
        keys,
        idle_keys,
        missed,
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// `p50 / p99 / max` in ms, or `-`.
fn key_summary(keys: &[Duration]) -> String {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    match (percentile(&sorted, 0.5), percentile(&sorted, 0.99)) {
        (Some(p50), Some(p99)) => format!(
            "{} / {} / {}",
            ms(p50),
            ms(p99),
            ms(*sorted.last().unwrap())
        ),
        _ => "-".into(),
    }
}

/// Every round as a line, then the figures over all rounds; whether the targets were met.
fn print_report(settings: &Settings, rounds: &[(Outcome, Outcome)]) -> bool {
    println!(
        "\nui_burst: {} signed Hangup callbacks per burst over {} keep-alive TLS connections; \
         pty {}x{}, `?` every {} ms; {} round(s); {} CPUs",
        settings.callbacks,
        settings.conns,
        settings.cols,
        settings.rows,
        settings.key_every.as_millis(),
        rounds.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<6} {:>13} {:>13} {:>6} {:>6} {:>24} {:>13} {:>14}",
        "round",
        "detached r/s",
        "attached r/s",
        "ratio",
        "keys",
        "key p50/p99/max ms",
        "rows d / a",
        "others' CPUs"
    );
    // CPUs kept busy by other processes during a burst (a busy machine explains a bad round).
    let others = |o: &Outcome| o.cpu.others.as_secs_f64() / o.burst.elapsed.as_secs_f64().max(1e-9);
    let mut ratios = Vec::new();
    for (i, (detached, attached)) in rounds.iter().enumerate() {
        let ratio = attached.burst.req_per_s() / detached.burst.req_per_s().max(1e-9);
        ratios.push(ratio);
        println!(
            "{:<6} {:>13.0} {:>13.0} {:>6.2} {:>6} {:>24} {:>13} {:>14}",
            i + 1,
            detached.burst.req_per_s(),
            attached.burst.req_per_s(),
            ratio,
            attached.keys.len(),
            key_summary(&attached.keys),
            format!("{} / {}", detached.rows, attached.rows),
            format!("{:.1} / {:.1}", others(detached), others(attached))
        );
    }

    // Over all rounds: callbacks over the summed burst times, CPU summed.
    let pooled = |pick: fn(&(Outcome, Outcome)) -> &Outcome| {
        let mut all = Outcome::default();
        for outcome in rounds.iter().map(pick) {
            all.burst.answered += outcome.burst.answered;
            all.burst.ok += outcome.burst.ok;
            all.burst.errors += outcome.burst.errors;
            all.burst.elapsed += outcome.burst.elapsed;
            all.burst
                .latencies_us
                .extend_from_slice(&outcome.burst.latencies_us);
            all.cpu.child += outcome.cpu.child;
            all.cpu.main_thread += outcome.cpu.main_thread;
            all.cpu.bench += outcome.cpu.bench;
            all.cpu.others += outcome.cpu.others;
            all.rows += outcome.rows;
            all.pty_bytes += outcome.pty_bytes;
            all.keys.extend_from_slice(&outcome.keys);
            all.idle_keys.extend_from_slice(&outcome.idle_keys);
            all.missed += outcome.missed;
        }
        all.burst.latencies_us.sort_unstable();
        all
    };
    let (detached, attached) = (pooled(|r| &r.0), pooled(|r| &r.1));
    type Line = (&'static str, fn(&Outcome) -> String);
    let lines: [Line; 10] = [
        ("throughput (req/s)", |o| {
            format!("{:.0}", o.burst.req_per_s())
        }),
        ("burst time, summed (s)", |o| {
            format!("{:.2}", o.burst.elapsed.as_secs_f64())
        }),
        ("answered (200) / errors", |o| {
            format!("{} ({}) / {}", o.burst.answered, o.burst.ok, o.burst.errors)
        }),
        ("request p50 / p99 (ms)", |o| {
            let at = |p| percentile(&o.burst.latencies_us, p).unwrap_or(0) as f64 / 1000.0;
            format!("{:.2} / {:.2}", at(0.5), at(0.99))
        }),
        ("child CPU (s)", |o| {
            format!("{:.2}", o.cpu.child.as_secs_f64())
        }),
        ("  its main thread (UI)", |o| {
            format!("{:.2}", o.cpu.main_thread.as_secs_f64())
        }),
        ("bench CPU (s)", |o| {
            format!("{:.2}", o.cpu.bench.as_secs_f64())
        }),
        ("other processes' CPU (s)", |o| {
            format!("{:.2}", o.cpu.others.as_secs_f64())
        }),
        ("pty output (MB)", |o| {
            format!("{:.2}", o.pty_bytes as f64 / 1e6)
        }),
        ("rows in the stores", |o| o.rows.to_string()),
    ];
    println!(
        "\nall rounds                 {:>22} {:>22}",
        "detached (--no-tui)", "attached (pty)"
    );
    for (label, value) in lines {
        println!(
            "{label:<26} {:>22} {:>22}",
            value(&detached),
            value(&attached)
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[(ratios.len() - 1) / 2];
    let overall = attached.burst.req_per_s() / detached.burst.req_per_s().max(1e-9);
    let ratio_ok = median >= 0.8;
    println!(
        "\nratio attached / detached: median of rounds {median:.2}, over all rounds {overall:.2} \
         (target >= 0.80: {})",
        if ratio_ok { "met" } else { "MISSED" }
    );
    println!(
        "key -> screen, idle before the bursts ({} presses): p50 / p99 / max {} ms",
        attached.idle_keys.len(),
        key_summary(&attached.idle_keys)
    );
    let slowest = attached.keys.iter().max().copied();
    let keys_ok =
        attached.missed == 0 && slowest.is_none_or(|max| max <= Duration::from_millis(100));
    println!(
        "key -> screen during the bursts ({} presses{}): p50 / p99 / max {} ms \
         (target ~100 ms: {})",
        attached.keys.len(),
        match attached.missed {
            0 => String::new(),
            n => format!(", {n} MISSED: no change within {KEY_TIMEOUT:?}"),
        },
        key_summary(&attached.keys),
        if keys_ok { "met" } else { "MISSED" }
    );
    ratio_ok && keys_ok
}

/// Every answered callback is in the store (requests that failed may or may not be).
fn check_store(name: &str, outcome: &Outcome) {
    let burst = &outcome.burst;
    if burst.errors == 0 {
        assert_eq!(
            outcome.rows, burst.answered,
            "{name}: every answered callback is in the store"
        );
    } else {
        assert!(
            outcome.rows >= burst.answered,
            "{name}: {} rows for {} answered callbacks",
            outcome.rows,
            burst.answered
        );
        println!(
            "{name}: {} requests failed (first: {})",
            burst.errors,
            burst.first_error.as_deref().unwrap_or("?")
        );
    }
    assert_eq!(burst.ok, burst.answered, "{name}: every answer is a 200");
}

fn main() {
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let settings = Settings::from_env(bench_mode);
    if !settings.bench {
        println!("ui_burst: smoke run (use `cargo bench --bench ui_burst` for real figures)");
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let origin = runtime
        .block_on(async { tokio::time::timeout(START_TIMEOUT, origin::Origin::start()).await })
        .expect("the origin starts in time")
        .expect("the origin starts");
    let forward = format!("http://{}", origin.addr);

    let mut rounds = Vec::new();
    for round in 1..=settings.rounds {
        // The order alternates, so that drift (a warming machine, a growing page cache)
        // does not always favour the same side.
        let (detached, attached) = if round % 2 == 1 {
            let detached = detached(&runtime, &forward, &settings);
            (detached, attached(&runtime, &forward, &settings))
        } else {
            let attached = attached(&runtime, &forward, &settings);
            (detached(&runtime, &forward, &settings), attached)
        };
        println!(
            "round {round}: detached {:.0} req/s, attached {:.0} req/s; {} key presses, \
             slowest {}",
            detached.burst.req_per_s(),
            attached.burst.req_per_s(),
            attached.keys.len(),
            attached
                .keys
                .iter()
                .max()
                .map_or("-".into(), |d| format!("{} ms", ms(*d)))
        );
        check_store("detached", &detached);
        check_store("attached", &attached);
        rounds.push((detached, attached));
    }
    origin.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));

    let met = print_report(&settings, &rounds);
    let rows: u64 = rounds.iter().map(|(d, a)| d.rows + a.rows).sum();
    println!("OK: every answered callback is in its store ({rows} rows in all)");
    if settings.strict {
        assert!(met, "a target was missed (UI_BURST_STRICT)");
    }
}
