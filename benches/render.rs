//! The inspector on a big store: how long until the first frame, how long each frame takes,
//! what paging back costs, and how much memory the UI holds, for 100 000 and 1 000 000
//! recorded exchanges. Rendering is on a 200x50 `TestBackend` (no terminal I/O), so the
//! numbers are the UI's own work plus the store reads the loop does.
//!
//! - *first frame*: open a `StoreReader`, `page(newest 500)`, `count()`, `AppState::load_page`,
//!   `get(selected)` for the detail pane, and one `Terminal::draw` — what start-up does.
//! - *frame*: median of 200 `Terminal::draw` calls of an unchanged state (list focused; the
//!   Request and Signature tabs focused), and of `j` as the loop answers it (move the
//!   selection, `get` the newly selected exchange, draw); a frame with a 10 MiB text body in
//!   the detail, at its top and at its end.
//! - *page older*: `k` on the top row of those loaded: `page(before, 500)` + `load_older` +
//!   draw, median over 60 successive pages (30 000 rows, past `MAX_ROWS`).
//! - *filtered reload*: as `/` does it (page + whole-store tally); a filter that matches
//!   nothing (`status:404`), so the store scans every row: the worst case of `/`.
//! - *VmRSS*: resident memory of a fresh process after its first frame.
//!
//! Stores are filled once through `Store::insert` (1024 in flight, so the writer commits in
//! batches) with ~700-byte Hangup bodies, V2+V3 signature headers and real verdicts, and kept
//! in `<target>/render-bench-cache/` for later runs. Each size is measured in a child process
//! of its own, so memory figures do not mix.
//!
//! Run: `cargo bench --bench render`. `RENDER_BENCH_1M=0` skips the 1 000 000 case (it is on
//! by default; building its store takes about 40 s the first time and ~3.9 GB of disk).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;
use time::UtcOffset;
use tokio::task::JoinSet;

use vobiz_tunnel::exchange::{
    Exchange, Flag, Headers, Outcome, RequestRecord, ResponseRecord, Timings, TlsInfo,
};
use vobiz_tunnel::filter::Filter;
use vobiz_tunnel::signature::{verify, AuthToken, CallbackRequest};
use vobiz_tunnel::store::{Store, StoreReader, SCHEMA_VERSION};
use vobiz_tunnel::tui::action::Action;
use vobiz_tunnel::tui::state::{AppState, Command as UiCommand, Focus, StatusInfo, MAX_ROWS, PAGE};
use vobiz_tunnel::tui::view;

const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;
const FRAMES: usize = 200;
const OLDER_PAGES: usize = 60;
const PORT: u16 = 8443;
/// 2026-06-08 11:41:20 UTC, the first exchange; one every 50 ms after it.
const T0: i64 = 1_780_918_880_000_000;

/// Set in the child process: `<store path>` to measure.
const CHILD_ENV: &str = "RENDER_BENCH_CHILD";

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        measure(Path::new(&path));
        return;
    }
    let mut sizes = vec![100_000usize];
    if std::env::var("RENDER_BENCH_1M").map_or(true, |v| v != "0") {
        sizes.push(1_000_000);
    }
    let mut columns = Vec::new();
    for &n in &sizes {
        let (path, built) = cached_store(n);
        let output = Command::new(std::env::current_exe().expect("own path"))
            .env(CHILD_ENV, &path)
            .output()
            .expect("the measuring child runs");
        assert!(
            output.status.success(),
            "the child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut column: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        column.insert(
            0,
            (
                "store file".into(),
                format!("{:.0} MiB", size as f64 / (1 << 20) as f64),
            ),
        );
        column.insert(
            0,
            (
                "store build".into(),
                built.map_or("cached".into(), |(t, rate)| {
                    format!("{:.1} s ({rate:.0}/s)", t.as_secs_f64())
                }),
            ),
        );
        columns.push((n, column));
    }
    print_table(&columns);
}

fn print_table(columns: &[(usize, Vec<(String, String)>)]) {
    println!();
    println!(
        "render benchmark: {WIDTH}x{HEIGHT} TestBackend, page {PAGE}, release build, warm OS cache"
    );
    let mut header = format!("{:<44}", "");
    for (n, _) in columns {
        header.push_str(&format!("{:>22}", group_digits(*n)));
    }
    println!("{header}");
    let Some((_, first)) = columns.first() else {
        return;
    };
    for (index, (key, _)) in first.iter().enumerate() {
        let mut line = format!("{key:<44}");
        for (_, column) in columns {
            let value = column.get(index).map_or("-", |(_, v)| v.as_str());
            line.push_str(&format!("{value:>22}"));
        }
        println!("{line}");
    }
    println!();
}

fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{out} exchanges")
}

// ---------------------------------------------------------------------------------------------
// The stores

/// `<target>/render-bench-cache`: the bench binary is `<target>/<profile>/deps/render-*`.
fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    target.join("render-bench-cache")
}

/// The store of `n` exchanges, built unless a complete one is cached; the build time and
/// insert rate when it was built now.
fn cached_store(n: usize) -> (PathBuf, Option<(Duration, f64)>) {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("cache dir");
    let path = dir.join(format!("exchanges-{n}-schema{SCHEMA_VERSION}.db"));
    let done = path.with_extension("db.complete");
    if done.exists() && path.exists() {
        return (path, None);
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let _ = std::fs::remove_file(&done);
    eprintln!("building {} ({n} exchanges)…", path.display());
    let start = Instant::now();
    fill(&path, n);
    let took = start.elapsed();
    let count = StoreReader::open(&path).unwrap().count().unwrap();
    assert_eq!(count, n as u64, "the store holds every exchange");
    std::fs::write(&done, format!("{n}\n")).expect("marker");
    eprintln!("built in {:.1} s", took.as_secs_f64());
    (path, Some((took, n as f64 / took.as_secs_f64())))
}

/// Received callbacks of three kinds (valid, signed for another URL, unsigned), verified
/// once; rows are copies with their own body, nonce and times.
struct Templates {
    valid: Exchange,
    invalid: Exchange,
    unsigned: Exchange,
}

fn received(signed_for: Option<&str>) -> Exchange {
    let url = common::url(PORT);
    let body = common::hangup_body(&common::call_uuid(1));
    let mut pairs = common::plain_headers(&format!("localhost:{PORT}"), body.len());
    if let Some(signed_url) = signed_for {
        let token = AuthToken::new(common::TOKEN);
        pairs.extend(
            common::v2_v3_headers(&token, signed_url, 1)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v)),
        );
    }
    let verdict = verify(
        &CallbackRequest {
            method: "POST",
            url: &url,
            headers: &pairs,
            body: body.as_bytes(),
            extra_ports: &[PORT],
            other_urls: &[],
        },
        &common::keys(&[common::TOKEN], &[]),
    );
    let request = RequestRecord {
        method: "POST".into(),
        target: common::PATH.into(),
        http_version: "HTTP/1.1".into(),
        host: Some(format!("localhost:{PORT}")),
        public_url: url,
        headers: Headers(
            pairs
                .into_iter()
                .map(|(n, v)| (n, v.into_bytes()))
                .collect(),
        ),
        body: body.into_bytes().into(),
        body_truncated: false,
        client_addr: Some("203.0.113.7:53422".into()),
        tls: TlsInfo {
            version: Some("TLSv1.3".into()),
            alpn: Some("http/1.1".into()),
            sni: Some("localhost".into()),
        },
    };
    Exchange::received(request, verdict, T0)
}

const EVENTS: [&str; 5] = ["StartApp", "Ring", "Speak", "Record", "Hangup"];

/// Row `i`: five exchanges per call (StartApp … Hangup), every 17th signed for another URL,
/// every 23rd unsigned, every 101st slow, every 97th answered 502 by the tool.
fn row(templates: &Templates, i: usize) -> Arc<Exchange> {
    let template = match i {
        i if i % 17 == 16 => &templates.invalid,
        i if i % 23 == 22 => &templates.unsigned,
        _ => &templates.valid,
    };
    let call = common::call_uuid((i / 5) as u64);
    let event = EVENTS[i % 5];
    let body = common::hangup_body(&call).replace("Event=Hangup", &format!("Event={event}"));
    let mut request = template.request.clone();
    request.body = body.into_bytes().into();
    let received = T0 + i as i64 * 50_000;
    let mut verdict = template.verdict.clone();
    if verdict.nonce.is_some() {
        verdict.nonce = Some(common::nonce(i as u64 + 1_000_000_000));
    }
    let mut exchange = Exchange::received(request, verdict, received);
    let slow = i % 101 == 100;
    let done = received
        + if slow {
            3_400_000
        } else {
            2_000 + (i as i64 % 7) * 900
        };
    if i % 97 == 96 {
        exchange.failed(
            Outcome::UpstreamError,
            502,
            "cannot reach the local server at http://localhost:3000: connection refused".into(),
        );
    } else {
        exchange.answered(
            ResponseRecord {
                status: 200,
                headers: Headers(vec![
                    ("content-type".into(), b"application/xml".to_vec()),
                    ("content-length".into(), b"80".to_vec()),
                ]),
                body: Bytes::from_static(
                    b"<Response><Speak voice=\"WOMAN\">Thanks for calling</Speak><Hangup/></Response>",
                ),
            },
            done - 300,
        );
    }
    exchange.timings = Timings {
        received_us: received,
        forwarded_us: Some(received + 150),
        first_byte_us: Some(done - 300),
        done_us: Some(done),
    };
    if slow {
        exchange.add_flag(Flag::Slow);
    }
    Arc::new(exchange)
}

fn fill(path: &Path, n: usize) {
    let templates = Templates {
        valid: received(Some(&common::url(PORT))),
        invalid: received(Some(&format!("https://localhost{}", common::PATH))),
        unsigned: received(None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::open(path).expect("store");
        let mut next = 0;
        while next < n {
            let end = (next + 1024).min(n);
            let mut tasks = JoinSet::new();
            for i in next..end {
                let store = store.clone();
                let exchange = row(&templates, i);
                tasks.spawn(async move { store.insert(exchange).await });
            }
            while let Some(joined) = tasks.join_next().await {
                joined.expect("task").expect("insert");
            }
            next = end;
            if next % 100_000 == 0 {
                eprintln!("  {next} / {n}");
            }
        }
        store.flush().await;
        assert_eq!(store.health().failed_writes(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// The measurements (in the child)

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(key: &str, value: String) {
    println!("{key}\t{value}");
}

fn draw(terminal: &mut Terminal<TestBackend>, state: &AppState) {
    terminal
        .draw(|frame| view::render(frame, state))
        .expect("draw");
}

/// Median time of `frames` draws of an unchanged state.
fn frame_median(terminal: &mut Terminal<TestBackend>, state: &AppState, frames: usize) -> Duration {
    median(
        (0..frames)
            .map(|_| {
                let start = Instant::now();
                draw(terminal, state);
                start.elapsed()
            })
            .collect(),
    )
}

/// Carries out the commands the state asks for, as the loop does (reads only).
fn execute(reader: &StoreReader, state: &mut AppState, commands: Vec<UiCommand>) {
    for command in commands {
        match command {
            UiCommand::LoadDetail(id) => {
                let exchange = reader.get(id).expect("get").expect("present");
                state.set_detail(Arc::new(exchange));
            }
            UiCommand::LoadOlder { before } => {
                let rows = reader
                    .page(&state.filter.clone(), Some(before), PAGE)
                    .expect("page");
                state.load_older(rows);
            }
            other => panic!("unexpected command {other:?}"),
        }
    }
}

fn measure(path: &Path) {
    let rss_before = vm_rss_kib();
    let status = StatusInfo {
        listen_url: "https://127.0.0.1:8443".into(),
        forward: "http://localhost:3000".into(),
        store_path: path.display().to_string(),
        auth_tokens: 1,
        main_auth_tokens: 0,
    };
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("terminal");
    let area = Rect::new(0, 0, WIDTH, HEIGHT);

    // Time to first frame.
    let start = Instant::now();
    let reader = StoreReader::open(path).expect("reader");
    let opened = start.elapsed();
    let t = Instant::now();
    let rows = reader.page(&Filter::default(), None, PAGE).expect("page");
    let paged = t.elapsed();
    let t = Instant::now();
    let total = reader.count().expect("count");
    let counted = t.elapsed();
    let t = Instant::now();
    let mut state = AppState::new(status, UtcOffset::UTC);
    state.list_height = view::list_height(area);
    let next = state.load_page(rows, total);
    let loaded = t.elapsed();
    let t = Instant::now();
    let Some(UiCommand::LoadDetail(id)) = next else {
        panic!("the newest row's detail is asked for: {next:?}");
    };
    let detail = reader.get(id).expect("get").expect("present");
    state.set_detail(Arc::new(detail));
    let got = t.elapsed();
    let t = Instant::now();
    draw(&mut terminal, &state);
    let rendered = t.elapsed();
    let first_frame = start.elapsed();
    let rss = vm_rss_kib();

    report("open StoreReader", ms(opened));
    report(&format!("page(newest {PAGE})"), ms(paged));
    report("count()", ms(counted));
    report("AppState::load_page", ms(loaded));
    report("get(selected) for the detail", ms(got));
    report("first draw", ms(rendered));
    report("= time to first frame", ms(first_frame));
    let v = state.health.by_verdict;
    report(
        "top bar: total / verdict counts",
        format!("{} / {}", state.total, v.iter().sum::<u64>()),
    );
    report(
        "VmRSS after the first frame",
        format!("{:.1} MiB", rss as f64 / 1024.0),
    );
    report(
        "  of which loading + drawing",
        format!("{:.1} MiB", rss.saturating_sub(rss_before) as f64 / 1024.0),
    );

    // Time per frame.
    report(
        &format!("frame, list focused (median of {FRAMES})"),
        ms(frame_median(&mut terminal, &state, FRAMES)),
    );
    state.focus = Focus::Detail;
    report(
        "frame, Request tab focused",
        ms(frame_median(&mut terminal, &state, FRAMES)),
    );
    state.tab = 2;
    report(
        "frame, Signature tab focused",
        ms(frame_median(&mut terminal, &state, FRAMES)),
    );
    state.tab = 0;
    // The largest body `--max-body` lets through (10 MiB), on the Request tab: what a frame
    // costs while such an exchange is selected, scrolled to its top and to its end.
    let shown = state.detail.clone().expect("a detail is shown");
    let mut big = (*shown).clone();
    let line = format!("{}\n", "x".repeat(99));
    big.request.body = Bytes::from(line.repeat(10 * 1024 * 1024 / line.len()));
    big.request
        .headers
        .0
        .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    big.request
        .headers
        .0
        .push(("content-type".into(), b"text/plain".to_vec()));
    state.set_detail(Arc::new(big));
    report(
        "frame, 10 MiB text body at its top",
        ms(frame_median(&mut terminal, &state, 10)),
    );
    state.detail_scroll = u16::MAX; // as `G` sets it: bounded by the end when drawn
    report(
        "frame, 10 MiB text body at its end",
        ms(frame_median(&mut terminal, &state, 10)),
    );
    state.set_detail(shown);
    state.detail_scroll = 0;
    state.focus = Focus::List;
    let mut keys = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let action = if i % 2 == 0 { Action::Up } else { Action::Down };
        let start = Instant::now();
        let commands = state.update(action);
        execute(&reader, &mut state, commands);
        draw(&mut terminal, &state);
        keys.push(start.elapsed());
    }
    report("key j/k: move + get + draw (median)", ms(median(keys)));

    // Paging back: `k` at the top of what is loaded, page after page (`g` goes straight to
    // the oldest exchange instead).
    let mut pages = Vec::with_capacity(OLDER_PAGES);
    for page in 0..OLDER_PAGES {
        state.selected = 1;
        let start = Instant::now();
        let commands = state.update(Action::Up);
        assert!(
            commands
                .iter()
                .any(|c| matches!(c, UiCommand::LoadOlder { .. })),
            "older rows are asked for (page {page}: {commands:?})"
        );
        execute(&reader, &mut state, commands);
        draw(&mut terminal, &state);
        pages.push(start.elapsed());
    }
    report(
        &format!("page older: k + page + draw (median of {OLDER_PAGES})"),
        ms(median(pages)),
    );
    report(
        &format!("rows held after paging (MAX_ROWS {MAX_ROWS})"),
        state.rows.len().to_string(),
    );
    report(
        "VmRSS after paging",
        format!("{:.1} MiB", vm_rss_kib() as f64 / 1024.0),
    );

    // The worst filter: nothing matches, every row is read.
    let filter = Filter::parse("status:404").expect("filter");
    let start = Instant::now();
    state.filter = filter;
    state.begin_reload();
    let rows = reader.page(&state.filter, None, PAGE).expect("page");
    let tally = reader.tally().expect("tally");
    let next = state.load_page(rows, tally.total);
    state.tallied(&tally);
    assert!(next.is_none() && state.rows.is_empty());
    draw(&mut terminal, &state);
    report(
        "reload, filter matching none (status:404)",
        ms(start.elapsed()),
    );
    let filter = Filter::parse("sig:invalid").expect("filter");
    let start = Instant::now();
    state.filter = filter;
    state.begin_reload();
    let rows = reader.page(&state.filter, None, PAGE).expect("page");
    let tally = reader.tally().expect("tally");
    let next = state.load_page(rows, tally.total);
    state.tallied(&tally);
    execute(&reader, &mut state, next.into_iter().collect());
    draw(&mut terminal, &state);
    report("reload, filter sig:invalid (1 in 17)", ms(start.elapsed()));
}
