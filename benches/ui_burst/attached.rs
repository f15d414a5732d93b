//! The attached child: the binary in a pseudo-terminal with its inspector. A thread reads the
//! terminal all the time into a `vt100` model of the screen, and times key probes (`?`
//! opening or closing the key help) against it.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};

use crate::process::{kill_and_reap, wait_exit};
use crate::settings::Settings;
use crate::{cleared_env, common, listen_args, BIN, KEY_TIMEOUT, SETTLE_TIMEOUT, START_TIMEOUT};

/// The title of the `?` overlay: on screen exactly while the help is open.
const HELP_TITLE: &str = "Keys (? or Esc closes)";

/// A key press being timed: the screen must show (or stop showing) the help.
struct Probe {
    pressed: Instant,
    want_help: bool,
}

/// Everything the program wrote, as a screen, plus the timing of the key probe.
pub struct Term {
    pub parser: vt100::Parser,
    pub bytes: u64,
    closed: bool,
    probe: Option<Probe>,
    /// Latency of each answered probe.
    pub answered: Vec<Duration>,
}

impl Term {
    pub fn help_shown(&self) -> bool {
        self.parser.screen().contents().contains(HELP_TITLE)
    }
}

pub struct Screen {
    pub term: Mutex<Term>,
    changed: Condvar,
}

impl Screen {
    /// Waits up to `timeout` for `ready`; the screen text if it held.
    pub fn wait_for(&self, timeout: Duration, ready: impl Fn(&Term) -> bool) -> Result<(), String> {
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
pub struct Attached {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    pub screen: Arc<Screen>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// Set once the child is known to have exited and been reaped (its pid may be reused).
    pub reaped: Arc<AtomicBool>,
}

impl Attached {
    pub fn start(forward: &str, settings: &Settings) -> Attached {
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
        for name in cleared_env() {
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

    pub fn pid(&self) -> u32 {
        self.child.process_id().expect("a pid")
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("a key press");
        self.writer.flush().expect("a key press");
    }

    /// `?` pressed and timed: returns once the screen shows the change, or after
    /// [`KEY_TIMEOUT`] (a miss, `false`).
    pub fn probe(&mut self) -> bool {
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
    pub fn quit(&mut self) -> bool {
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
pub struct SharedGuard {
    pub pid: u32,
    pub reaped: Arc<AtomicBool>,
    pub running: Arc<AtomicBool>,
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
