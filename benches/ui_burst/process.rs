//! The children, and what they cost: killing and reaping them, waiting for an exit, CPU time
//! from `/proc`, and `perf record` of a child during its burst.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::settings::Settings;
use crate::SETTLE_TIMEOUT;

/// SIGKILLs `pid` and reaps it through `try_wait`, waiting a bounded time.
pub fn kill_and_reap(pid: u32, mut try_wait: impl FnMut() -> bool) {
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
pub fn wait_exit(timeout: Duration, mut try_wait: impl FnMut() -> bool) -> bool {
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
pub struct Cpu {
    pub child: Duration,
    pub main_thread: Duration,
    pub bench: Duration,
    pub others: Duration,
}

impl Cpu {
    pub fn now(pid: u32) -> Cpu {
        Cpu {
            child: cpu_time(pid, None),
            main_thread: cpu_time(pid, Some(pid)),
            bench: cpu_time(std::process::id(), None),
            others: machine_busy(),
        }
    }

    pub fn since(self, start: Cpu) -> Cpu {
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
pub struct Perf {
    child: std::process::Child,
    path: PathBuf,
}

impl Perf {
    pub fn start(settings: &Settings, pid: u32, name: &str) -> Option<Perf> {
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

    pub fn stop(mut self) {
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
