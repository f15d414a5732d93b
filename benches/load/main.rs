//! End-to-end load benchmark: the real `vobiz-tunnel listen` binary (TLS, signature check,
//! SQLite recording, forwarding, in its own process) in front of a fast loopback origin,
//! driven by an in-repo load generator sending signed ~700-byte Vobiz Hangup POSTs. Each
//! workload is also run through nginx as a TLS reverse proxy (when installed; see
//! `benches/compare-nginx.sh`) and directly against the origin, so the table shows the ratio
//! to nginx and what the proxy costs.
//!
//! Workloads (proxies over TLS / direct over plain HTTP to the origin):
//! - a: keep-alive, 16 connections;   b: keep-alive, 64 connections;
//! - c: a new connection per request, 16 at a time (TLS session resumption on, as senders do);
//! - d: one request at a time on one keep-alive connection: the latency the proxy adds.
//!
//! Run: `cargo bench --bench load`. Environment: `LOAD_SECS` (measured seconds per run,
//! default 5), `LOAD_CONNS` (`16,64,16` for a,b,c, or one number for all three),
//! `LOAD_WARMUP_SECS` (default 1), `LOAD_ONLY` (e.g. `a,d`), `LOAD_PROXY_BIN` (another build
//! of the binary to measure, see `benches/ab.sh`), `LOAD_MAX_REQUESTS` (per run,
//! default 2 000 000), `LOAD_NGINX` (see `nginx.rs`), `LOAD_SOAK=N` (afterwards, N more
//! requests on workload a while the proxy's memory is sampled; see `soak.rs`). Without
//! `--bench` (e.g. `cargo test --benches`) it does a short smoke run. Everything binds
//! 127.0.0.1; every await is bounded; the store's rows are counted at the end.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod cpu;
mod nginx;
mod origin;
mod proxy;
mod report;
mod soak;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use vobiz_tunnel::signature::AuthToken;

use client::{Mode, Plan, Target, REQUEST_TIMEOUT};
use nginx::Nginx;
use proxy::Proxy;
use report::{Row, Run};

/// Bound on start-up steps and on the final flush and shutdown.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

struct Settings {
    measure: Duration,
    warmup: Duration,
    conns: [usize; 3],
    only: Option<String>,
    max_requests: u64,
    soak: Option<u64>,
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
            soak: var("LOAD_SOAK").and_then(|v| v.replace('_', "").parse().ok()),
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

/// The targets of one run: the proxy under test, nginx (if present) and the origin itself.
struct Targets {
    proxy: Arc<Target>,
    nginx: Option<Arc<Target>>,
    direct: Arc<Target>,
}

async fn bench(settings: Settings) {
    let load_before = report::load_average();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let origin = tokio::time::timeout(SETUP_TIMEOUT, origin::Origin::start())
        .await
        .expect("the origin starts in time")
        .expect("the origin starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    let proxy_process = Proxy::start(dir.path(), origin.addr);
    let certs = proxy_process.certs.clone();
    let nginx_process = nginx::binary().and_then(|binary| {
        let started = Nginx::start(
            &binary,
            dir.path(),
            origin.addr,
            &certs.join("dev-cert.pem"),
            &certs.join("dev-key.pem"),
        );
        started
            .map_err(|e| println!("nginx: not compared ({e})"))
            .ok()
    });
    if nginx_process.is_none() && nginx::binary().is_none() {
        println!("nginx: not found or LOAD_NGINX=0 (benches/compare-nginx.sh installs it)");
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.join("dev-ca.pem")).expect("the dev CA") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let roots = Arc::new(roots);
    let port = proxy_process.addr.port();
    let token = AuthToken::new(common::TOKEN);
    // Every target receives the same bytes (signed for the proxy's URL) apart from `Host`.
    let target = |addr: std::net::SocketAddr, tls: bool| {
        Arc::new(Target {
            addr,
            roots: tls.then(|| roots.clone()),
            host: format!("localhost:{}", addr.port()),
            sign_url: common::url(port),
            token: token.clone(),
        })
    };
    let targets = Targets {
        proxy: target(proxy_process.addr, true),
        nginx: nginx_process.as_ref().map(|n| target(n.addr, true)),
        direct: target(origin.addr, false),
    };

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
        "load: {:.1} s measured after {:.1} s warm-up per run; vobiz-tunnel (pid {}) {} / \
         nginx {} -> origin {}",
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        proxy_process.pid(),
        proxy_process.addr,
        nginx_process.as_ref().map_or("-".to_string(), |n| format!(
            "{} ({})",
            n.addr,
            match nginx::upstream_mode() {
                nginx::UpstreamMode::KeepAlive => "keep-alive to the origin",
                nginx::UpstreamMode::Close => "a connection to the origin per request",
            }
        )),
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
        let cpu_before = cpu::seconds(proxy_process.pid());
        let mut through_proxy = run(&targets.proxy, conns, mode, &settings).await;
        through_proxy.set_cpu(cpu::seconds(proxy_process.pid()) - cpu_before);
        println!(
            "  {label}: vobiz-tunnel {:.0} req/s",
            through_proxy.req_per_s
        );
        let through_nginx = match (&targets.nginx, &nginx_process) {
            (Some(nginx), Some(process)) => {
                let cpu_before = cpu::seconds(process.pid());
                let mut nginx = run(nginx, conns, mode, &settings).await;
                nginx.set_cpu(cpu::seconds(process.pid()) - cpu_before);
                println!("  {label}: nginx {:.0} req/s", nginx.req_per_s);
                Some(nginx)
            }
            _ => None,
        };
        let to_origin = run(&targets.direct, conns, mode, &settings).await;
        println!("  {label}: direct {:.0} req/s", to_origin.req_per_s);
        sent += through_proxy.sent;
        answered += through_proxy.answered;
        rows.push(Row {
            label,
            proxy: through_proxy,
            nginx: through_nginx,
            direct: to_origin,
        });
    }
    report::print_table(&rows);
    if let Some(d) = rows.iter().find(|r| r.label.starts_with('d')) {
        println!(
            "\nadded latency (d, p50 vobiz-tunnel - p50 direct): {:.3} ms",
            d.proxy.p50_ms - d.direct.p50_ms
        );
    }
    if let Some(total) = settings.soak {
        let soak = soak::run(&targets.proxy, &proxy_process, total, settings.conns[0]).await;
        sent += soak.sent;
        answered += soak.answered;
    }
    let (rss, peak) = proxy_process.memory_kib();
    println!(
        "\nvobiz-tunnel memory: resident {:.1} MiB now, peak {:.1} MiB",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!("load generator + origin peak RSS: {}", report::peak_rss());

    // A graceful stop commits the store's queue; then every answered exchange must be there.
    let store = proxy_process.store.clone();
    proxy_process.stop();
    drop(nginx_process);
    origin.stop();
    let recorded = store_rows(&store).expect("counting the store's rows");
    let (breakdown, sizes) = store_breakdown(&store).expect("store breakdown");
    let file_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut name = store.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).ok().map(|m| m.len())
        })
        .sum();
    println!("\nstore: {recorded} rows; proxy requests sent {sent}, answered {answered}");
    for (outcome, signature, n) in &breakdown {
        println!("  {n:>9}  {outcome} / {signature}");
    }
    println!(
        "  per row on average: {sizes}; file + WAL {:.0} B per row",
        file_bytes as f64 / recorded.max(1) as f64
    );
    // Everything shares the machine's cores: a busy machine explains a bad run.
    println!(
        "load average at start: {load_before}; at end: {}",
        report::load_average()
    );
    if sent == answered {
        assert_eq!(
            recorded, answered as i64,
            "every answered exchange is recorded"
        );
        println!("OK: all {answered} answered proxy exchanges are in the store");
    } else {
        // Unanswered requests may or may not have reached the store.
        assert!(
            (answered as i64..=sent as i64).contains(&recorded),
            "store rows out of range"
        );
        println!("OK (with client errors): {answered} <= {recorded} rows <= {sent}");
    }
}

fn store_rows(path: &std::path::Path) -> rusqlite::Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))
}

fn main() {
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let settings = Settings::from_env(bench_mode);
    // Checked before any process starts: a bad value exits at once, leaving nothing behind.
    nginx::upstream_mode();
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
