//! The SQLite store (`vobiz_tunnel::store`), in a temporary folder, with realistic exchanges:
//! a ~700-byte Hangup form body, 5 ordinary + 7 signature headers, the verdict `verify` gives.
//!
//! - `store/insert/awaited_one_at_a_time`: `Store::insert` awaited before the next, i.e. one
//!   commit per exchange (what a single sender sees).
//! - `store/insert/64_concurrent`: 64 inserts in flight per iteration, which the writer thread
//!   commits in as few transactions as it can (group commit); reported per exchange.
//! - `store/complete/{1,64}_then_flush`: `Store::complete` (response, outcome, timings) of
//!   pending rows queued and then `flush` awaited, so the measured time includes the writer's
//!   UPDATE and commit (the inserts before are not timed).
//! - `store/reader/latest_50_of_100000`: `StoreReader::latest(50)` on a store pre-filled with
//!   100 000 exchanges (override with `STORE_BENCH_ROWS`); the pre-fill rate is printed. A raw
//!   SQL query of the leading columns only is measured next to it as a reference point.
//!
//! Every insert carries a fresh nonce, as real callbacks do, so the nonce-reuse lookup runs on
//! a realistic index. Run: `cargo bench --bench store`
//! (quick: `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`).

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use vobiz_tunnel::exchange::{
    now_micros, Exchange, Headers, Outcome, RequestRecord, ResponseRecord, TlsInfo,
};
use vobiz_tunnel::signature::{verify, CallbackRequest, Form};
use vobiz_tunnel::store::Store;

const PORT: u16 = 8443;
const CONCURRENT: usize = 64;

/// Nonces never repeat across the whole bench process.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A received, verified Hangup callback as the pipeline would build it.
fn template() -> Exchange {
    let body = common::hangup_body(&common::call_uuid(1));
    let url = common::url(PORT);
    let mut pairs = common::plain_headers(&format!("localhost:{PORT}"), body.len());
    pairs.extend(common::all_signature_headers(&url, &body, Form::Docs, 1));
    let keys = common::keys(&[common::TOKEN], &[common::MAIN_TOKEN]);
    let request = CallbackRequest {
        method: "POST",
        url: &url,
        headers: &pairs,
        body: body.as_bytes(),
        extra_ports: &[PORT],
        other_urls: &[],
    };
    let verdict = verify(&request, &keys);
    let request = RequestRecord {
        method: "POST".into(),
        target: common::PATH.into(),
        http_version: "HTTP/1.1".into(),
        host: Some(format!("localhost:{PORT}")),
        public_url: url.clone(),
        headers: Headers(
            pairs
                .into_iter()
                .map(|(n, v)| (n, v.into_bytes()))
                .collect(),
        ),
        body: body.into_bytes().into(),
        body_truncated: false,
        client_addr: Some("127.0.0.1:54321".into()),
        tls: TlsInfo {
            version: Some("TLSv1.3".into()),
            alpn: Some("http/1.1".into()),
            sni: Some("localhost".into()),
        },
    };
    Exchange::received(request, verdict, now_micros())
}

/// A copy of `template` with a nonce no other exchange has (built outside the timed part).
fn fresh(template: &Exchange) -> Arc<Exchange> {
    let mut exchange = template.clone();
    exchange.verdict.nonce = Some(common::nonce(NEXT.fetch_add(1, Ordering::Relaxed)));
    exchange.timings.received_us = now_micros();
    Arc::new(exchange)
}

/// The exchange after the local server answered: what the pipeline hands to `complete`.
fn completed(template: &Exchange, id: i64) -> Arc<Exchange> {
    let mut exchange = template.clone();
    exchange.id = Some(id);
    exchange.outcome = Outcome::Forwarded;
    exchange.response = Some(ResponseRecord {
        status: 200,
        headers: Headers(vec![
            ("content-type".into(), b"application/xml".to_vec()),
            ("content-length".into(), b"41".to_vec()),
        ]),
        body: b"<Response><Speak>hello</Speak></Response>".to_vec().into(),
    });
    let t = &mut exchange.timings;
    t.forwarded_us = Some(t.received_us + 150);
    t.first_byte_us = Some(t.received_us + 900);
    t.done_us = Some(t.received_us + 950);
    Arc::new(exchange)
}

/// Inserts `exchanges` concurrently (one task each) and waits for every commit.
async fn insert_all(store: &Store, exchanges: Vec<Arc<Exchange>>) -> Vec<i64> {
    let mut tasks = JoinSet::new();
    for exchange in exchanges {
        let store = store.clone();
        tasks.spawn(async move { store.insert(exchange).await });
    }
    let mut ids = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        ids.push(joined.expect("insert task").expect("insert").id);
    }
    ids
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn bench_writes(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("exchanges.db")).expect("store");
    let template = template();

    let mut group = c.benchmark_group("store/insert");
    group.throughput(Throughput::Elements(1));
    group.bench_function("awaited_one_at_a_time", |b| {
        b.iter_batched(
            || fresh(&template),
            |exchange| rt.block_on(store.insert(exchange)).expect("insert"),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function("64_concurrent", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<_> = (0..CONCURRENT).map(|_| fresh(&template)).collect();
                let start = Instant::now();
                black_box(rt.block_on(insert_all(&store, batch)));
                timed += start.elapsed();
            }
            timed
        })
    });
    group.finish();

    // Every iteration completes rows that are still pending, as the pipeline does: repeating
    // an identical UPDATE on one row would let SQLite skip the unchanged pages and flatter it.
    let mut group = c.benchmark_group("store/complete");
    for n in [1, CONCURRENT] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_then_flush"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let pending = (0..n).map(|_| fresh(&template)).collect();
                    let ids = rt.block_on(insert_all(&store, pending));
                    let done: Vec<_> = ids.iter().map(|&id| completed(&template, id)).collect();
                    let start = Instant::now();
                    for exchange in done {
                        store.complete(exchange);
                    }
                    rt.block_on(store.flush());
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    group.finish();
    assert_eq!(
        store.health().failed_writes(),
        0,
        "{:?}",
        store.health().last_error()
    );
}

fn bench_reader(c: &mut Criterion) {
    // Without `--bench` (`cargo test --benches`) criterion only checks that each bench runs:
    // a small store does for that.
    let default_rows = match std::env::args().any(|arg| arg == "--bench") {
        true => 100_000,
        false => 1_000,
    };
    let rows: usize = std::env::var("STORE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_rows);
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("exchanges.db")).expect("store");
    let template = template();

    // Pre-fill through the real write path, 1024 in flight at a time (group commits).
    let start = Instant::now();
    let mut left = rows;
    while left > 0 {
        let n = left.min(1024);
        rt.block_on(insert_all(
            &store,
            (0..n).map(|_| fresh(&template)).collect(),
        ));
        left -= n;
    }
    rt.block_on(store.flush());
    let took = start.elapsed().as_secs_f64();
    let reader = store.reader().expect("reader");
    assert_eq!(reader.count().expect("count"), rows as u64);
    let size = std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "store pre-fill: {rows} rows in {took:.1} s ({:.0} inserts/s), file {:.0} MiB",
        rows as f64 / took,
        size as f64 / (1024.0 * 1024.0)
    );

    let mut group = c.benchmark_group("store/reader");
    group.bench_function(format!("latest_50_of_{rows}"), |b| {
        b.iter(|| {
            let latest = reader.latest(black_box(50)).expect("latest");
            assert_eq!(latest.len(), 50.min(rows));
            latest
        })
    });
    // Reference point, not an API: the same newest 50 rows, reading only the columns stored
    // before the first BLOB. The gap to `latest` is what walking each row's overflow pages (to
    // reach `outcome`, `flags`, ... stored after the bodies) costs.
    let raw = rusqlite::Connection::open_with_flags(
        store.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("a read-only connection");
    group.bench_function(format!("baseline_sql_leading_columns_50_of_{rows}"), |b| {
        b.iter(|| {
            let mut statement = raw
                .prepare_cached(
                    "SELECT id, received_at_us, method, path, target FROM exchanges \
                     ORDER BY id DESC LIMIT ?1",
                )
                .expect("prepare");
            let rows = statement
                .query_map([black_box(50)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .expect("query");
            rows.collect::<Result<Vec<_>, _>>().expect("rows")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_writes, bench_reader);
criterion_main!(benches);
