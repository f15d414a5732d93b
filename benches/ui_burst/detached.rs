//! The detached child: the binary with `--no-tui`, logging a JSON line per exchange on a pipe.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::process::{kill_and_reap, wait_exit};
use crate::{cleared_env, common, listen_args, BIN, SETTLE_TIMEOUT, START_TIMEOUT};

/// The binary with `--no-tui`, its stdout (one JSON line per exchange) drained by a thread.
pub struct Detached {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Detached {
    pub fn start(forward: &str) -> Detached {
        let dir = tempfile::tempdir().expect("a temp dir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("a log file");
        let mut command = Command::new(BIN);
        command
            .args(listen_args(dir.path(), forward))
            .arg("--no-tui");
        for name in cleared_env() {
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

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as an operator stops it; the exit is awaited a bounded time.
    pub fn stop(&mut self) -> bool {
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
