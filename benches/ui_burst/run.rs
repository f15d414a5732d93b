//! The two runs: detached and attached, each on a fresh child, store and certificate folder,
//! measuring one burst (and, attached, the key presses during it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::attached::{Attached, SharedGuard};
use crate::client::{burst, Burst, Client};
use crate::detached::Detached;
use crate::process::{Cpu, Perf};
use crate::settings::Settings;
use crate::store::{count_rows, wait_for_rows};
use crate::{KEY_TIMEOUT, SETTLE_TIMEOUT};

/// What one run measured.
#[derive(Default)]
pub struct Outcome {
    pub burst: Burst,
    pub cpu: Cpu,
    pub rows: u64,
    /// Bytes the program wrote to the terminal during the burst (attached only).
    pub pty_bytes: u64,
    /// Key → screen latency of each press during the burst (attached only).
    pub keys: Vec<Duration>,
    /// The same with no load, before the burst: the baseline.
    pub idle_keys: Vec<Duration>,
    /// Presses not answered within [`KEY_TIMEOUT`].
    pub missed: u64,
}

pub fn detached(runtime: &tokio::runtime::Runtime, forward: &str, settings: &Settings) -> Outcome {
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

pub fn attached(runtime: &tokio::runtime::Runtime, forward: &str, settings: &Settings) -> Outcome {
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
