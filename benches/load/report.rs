//! Turning the workers' tallies into figures: throughput over the measured window, latency
//! percentiles (nearest rank over every measured request), the table, and peak memory.

use std::time::Instant;

use crate::client::Tally;

/// One run of one workload against one target, all workers merged.
#[derive(Default)]
pub struct Run {
    /// Measured requests (after the warm-up).
    pub measured: usize,
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub sent: u64,
    pub answered: u64,
    pub not_ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub resumed: u64,
    pub full_handshakes: u64,
    /// CPU time the proxy spent per answered request (warm-up included), in microseconds.
    pub cpu_us_per_request: Option<f64>,
}

impl Run {
    /// Merges the workers of a run whose measured window opened at `warm_end`.
    pub fn merge(tallies: Vec<Tally>, warm_end: Instant) -> Run {
        let mut run = Run::default();
        let mut latencies: Vec<u32> = Vec::new();
        let mut finished = warm_end;
        for tally in tallies {
            latencies.extend_from_slice(&tally.latencies_us);
            run.sent += tally.sent;
            run.answered += tally.answered;
            run.not_ok += tally.not_ok;
            run.errors += tally.errors;
            run.resumed += tally.resumed;
            run.full_handshakes += tally.full_handshakes;
            if run.first_error.is_none() {
                run.first_error = tally.first_error;
            }
            finished = finished.max(tally.finished.unwrap_or(warm_end));
        }
        latencies.sort_unstable();
        run.measured = latencies.len();
        let window = (finished - warm_end).as_secs_f64();
        if window > 0.0 {
            run.req_per_s = run.measured as f64 / window;
        }
        run.p50_ms = percentile_ms(&latencies, 0.50);
        run.p99_ms = percentile_ms(&latencies, 0.99);
        run.max_ms = percentile_ms(&latencies, 1.0);
        run
    }
}

impl Run {
    /// Records the proxy's CPU seconds over the run (warm-up included, like `answered`).
    pub fn set_cpu(&mut self, seconds: f64) {
        self.cpu_us_per_request = Some(seconds * 1e6 / self.answered.max(1) as f64);
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds (NaN when empty).
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted_us.len() as f64).ceil() as usize;
    f64::from(sorted_us[rank.clamp(1, sorted_us.len()) - 1]) / 1000.0
}

/// A workload's runs: through vobiz-tunnel, through nginx (when compared) and direct.
pub struct Row {
    pub label: String,
    pub proxy: Run,
    pub nginx: Option<Run>,
    pub direct: Run,
}

pub fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "workload",
        "vt r/s",
        "nginx r/s",
        "direct",
        "vt/ngx",
        "vt p50",
        "vt p99",
        "ngx p50",
        "ngx p99",
        "dir p50"
    );
    println!("{}", "-".repeat(127));
    let ms = |v: f64| format!("{v:.3}ms");
    for row in rows {
        let nginx = row.nginx.as_ref();
        println!(
            "{:<32} {:>9.0} {:>9} {:>9.0} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            row.label,
            row.proxy.req_per_s,
            nginx.map_or("-".into(), |n| format!("{:.0}", n.req_per_s)),
            row.direct.req_per_s,
            nginx.map_or("-".into(), |n| format!(
                "{:.2}",
                row.proxy.req_per_s / n.req_per_s
            )),
            ms(row.proxy.p50_ms),
            ms(row.proxy.p99_ms),
            nginx.map_or("-".into(), |n| ms(n.p50_ms)),
            nginx.map_or("-".into(), |n| ms(n.p99_ms)),
            ms(row.direct.p50_ms),
        );
    }
    println!();
    for row in rows {
        let runs = [
            ("vt", Some(&row.proxy)),
            ("nginx", row.nginx.as_ref()),
            ("direct", Some(&row.direct)),
        ];
        for (side, run) in runs {
            let Some(run) = run else { continue };
            let mut line = format!(
                "  {:<32} {side:<6} {} measured, max {:.3} ms, {} errors, {} non-200",
                row.label, run.measured, run.max_ms, run.errors, run.not_ok
            );
            if run.resumed + run.full_handshakes > 0 {
                line.push_str(&format!(
                    ", TLS handshakes: {} resumed / {} full",
                    run.resumed, run.full_handshakes
                ));
            }
            if let Some(cpu) = run.cpu_us_per_request {
                line.push_str(&format!(", proxy CPU {cpu:.1} µs/request"));
            }
            if let Some(error) = &run.first_error {
                line.push_str(&format!(" (first error: {error})"));
            }
            println!("{line}");
        }
    }
}

/// The process's peak resident set (`VmHWM`), as `/proc/self/status` spells it.
pub fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown (no /proc/self/status)".into())
}

/// The machine's 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}
