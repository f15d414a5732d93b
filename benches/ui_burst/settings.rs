//! What to run, from the environment (`UI_BURST_*`; see the top of `main.rs`).

use std::path::PathBuf;
use std::time::Duration;

pub struct Settings {
    pub bench: bool,
    pub callbacks: u64,
    pub conns: usize,
    pub key_every: Duration,
    pub cols: u16,
    pub rows: u16,
    pub rounds: u64,
    pub strict: bool,
    pub perf: Option<PathBuf>,
    pub perf_args: Vec<String>,
}

impl Settings {
    pub fn from_env(bench: bool) -> Settings {
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
