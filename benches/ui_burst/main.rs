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

#[path = "../common/mod.rs"]
mod common;
#[path = "../load/origin.rs"]
mod origin;

mod attached;
mod client;
mod detached;
mod process;
mod report;
mod run;
mod settings;
mod store;

use std::path::Path;
use std::time::Duration;

use report::{ms, print_report};
use run::{attached, detached, Outcome};
use settings::Settings;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");
/// Bound on start-up: certificate generation, the listening line or the top bar.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the store catching up, and on a child's exit.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// A key not answered by then counts as missed.
const KEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Settings from the environment that would change what is listened on, signed, verified
/// or opened: every `VOBIZ_*` variable set here (new settings included), and the editor.
fn cleared_env() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_string_lossy().starts_with("VOBIZ_"))
        .chain(["VISUAL".into(), "EDITOR".into()])
        .collect()
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
