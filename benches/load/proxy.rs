//! The proxy under test: the real `vobiz-tunnel listen` binary in its own process, started the
//! way a developer starts it headless (`--no-tui`, JSON log lines), so the figures are the
//! ones a user gets and the load generator does not share its runtime.
//!
//! Its log goes to a file (as `> log.json` would), read only for the `listening` line; its
//! resident memory is read from `/proc/<pid>/status` while it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");
/// Another build to measure instead of this one (what `benches/ab.sh` compares).
const BIN_OVERRIDE: &str = "LOAD_PROXY_BIN";
/// Bound on start-up (the first run generates the dev certificate) and on a graceful stop
/// (which commits what is still queued for the store).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Proxy {
    pub addr: SocketAddr,
    pub store: PathBuf,
    pub certs: PathBuf,
    child: Option<Child>,
}

impl Proxy {
    /// Starts `vobiz-tunnel listen` on 127.0.0.1:0 in `dir`, forwarding to `origin`, with the
    /// benches' token as its only key (no other `VOBIZ_*` setting of the caller leaks in).
    pub fn start(dir: &Path, origin: SocketAddr) -> Proxy {
        let store = dir.join("exchanges.db");
        let certs = dir.join("certs");
        let log = dir.join("proxy-log.json");
        let log_file = std::fs::File::create(&log).expect("a log file");
        let binary = match std::env::var_os(BIN_OVERRIDE) {
            Some(other) => {
                let other = PathBuf::from(other);
                println!("load: measuring {} ({BIN_OVERRIDE})", other.display());
                other
            }
            None => PathBuf::from(BIN),
        };
        let mut command = Command::new(&binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VOBIZ_") {
                command.env_remove(name);
            }
        }
        let child = command
            .env("VOBIZ_AUTH_TOKEN", common::TOKEN)
            .args([
                "listen",
                "--listen=127.0.0.1:0",
                "--no-tui",
                "--log-format=json",
            ])
            .arg(format!("--forward=http://{origin}"))
            .arg(format!("--store={}", store.display()))
            .arg(format!("--certs-dir={}", certs.display()))
            .args(["--max-connections=1024", "--max-body=65536"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut proxy = Proxy {
            addr: ([127, 0, 0, 1], 0).into(),
            store,
            certs,
            child: Some(child),
        };
        proxy.addr = proxy.wait_listening(&log);
        proxy
    }

    /// The address from the first log line, `{"type":"listening","url":"https://…"}`.
    fn wait_listening(&mut self, log: &Path) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("\"listening\"")) {
                let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let url = value["url"].as_str().expect("a url").to_string();
                let host = url.trim_start_matches("https://").trim_end_matches('/');
                return host.parse().expect("an address");
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("vobiz-tunnel exited before listening: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "vobiz-tunnel did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident set now and at its peak, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()));
        let field = |name: &str| {
            status.as_deref().ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        };
        (field("VmRSS:").unwrap_or(0), field("VmHWM:").unwrap_or(0))
    }

    /// SIGTERM (a graceful stop commits the store's queue), then waits; SIGKILL if it hangs.
    pub fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "vobiz-tunnel stopped with {status}");
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for vobiz-tunnel: {e}"),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("vobiz-tunnel did not stop within {STOP_TIMEOUT:?} of SIGTERM");
    }
}

impl Drop for Proxy {
    /// A panicking bench never leaves the proxy running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
