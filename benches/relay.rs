//! What the relay costs: callbacks per second and latency through Vobiz → relay → tunnel →
//! laptop → origin, against the same laptop called directly (Vobiz → laptop → origin), in
//! the same run, on loopback. Both paths do everything the laptop does (TLS, signature check,
//! SQLite recording, forwarding); the difference is the relay's TLS termination, routing, and
//! the HTTP/2 hop over the tunnel.
//!
//! Workloads (each run through the relay, then directly):
//! - a: keep-alive, 16 connections, signed ~700-byte Hangup POSTs: throughput;
//! - d: one request at a time on one keep-alive connection: the latency the relay adds.
//!
//! Run: `cargo bench --bench relay`. Environment: `RELAY_BENCH_SECS` (measured seconds per
//! run, default 5), `RELAY_BENCH_CONNS` (default 16), `RELAY_BENCH_WARMUP_SECS` (default 1).
//! Without `--bench` (e.g. `cargo test --benches`) it does a short smoke run. The load
//! generator, origin and percentiles are the `load` benchmark's (included with `#[path]`).

#[path = "common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "load/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "load/origin.rs"]
mod origin;
#[allow(dead_code)]
#[path = "load/report.rs"]
mod report;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use vobiz_tunnel::cli::{Cli, LogFormat};
use vobiz_tunnel::config::{CertSource, ListenConfig};
use vobiz_tunnel::relay::config::{RelayCerts, RelayClientConfig, RelayConfig, Route, RouteMatch};
use vobiz_tunnel::relay::{RelayLog, RelayServer};
use vobiz_tunnel::signature::AuthToken;
use vobiz_tunnel::tls;
use vobiz_tunnel::tunnel::Tunnel;

use client::{Mode, Plan, Target, REQUEST_TIMEOUT};
use report::Run;

/// Bound on start-up steps, the final flush and shutdown.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const RELAY_TOKEN: &str = "bench-relay-token-0123456789";

struct Settings {
    measure: Duration,
    warmup: Duration,
    conns: usize,
}

impl Settings {
    fn from_env(bench: bool) -> Settings {
        let number = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(default)
        };
        let secs = |name: &str, default: f64| {
            Duration::from_secs_f64(number(name, default).clamp(0.05, 3600.0))
        };
        // A smoke run (not under `cargo bench`) only proves that everything works.
        let (measure, warmup) = match bench {
            true => (
                secs("RELAY_BENCH_SECS", 5.0),
                secs("RELAY_BENCH_WARMUP_SECS", 1.0),
            ),
            false => (Duration::from_millis(300), Duration::from_millis(100)),
        };
        let conns = number("RELAY_BENCH_CONNS", 16.0).clamp(1.0, 1000.0) as usize;
        Settings {
            measure,
            warmup,
            conns,
        }
    }
}

/// Runs `conns` workers against `target`; every worker stops by itself, bounded here too.
async fn run(target: &Arc<Target>, conns: usize, settings: &Settings) -> Run {
    let warm_end = Instant::now() + settings.warmup;
    let plan = Plan {
        mode: Mode::KeepAlive,
        warm_end,
        end: warm_end + settings.measure,
        max_requests: 2_000_000u64.div_ceil(conns as u64),
    };
    let workers: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(target.clone().worker(plan)))
        .collect();
    let deadline = tokio::time::Instant::from_std(plan.end + REQUEST_TIMEOUT * 2);
    let mut tallies = Vec::with_capacity(conns);
    for mut worker in workers {
        match tokio::time::timeout_at(deadline, &mut worker).await {
            Ok(Ok(tally)) => tallies.push(tally),
            Ok(Err(e)) => panic!("a load worker failed: {e}"),
            Err(_) => {
                worker.abort();
                panic!("a load worker did not stop by its deadline");
            }
        }
    }
    Run::merge(tallies, warm_end)
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("a CA file") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    Arc::new(roots)
}

fn target(addr: SocketAddr, ca: &Path) -> Arc<Target> {
    Arc::new(Target {
        addr,
        roots: Some(roots(ca)),
        host: format!("localhost:{}", addr.port()),
        sign_url: common::url(addr.port()),
        token: AuthToken::new(common::TOKEN),
    })
}

/// The relay on 127.0.0.1:0 with the development certificate; its log lines are counted.
async fn start_relay(dir: &Path, lines: Arc<AtomicU64>) -> RelayServer {
    let certs = dir.join("relay-certs");
    let config = RelayConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        domains: Vec::new(),
        certs: RelayCerts::Dev { dir: certs.clone() },
        routes: vec![Route {
            matcher: RouteMatch::Any,
            token: AuthToken::new(RELAY_TOKEN),
        }],
        hold: Duration::ZERO,
        allow: None,
        auth_timeout: Duration::from_secs(5),
        forward_timeout: Duration::from_secs(10),
        max_body_bytes: 65536,
        max_connections: 1024,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(15),
        drain_timeout: Duration::from_secs(5),
        log_format: LogFormat::Json,
    };
    let identity = tls::ensure_dev_identity(&certs).expect("the relay's certificate");
    let tls = tls::server_config(identity).expect("TLS settings");
    let (log, mut receiver) = RelayLog::channel(LogFormat::Json);
    tokio::spawn(async move {
        while receiver.recv().await.is_some() {
            lines.fetch_add(1, Ordering::Relaxed);
        }
    });
    RelayServer::start(config, tls, log)
        .await
        .expect("the relay starts")
}

/// The laptop: `listen` settings as the command line builds them, plus `--relay`.
async fn start_laptop(dir: &Path, forward: &str, relay: &RelayServer) -> Tunnel {
    let certs = dir.join("certs");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let cli = Cli::parse_from([
        "vobiz-tunnel",
        "--listen=127.0.0.1:0",
        &format!("--forward={forward}"),
        &format!("--certs-dir={}", path(&certs)),
        &format!("--store={}", path(&dir.join("exchanges.db"))),
        "--no-tui",
        "--max-connections=1024",
        "--max-body=65536",
    ]);
    let mut config = ListenConfig::from_args(&cli.listen).expect("valid listen settings");
    // The environment must not change what is measured (tokens, public URL).
    config.keys = common::keys(&[common::TOKEN], &[]);
    config.public_url = None;
    config.certs = CertSource::Dev { dir: certs.clone() };
    config.upstream_roots = vec![certs.join("dev-ca.pem")];
    let address = format!("localhost:{}", relay.local_addr.port());
    let relay_ca = dir.join("relay-certs").join("dev-ca.pem");
    config.relay = Some(
        RelayClientConfig::parse(&address, Some(RELAY_TOKEN), Some(relay_ca))
            .expect("relay settings"),
    );
    Tunnel::start(&config).await.expect("the laptop starts")
}

fn print_table(rows: &[(String, Run, Run)]) {
    println!(
        "\n{:<30} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "workload",
        "relay r/s",
        "direct r/s",
        "ratio",
        "rly p50",
        "rly p99",
        "dir p50",
        "dir p99",
        "added p50"
    );
    println!("{}", "-".repeat(110));
    for (label, relay, direct) in rows {
        println!(
            "{label:<30} {:>10.0} {:>10.0} {:>6.2} {:>7.3}ms {:>7.3}ms {:>7.3}ms {:>7.3}ms {:>8.3}ms",
            relay.req_per_s,
            direct.req_per_s,
            relay.req_per_s / direct.req_per_s,
            relay.p50_ms,
            relay.p99_ms,
            direct.p50_ms,
            direct.p99_ms,
            relay.p50_ms - direct.p50_ms,
        );
    }
    for (label, relay, direct) in rows {
        for (side, run) in [("relay", relay), ("direct", direct)] {
            let error = run.first_error.as_deref().unwrap_or("none");
            println!(
                "  {label:<30} {side:<6} {} measured, max {:.3} ms, {} errors, {} non-200 \
                 (first error: {error})",
                run.measured, run.max_ms, run.errors, run.not_ok
            );
        }
    }
}

async fn bench(settings: Settings) {
    let load_before = report::load_average();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let origin = tokio::time::timeout(SETUP_TIMEOUT, origin::Origin::start())
        .await
        .expect("starting the origin in time")
        .expect("the origin starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    let lines = Arc::new(AtomicU64::new(0));
    let relay = tokio::time::timeout(SETUP_TIMEOUT, start_relay(dir.path(), lines.clone()))
        .await
        .expect("starting the relay in time");
    let forward = format!("http://{}", origin.addr);
    let laptop = tokio::time::timeout(SETUP_TIMEOUT, start_laptop(dir.path(), &forward, &relay))
        .await
        .expect("starting the laptop in time");
    assert!(
        relay.wait_for_tunnel("default", SETUP_TIMEOUT).await,
        "the laptop's tunnel connects"
    );
    let through_relay = target(relay.local_addr, &dir.path().join("relay-certs/dev-ca.pem"));
    let direct = target(laptop.local_addr, &dir.path().join("certs/dev-ca.pem"));
    println!(
        "relay bench: {:.1} s measured after {:.1} s warm-up per run; relay {} -> laptop {} -> \
         origin {}",
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        relay.local_addr,
        laptop.local_addr,
        origin.addr
    );
    let mut rows = Vec::new();
    let (mut answered, mut relay_answered) = (0, 0);
    let workloads = [
        (
            format!("a keep-alive, {} conns", settings.conns),
            settings.conns,
        ),
        ("d sequential, 1 keep-alive conn".to_string(), 1),
    ];
    for (label, conns) in workloads {
        let via_relay = run(&through_relay, conns, &settings).await;
        println!("  {label}: relay {:.0} req/s", via_relay.req_per_s);
        let to_laptop = run(&direct, conns, &settings).await;
        println!("  {label}: direct {:.0} req/s", to_laptop.req_per_s);
        answered += via_relay.answered + to_laptop.answered;
        relay_answered += via_relay.answered;
        rows.push((label, via_relay, to_laptop));
    }
    print_table(&rows);

    // Every answered callback, either way, is in the laptop's store; the relay logged each.
    tokio::time::timeout(SETUP_TIMEOUT, laptop.store.flush())
        .await
        .expect("flushing the store in time");
    let recorded = laptop
        .store
        .reader()
        .and_then(|r| r.count())
        .expect("count");
    let _ = tokio::time::timeout(SETUP_TIMEOUT, laptop.shutdown()).await;
    let _ = tokio::time::timeout(SETUP_TIMEOUT, relay.shutdown()).await;
    origin.stop();
    println!("\nstore: {recorded} rows for {answered} answered callbacks");
    println!(
        "relay log: {} lines for {relay_answered} callbacks through the relay",
        lines.load(Ordering::Relaxed)
    );
    println!("peak RSS (VmHWM): {}", report::peak_rss());
    println!(
        "load average at start: {load_before}; at end: {}",
        report::load_average()
    );
    assert!(recorded >= answered, "every answered callback is recorded");
    assert!(
        rows.iter().all(|(_, r, d)| r.errors == 0 && d.errors == 0),
        "no errors"
    );
}

fn main() {
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    if !bench_mode {
        println!("relay bench: smoke run (use `cargo bench --bench relay` for real figures)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(bench(Settings::from_env(bench_mode)));
    runtime.shutdown_timeout(Duration::from_secs(2));
}
