//! The memory soak: `N` more requests on the keep-alive workload while the proxy's resident
//! size is sampled every few seconds. Bodies belong in the store, not in RAM, so after the
//! caches have filled (the first tenth of the run) the resident size must stay flat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{self, Mode, Plan, Target};
use crate::proxy::Proxy;
use crate::report::Run;

/// How often the proxy's memory is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// A soak that cannot finish by then (fewer than ~300 req/s) is broken, not slow.
const MAX_SOAK: Duration = Duration::from_secs(3600);
/// The resident size the proxy must stay under at steady load, UI detached (issue target).
const BUDGET_MIB: f64 = 64.0;

pub async fn run(target: &Arc<Target>, proxy: &Proxy, total: u64, conns: usize) -> Run {
    println!("\nsoak: {total} requests on {conns} keep-alive connections");
    let start = Instant::now();
    let started_before = client::requests_started();
    let plan = Plan {
        mode: Mode::KeepAlive,
        warm_end: start,
        end: start + MAX_SOAK,
        max_requests: total.div_ceil(conns as u64),
    };
    let workers: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(target.clone().worker(plan)))
        .collect();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    println!(
        "  {:>8} {:>10} {:>10} {:>10}",
        "seconds", "requests", "RSS MiB", "peak MiB"
    );
    while !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let done = client::requests_started() - started_before;
        let (rss, peak) = proxy.memory_kib();
        samples.push((done, rss));
        println!(
            "  {:>8.0} {done:>10} {:>10.1} {:>10.1}",
            start.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        assert!(
            start.elapsed() < MAX_SOAK + SAMPLE_EVERY,
            "the soak overran"
        );
    }
    let mut tallies = Vec::new();
    for worker in workers {
        tallies.push(worker.await.expect("a soak worker"));
    }
    let run = Run::merge(tallies, start);
    // Flatness: the largest sample after the first tenth against the first sample after it.
    let settled: Vec<u64> = samples
        .iter()
        .filter(|(done, _)| *done >= total / 10)
        .map(|(_, rss)| *rss)
        .collect();
    if let (Some(first), Some(max)) = (settled.first(), settled.iter().max()) {
        println!(
            "soak: {} answered at {:.0} req/s (p99 {:.2} ms); RSS after the first tenth \
             {:.1} MiB, highest after {:.1} MiB (growth {:+.1} MiB)",
            run.answered,
            run.req_per_s,
            run.p99_ms,
            *first as f64 / 1024.0,
            *max as f64 / 1024.0,
            (*max as f64 - *first as f64) / 1024.0
        );
    }
    // The samples can miss a short spike; the kernel's high-water mark cannot.
    let peak_mib = proxy.memory_kib().1 as f64 / 1024.0;
    let verdict = match peak_mib < BUDGET_MIB {
        true => "under",
        false => "OVER",
    };
    println!("soak: peak resident {peak_mib:.1} MiB, {verdict} the {BUDGET_MIB:.0} MiB budget");
    run
}
