//! End-to-end load benchmark: a real listener (`Tunnel::start`: TLS, signature check, SQLite
//! recording, forwarding) in front of a fast loopback origin, driven by an in-repo load
//! generator sending signed ~700-byte Vobiz Hangup POSTs, each workload also run directly
//! against the origin so the table shows what the proxy costs.
//!
//! Workloads (proxy over TLS / direct over plain HTTP to the origin):
//! - a: keep-alive, 16 connections;   b: keep-alive, 64 connections;
//! - c: a new connection per request, 16 at a time (TLS session resumption on, as senders do);
//! - d: one request at a time on one keep-alive connection: the latency the proxy adds.
//!
//! Run: `cargo bench --bench load`. Environment: `LOAD_SECS` (measured seconds per run,
//! default 5), `LOAD_CONNS` (`16,64,16` for a,b,c, or one number for all three),
//! `LOAD_WARMUP_SECS` (default 1), `LOAD_ONLY` (e.g. `a,d`), `LOAD_MAX_REQUESTS` (per run,
//! default 2 000 000). Without `--bench` (e.g. `cargo test --benches`) it does a short smoke
//! run. Everything binds 127.0.0.1; every await is bounded; the store is checked at the end.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod origin;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use vobiz_tunnel::cli::{Cli, HostHeader};
use vobiz_tunnel::config::{CertSource, ListenConfig};
use vobiz_tunnel::signature::AuthToken;
use vobiz_tunnel::tunnel::Tunnel;

use client::{Mode, Plan, Target, REQUEST_TIMEOUT};
use report::{Row, Run};

/// Bound on start-up steps and on the final flush and shutdown.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

struct Settings {
    measure: Duration,
    warmup: Duration,
    conns: [usize; 3],
    only: Option<String>,
    max_requests: u64,
}

impl Settings {
    fn from_env(bench: bool) -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let secs = |name: &str, default: f64| {
            let value = var(name).and_then(|v| v.trim().parse::<f64>().ok());
            Duration::from_secs_f64(value.unwrap_or(default).clamp(0.05, 3600.0))
        };
        let conns: Vec<usize> = var("LOAD_CONNS")
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default();
        let conns = match conns[..] {
            [n] => [n; 3],
            [a, b, c] => [a, b, c],
            _ => [16, 64, 16],
        };
        // A smoke run (not under `cargo bench`) only proves that everything works.
        let (measure, warmup) = match bench {
            true => (secs("LOAD_SECS", 5.0), secs("LOAD_WARMUP_SECS", 1.0)),
            false => (Duration::from_millis(300), Duration::from_millis(100)),
        };
        Settings {
            measure,
            warmup,
            conns: conns.map(|n| n.clamp(1, 1000)),
            only: var("LOAD_ONLY").map(|v| v.to_ascii_lowercase()),
            max_requests: var("LOAD_MAX_REQUESTS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000_000),
        }
    }
}

/// Runs `conns` workers against `target` and merges what they saw.
async fn run(target: &Arc<Target>, conns: usize, mode: Mode, settings: &Settings) -> Run {
    let warm_end = Instant::now() + settings.warmup;
    let plan = Plan {
        mode,
        warm_end,
        end: warm_end + settings.measure,
        max_requests: settings.max_requests.div_ceil(conns as u64),
    };
    let workers: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(target.clone().worker(plan)))
        .collect();
    // Workers stop by themselves; this only catches a bug, and never waits forever.
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

/// Outcome, verdict, rows.
type Group = (String, String, i64);

/// Rows of the store grouped by outcome and verdict, and what a row weighs, read with SQL
/// (the schema is public): the size of a row is what the writer thread pays for.
fn store_breakdown(path: &std::path::Path) -> rusqlite::Result<(Vec<Group>, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = conn.prepare(
        "SELECT outcome, signature || CASE WHEN nonce_reused_of IS NULL THEN '' \
         ELSE ' (nonce reused)' END, count(*) FROM exchanges GROUP BY 1, 2 ORDER BY 3 DESC",
    )?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let groups = rows.collect::<rusqlite::Result<_>>()?;
    let sizes = conn.query_row(
        "SELECT avg(length(request_headers)), avg(length(request_body)), \
         avg(length(signature_detail)), avg(length(response_headers) + length(response_body)) \
         FROM exchanges",
        [],
        |r| {
            let avg = |i| r.get::<_, Option<f64>>(i).map(|v| v.unwrap_or(0.0));
            Ok(format!(
                "request headers {:.0} B, request body {:.0} B, verdict JSON {:.0} B, \
                 response {:.0} B",
                avg(0)?,
                avg(1)?,
                avg(2)?,
                avg(3)?
            ))
        },
    )?;
    Ok((groups, sizes))
}

async fn bench(settings: Settings) {
    let load_before = report::load_average();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let origin = tokio::time::timeout(SETUP_TIMEOUT, origin::Origin::start())
        .await
        .expect("the origin starts in time")
        .expect("the origin starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    let certs = dir.path().join("certs");
    let forward = format!("http://{}", origin.addr);
    let store = dir.path().join("exchanges.db");
    // Built the way `vobiz-tunnel listen` builds it, so new settings get their defaults.
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let cli = Cli::parse_from([
        "vobiz-tunnel",
        "--listen=127.0.0.1:0",
        &format!("--forward={forward}"),
        &format!("--certs-dir={}", path(&certs)),
        &format!("--store={}", path(&store)),
        "--no-tui",
        "--log-format=json",
        "--max-connections=1024",
        "--max-body=65536",
        "--handshake-timeout=5",
        "--header-timeout=5",
        "--body-timeout=5",
        "--forward-timeout=5",
    ]);
    let mut config = ListenConfig::from_args(&cli.listen).expect("valid listen settings");
    // The environment (VOBIZ_* variables) must not change what is measured: a public URL or
    // other tokens would change what is signed and verified.
    config.keys = common::keys(&[common::TOKEN], &[]);
    config.public_url = None;
    config.certs = CertSource::Dev { dir: certs.clone() };
    config.upstream_roots = vec![certs.join("dev-ca.pem")];
    config.reject_invalid = false;
    config.host_header = HostHeader::Keep;
    let tunnel = tokio::time::timeout(SETUP_TIMEOUT, Tunnel::start(&config))
        .await
        .expect("the listener starts in time")
        .expect("the listener starts");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.join("dev-ca.pem")).expect("the dev CA") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let port = tunnel.local_addr.port();
    let token = AuthToken::new(common::TOKEN);
    let proxy = Arc::new(Target {
        addr: tunnel.local_addr,
        roots: Some(Arc::new(roots)),
        host: format!("localhost:{port}"),
        sign_url: common::url(port),
        token: token.clone(),
    });
    let direct = Arc::new(Target {
        addr: origin.addr,
        roots: None,
        host: origin.addr.to_string(),
        sign_url: common::url(port),
        token,
    });

    let [a, b, c] = settings.conns;
    let workloads = [
        ('a', format!("a keep-alive, {a} conns"), a, Mode::KeepAlive),
        ('b', format!("b keep-alive, {b} conns"), b, Mode::KeepAlive),
        (
            'c',
            format!("c new conn/request, {c} conc."),
            c,
            Mode::NewConnection,
        ),
        (
            'd',
            "d sequential, 1 keep-alive conn".into(),
            1,
            Mode::KeepAlive,
        ),
    ];
    println!(
        "load: {:.1} s measured after {:.1} s warm-up per run; proxy {} -> origin {}",
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        tunnel.url(),
        origin.addr
    );
    let mut rows = Vec::new();
    let (mut sent, mut answered) = (0, 0);
    for (key, label, conns, mode) in workloads {
        if settings
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(key))
        {
            continue;
        }
        let through_proxy = run(&proxy, conns, mode, &settings).await;
        println!("  {label}: proxy {:.0} req/s", through_proxy.req_per_s);
        let to_origin = run(&direct, conns, mode, &settings).await;
        println!("  {label}: direct {:.0} req/s", to_origin.req_per_s);
        sent += through_proxy.sent;
        answered += through_proxy.answered;
        rows.push(Row {
            label,
            proxy: through_proxy,
            direct: to_origin,
        });
    }
    report::print_table(&rows);
    if let Some(d) = rows.iter().find(|r| r.label.starts_with('d')) {
        println!(
            "\nadded latency (d, p50 proxy - p50 direct): {:.3} ms",
            d.proxy.p50_ms - d.direct.p50_ms
        );
    }

    // Every forwarded exchange must be in the store once the queue is committed.
    tokio::time::timeout(SETUP_TIMEOUT, tunnel.store.flush())
        .await
        .expect("the store flushes in time");
    let recorded = tunnel
        .store
        .reader()
        .and_then(|r| r.count())
        .expect("count");
    let (breakdown, sizes) = store_breakdown(tunnel.store.path()).expect("store breakdown");
    let file_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut name = tunnel.store.path().as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).ok().map(|m| m.len())
        })
        .sum();
    let failed_writes = tunnel.store.health().failed_writes();
    let _ = tokio::time::timeout(SETUP_TIMEOUT, tunnel.shutdown()).await;
    origin.stop();
    println!("\nstore: {recorded} rows; proxy requests sent {sent}, answered {answered}");
    for (outcome, signature, n) in &breakdown {
        println!("  {n:>9}  {outcome} / {signature}");
    }
    println!(
        "  per row on average: {sizes}; file + WAL {:.0} B per row",
        file_bytes as f64 / recorded.max(1) as f64
    );
    println!("peak RSS (VmHWM): {}", report::peak_rss());
    // Everything shares the machine's cores: a busy machine explains a bad run.
    println!(
        "load average at start: {load_before}; at end: {}",
        report::load_average()
    );
    assert_eq!(failed_writes, 0, "the store reported failed writes");
    if sent == answered {
        assert_eq!(recorded, answered, "every answered exchange is recorded");
        println!("OK: all {answered} answered proxy exchanges are in the store");
    } else {
        // Unanswered requests may or may not have reached the store.
        assert!(
            (answered..=sent).contains(&recorded),
            "store rows out of range"
        );
        println!("OK (with client errors): {answered} <= {recorded} rows <= {sent}");
    }
}

fn main() {
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let settings = Settings::from_env(bench_mode);
    if !bench_mode {
        println!("load: smoke run (use `cargo bench --bench load` for real figures)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(bench(settings));
    // Idle keep-alive connections of the origin and the proxy's pool end here, not later.
    runtime.shutdown_timeout(Duration::from_secs(2));
}
