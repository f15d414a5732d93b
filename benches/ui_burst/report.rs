//! The report: every round as a line, the figures over all rounds (nearest-rank percentiles),
//! and whether the targets were met.

use std::time::Duration;

use crate::run::Outcome;
use crate::settings::Settings;
use crate::KEY_TIMEOUT;

fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

pub fn ms(d: Duration) -> String {
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
pub fn print_report(settings: &Settings, rounds: &[(Outcome, Outcome)]) -> bool {
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
