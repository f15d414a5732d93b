//! Store faults: a store that turns read-only, a full disk, a database locked by another
//! process, and a store path that cannot be created. In every case the proxy keeps
//! forwarding (callbacks are answered with the origin's response), the failure is reported
//! (the `store_error` event and JSON line, [`StoreHealth`] counters), nothing panics, and what
//! was received is recorded once the store accepts writes again.
//!
//! The faults are real, not simulated inside the crate: a full disk is a small tmpfs filled
//! with a ballast file (SQLite reports `SQLITE_FULL`), a read-only store is the immutable
//! attribute (`chattr +i`, which stops writes through already open files, even as root, where
//! `chmod` stops nothing), a lock is `BEGIN EXCLUSIVE` held by another connection. A test whose
//! mechanism this machine does not allow (mounting needs root, `chattr +i` needs
//! CAP_LINUX_IMMUTABLE and ext4/xfs/btrfs) prints `SKIPPED` with the reason and passes.
//!
//! [`StoreHealth`]: vobiz_tunnel::store::StoreHealth

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::sync::broadcast;
use vobiz_tunnel::exchange::{Exchange, Outcome};
use vobiz_tunnel::pipeline::ExchangeEvent;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");
/// What the origin answers; every callback, recorded or not, must get exactly this.
const ORIGIN_BODY: &str = "<Response><Speak>answered by the origin</Speak></Response>";

fn origin_reply() -> Reply {
    Reply {
        body: ORIGIN_BODY,
        ..Reply::default()
    }
}

/// A signed Hangup callback for `call` with a fresh nonce and `padding` extra bytes of body;
/// asserts that the origin's answer came back. Returns the body sent.
async fn callback(harness: &Harness, call: &str, seed: u64, padding: usize) -> String {
    let path = "/vobiz/hangup";
    let body = format!(
        "CallUUID={call}&Event=Hangup&HangupCause=NORMAL_CLEARING&Pad={}",
        "x".repeat(padding)
    );
    let headers = vobiz_headers_fresh(&harness.url(path), TOKEN, seed);
    let answer = harness
        .client()
        .send(form_post(harness, path, &body, &headers))
        .await;
    assert_eq!(answer.status, 200, "{call}: {}", answer.body);
    assert_eq!(answer.body, ORIGIN_BODY, "{call} got the origin's answer");
    body
}

/// The upstream saw `calls` (in any order), with the exact bodies.
async fn origin_saw(upstream: &mut Upstream, sent: &[(String, String)]) {
    let mut seen = Vec::new();
    for _ in sent {
        seen.push(String::from_utf8(upstream.next().await.body.to_vec()).unwrap());
    }
    for (call, body) in sent {
        assert!(seen.contains(body), "the origin never got {call}");
    }
}

/// The store errors published so far.
fn store_errors(events: &mut broadcast::Receiver<ExchangeEvent>) -> Vec<String> {
    let mut errors = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ExchangeEvent::StoreError(message) = event {
            errors.push(message);
        }
    }
    errors
}

/// Waits until every call in `calls` is recorded and finished; returns them by call.
async fn recorded_calls(harness: &Harness, calls: &[&str]) -> Vec<Exchange> {
    within(async {
        loop {
            harness.tunnel.store.flush().await;
            let reader = harness.reader();
            let found: Vec<Exchange> = reader
                .latest(10_000)
                .unwrap()
                .into_iter()
                .filter(|s| s.call_uuid.as_deref().is_some_and(|c| calls.contains(&c)))
                .filter_map(|s| reader.get(s.id?).unwrap())
                .filter(|e| e.outcome != Outcome::Pending)
                .collect();
            if found.len() >= calls.len() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
}

/// Asserts that each call was recorded exactly once, with the body sent and the origin's answer.
fn assert_recorded_exactly(recorded: &[Exchange], sent: &[(String, String)]) {
    for (call, body) in sent {
        let rows: Vec<_> = recorded
            .iter()
            .filter(|e| e.call_uuid.as_deref() == Some(call.as_str()))
            .collect();
        assert_eq!(rows.len(), 1, "{call} is recorded exactly once");
        let row = rows[0];
        assert_eq!(row.outcome, Outcome::Forwarded, "{call}");
        assert_eq!(
            &row.request.body[..],
            body.as_bytes(),
            "{call}: request body"
        );
        let response = row.response.as_ref().expect("the answer is recorded");
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], ORIGIN_BODY.as_bytes(), "{call}");
    }
}

/// Waits until the writer holds `count` deferred writes (the completions were queued).
async fn deferred_reaches(harness: &Harness, count: u64) {
    let health = harness.tunnel.store.health().clone();
    within(async {
        while health.deferred_writes() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A harness whose store is `store`, with bodies up to 1 MiB.
async fn harness_on(forward: &str, store: Option<PathBuf>) -> Harness {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, forward);
    if let Some(store) = store {
        config.store = store;
    }
    config.limits.max_body_bytes = 1024 * 1024;
    Harness::start(config, dir).await
}

// ---------------------------------------------------------------------------------------------
// The immutable attribute: a read-only store that even root cannot write.

/// Files made immutable, made mutable again when dropped (even when the test fails), so the
/// temporary folder can be removed.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: &[&Path]) -> Immutable {
        let guard = Immutable(paths.iter().map(|p| p.to_path_buf()).collect());
        for path in paths {
            let status = Command::new("chattr").arg("+i").arg(path).status().unwrap();
            assert!(status.success(), "chattr +i {}", path.display());
        }
        guard
    }

    fn clear(&mut self) {
        for path in self.0.drain(..) {
            let _ = Command::new("chattr").arg("-i").arg(&path).status();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether `chattr +i` in `dir` stops a write through a file opened before it: the reason
/// it does not, otherwise.
fn immutable_unsupported(dir: &Path) -> Option<String> {
    let probe = dir.join("immutable-probe");
    let mut file = std::fs::File::create(&probe).unwrap();
    let set = match Command::new("chattr").arg("+i").arg(&probe).output() {
        Err(e) => return Some(format!("no chattr ({e})")),
        Ok(out) if !out.status.success() => {
            return Some(format!(
                "chattr +i is refused here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Ok(_) => Immutable(vec![probe.clone()]),
    };
    let written = file.write_all(b"probe").and_then(|_| file.sync_all());
    drop(set);
    let _ = std::fs::remove_file(&probe);
    written
        .is_ok()
        .then(|| "this file system ignores the immutable attribute on open files".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_turns_read_only_keeps_forwarding_and_records_once_writable_again() {
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    if let Some(reason) = immutable_unsupported(harness.dir.path()) {
        eprintln!("SKIPPED read-only store: {reason}");
        return;
    }
    let mut events = harness.tunnel.events.subscribe();
    let health = harness.tunnel.store.health().clone();
    let before = callback(&harness, "ro-before", 1, 0).await;
    origin_saw(&mut upstream, &[("ro-before".into(), before)]).await;
    recorded_calls(&harness, &["ro-before"]).await;
    assert_eq!(health.failed_writes(), 0);

    // The store's files turn read-only under the running writer (the shared-memory index
    // stays writable: SQLite maps it, and a write through a mapping would be a SIGBUS).
    let store = harness.config.store.clone();
    let wal = PathBuf::from(format!("{}-wal", store.display()));
    let mut read_only = Immutable::set(&[&store, &wal]);
    let mut sent = Vec::new();
    for (i, call) in ["ro-1", "ro-2", "ro-3"].into_iter().enumerate() {
        let body = callback(&harness, call, 10 + i as u64, 0).await;
        sent.push((call.to_string(), body));
    }
    origin_saw(&mut upstream, &sent).await;
    deferred_reaches(&harness, 3).await;
    let errors = store_errors(&mut events);
    assert!(
        errors.len() >= 3 && errors.iter().all(|e| e.contains("could not record")),
        "each refused insert is reported: {errors:?}"
    );
    assert!(health.failed_writes() >= 1);
    let last = health.last_error().unwrap_or_default();
    assert!(last.contains("I/O") || last.contains("readonly"), "{last}");

    // Writable again: the three are recorded, once each, with the origin's answers.
    read_only.clear();
    let recorded = recorded_calls(&harness, &["ro-1", "ro-2", "ro-3"]).await;
    assert_recorded_exactly(&recorded, &sent);
    assert_eq!(health.lost_writes(), 0);
    within(async {
        while health.deferred_writes() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let after = callback(&harness, "ro-after", 20, 0).await;
    origin_saw(&mut upstream, &[("ro-after".into(), after)]).await;
    recorded_calls(&harness, &["ro-after"]).await;
}

/// `vobiz-tunnel <args> --store <store>`: exit code, stdout, stderr.
fn read_command(args: &[&str], store: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--store")
        .arg(store)
        .env_remove("VOBIZ_TUNNEL_STORE")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_copied_to_read_only_media_can_be_read() {
    // A store archived on read-only media (a read-only mount or volume): SQLite cannot create
    // the shared-memory file a WAL store needs beside it. The folder is made immutable here,
    // which stops creating files in it even as root.
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    if let Some(reason) = immutable_unsupported(harness.dir.path()) {
        eprintln!("SKIPPED read-only media: {reason}");
        return;
    }
    let mut sent = Vec::new();
    for (i, call) in ["archived-1", "archived-2"].into_iter().enumerate() {
        let body = callback(&harness, call, 40 + i as u64, 0).await;
        sent.push((call.to_string(), body));
    }
    origin_saw(&mut upstream, &sent).await;
    recorded_calls(&harness, &["archived-1", "archived-2"]).await;
    // What a stopped listener leaves: the log folded into the file, which alone is copied.
    harness.tunnel.store.flush_into_file().await;
    let store = harness.config.store.clone();
    // A name with characters that mean something in a SQLite URI.
    let archive = harness.dir.path().join("archive ?#%20");
    std::fs::create_dir(&archive).unwrap();
    let copy = archive.join("exchanges.db");
    std::fs::copy(&store, &copy).unwrap();
    let _read_only = Immutable::set(&[&archive]);

    let (code, listed, errors) = read_command(&["list", "--json"], &copy);
    assert_eq!(code, Some(0), "{errors}");
    let ids: Vec<i64> = listed
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    let (code, shown, errors) = read_command(&["show", &ids[1].to_string()], &copy);
    assert_eq!(code, Some(0), "{errors}");
    assert!(shown.contains("archived-2"), "{shown}");
    let exported = harness.dir.path().join("out.ndjson");
    let export = ["export", "--ndjson", exported.to_str().unwrap()];
    let (code, _, errors) = read_command(&export, &copy);
    assert_eq!(code, Some(0), "{errors}");
    let lines = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        std::fs::read_dir(&archive).unwrap().count() == 1,
        "nothing was created beside the copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_copy_with_an_unreadable_log_says_how_to_copy_it() {
    // Copied mid-run: the write-ahead log holds exchanges, and without its shared-memory file
    // SQLite cannot read them on read-only media. Reading the file alone would show an older
    // store as if it were all: refused, with what to copy instead.
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    if let Some(reason) = immutable_unsupported(harness.dir.path()) {
        eprintln!("SKIPPED read-only media: {reason}");
        return;
    }
    let body = callback(&harness, "in-the-log", 50, 0).await;
    origin_saw(&mut upstream, &[("in-the-log".into(), body)]).await;
    recorded_calls(&harness, &["in-the-log"]).await;
    let store = harness.config.store.clone();
    let wal = PathBuf::from(format!("{}-wal", store.display()));
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the log holds it"
    );
    let archive = harness.dir.path().join("mid-run");
    std::fs::create_dir(&archive).unwrap();
    let copy = archive.join("exchanges.db");
    std::fs::copy(&store, &copy).unwrap();
    std::fs::copy(&wal, archive.join("exchanges.db-wal")).unwrap();
    let _read_only = Immutable::set(&[&archive]);

    let (code, listed, errors) = read_command(&["list"], &copy);
    assert_ne!(code, Some(0), "{listed}");
    assert!(
        errors.contains(&copy.display().to_string())
            && errors.contains("-shm")
            && errors.contains("after the listener has stopped"),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------------------------
// A full disk: a small tmpfs, filled.

/// A tmpfs mounted on a folder, unmounted when dropped (lazily: open files do not stop it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: usize) -> Result<Tmpfs, std::io::Error> {
        use std::ffi::CString;
        std::fs::create_dir_all(at)?;
        let target = CString::new(at.as_os_str().as_encoded_bytes()).unwrap();
        let options = CString::new(format!("size={bytes},mode=0700")).unwrap();
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let result = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        match result {
            0 => Ok(Tmpfs(at.to_path_buf())),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Fills the file system of `dir` with a ballast file until it is full.
fn fill(dir: &Path) -> PathBuf {
    let ballast = dir.join("ballast");
    let mut file = std::fs::File::create(&ballast).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // The last partial blocks.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    ballast
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_forwarding_and_recording_resumes_when_space_returns() {
    let mut upstream = upstream(origin_reply()).await;
    let outer = tempfile::tempdir().unwrap();
    let disk = outer.path().join("disk");
    let tmpfs = match Tmpfs::mount(&disk, 16 * 1024 * 1024) {
        Ok(tmpfs) => tmpfs,
        Err(e) => {
            eprintln!("SKIPPED full disk: cannot mount a tmpfs here ({e}; needs root)");
            return;
        }
    };
    let harness = harness_on(&upstream.url(), Some(disk.join("exchanges.db"))).await;
    let mut events = harness.tunnel.events.subscribe();
    let health = harness.tunnel.store.health().clone();
    let before = callback(&harness, "full-before", 1, 0).await;
    origin_saw(&mut upstream, &[("full-before".into(), before)]).await;
    recorded_calls(&harness, &["full-before"]).await;

    // The disk fills up. Bodies of 256 KiB need pages the WAL does not have yet.
    let ballast = fill(&disk);
    let mut sent = Vec::new();
    for (i, call) in ["full-1", "full-2", "full-3"].into_iter().enumerate() {
        let body = callback(&harness, call, 10 + i as u64, 256 * 1024).await;
        sent.push((call.to_string(), body));
    }
    origin_saw(&mut upstream, &sent).await;
    deferred_reaches(&harness, 3).await;
    let errors = store_errors(&mut events);
    assert!(
        errors.len() >= 3 && errors.iter().all(|e| e.contains("full")),
        "each refused insert is reported: {errors:?}"
    );
    assert!(health.failed_writes() >= 1);
    let last = health.last_error().unwrap_or_default();
    assert!(last.contains("database or disk is full"), "{last}");

    // Space returns: the three are recorded, once each, bodies intact.
    std::fs::remove_file(&ballast).unwrap();
    let recorded = recorded_calls(&harness, &["full-1", "full-2", "full-3"]).await;
    assert_recorded_exactly(&recorded, &sent);
    assert_eq!(health.lost_writes(), 0);
    let after = callback(&harness, "full-after", 20, 0).await;
    origin_saw(&mut upstream, &[("full-after".into(), after)]).await;
    recorded_calls(&harness, &["full-after"]).await;
    within(harness.tunnel.shutdown()).await;
    drop(tmpfs);
}

// ---------------------------------------------------------------------------------------------
// A lock held by another process.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_keeps_forwarding_and_nothing_received_is_lost() {
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    let mut events = harness.tunnel.events.subscribe();
    let health = harness.tunnel.store.health().clone();
    let before = callback(&harness, "lock-before", 1, 0).await;
    origin_saw(&mut upstream, &[("lock-before".into(), before)]).await;
    recorded_calls(&harness, &["lock-before"]).await;

    // Another process (a `sqlite3` shell, say) takes the write lock and keeps it while the
    // callbacks arrive: each is answered while the lock is still held.
    let locker = rusqlite::Connection::open(&harness.config.store).unwrap();
    locker.busy_timeout(Duration::from_secs(5)).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let calls = ["lock-1", "lock-2", "lock-3", "lock-4"];
    let started = Instant::now();
    let (b1, b2, b3, b4) = within(async {
        tokio::join!(
            callback(&harness, calls[0], 10, 0),
            callback(&harness, calls[1], 11, 0),
            callback(&harness, calls[2], 12, 0),
            callback(&harness, calls[3], 13, 0),
        )
    })
    .await;
    let sent: Vec<(String, String)> = calls
        .iter()
        .map(|c| c.to_string())
        .zip([b1, b2, b3, b4])
        .collect();
    let elapsed = started.elapsed();
    // Each waited at most for the writer's busy timeout (0.5 s), twice when it queued behind
    // another attempt: well within the 3 s Vobiz allows a callback.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    origin_saw(&mut upstream, &sent).await;
    deferred_reaches(&harness, calls.len() as u64).await;
    let errors = store_errors(&mut events);
    assert!(
        errors.len() >= calls.len() && errors.iter().all(|e| e.contains("locked")),
        "each refused insert is reported: {errors:?}"
    );
    assert!(health.failed_writes() >= 1);
    assert!(health.last_error().unwrap_or_default().contains("locked"));
    assert_eq!(
        harness.reader().count().unwrap(),
        1,
        "nothing could be written under the lock"
    );

    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    let released = Instant::now();
    let recorded = recorded_calls(&harness, &calls).await;
    assert_recorded_exactly(&recorded, &sent);
    assert_eq!(health.lost_writes(), 0);
    eprintln!(
        "4 callbacks under the lock answered in {elapsed:?}; recorded {:?} after its release",
        released.elapsed()
    );
}

/// A lock held for less than the writer waits: the callback is recorded, and the time its
/// answer waited for the store is visible: reported when the final commit waited (which
/// `duration_ms` does not count), or in `duration_ms` when an early write of the pending
/// exchange did (a slow origin on a loaded machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_holds_an_answer_back_is_reported() {
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    let mut events = harness.tunnel.events.subscribe();
    let locker = rusqlite::Connection::open(&harness.config.store).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Released 250 ms after the origin has answered: the commit that follows waits that
    // long, well within the writer's 0.5 s.
    let release = async {
        let seen = upstream.next().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        locker.execute_batch("COMMIT").unwrap();
        seen
    };
    let (body, seen) =
        within(async { tokio::join!(callback(&harness, "held-back", 20, 0), release) }).await;
    assert_eq!(seen.body, body.as_bytes());
    let recorded = recorded_calls(&harness, &["held-back"]).await;
    assert_eq!(recorded.len(), 1);
    let errors = store_errors(&mut events);
    let reported = errors.iter().any(|e| {
        e.starts_with("recording POST /vobiz/hangup took ") && e.contains("the store was slow")
    });
    let in_duration = recorded[0].timings.duration_ms().unwrap_or_default() >= 200.0;
    assert!(
        reported || in_duration,
        "{errors:?} {:?}",
        recorded[0].timings
    );
}

// ---------------------------------------------------------------------------------------------
// The binary: the `store_error` line, and store paths that cannot be used at start.

/// `vobiz-tunnel listen` on `store`, headless with JSON lines.
fn spawn_listener(store: &Path, certs: &Path, forward: &str) -> std::process::Child {
    Command::new(BIN)
        .args(["listen", "--listen", "127.0.0.1:0", "--no-tui"])
        .args(["--log-format", "json", "--forward", forward])
        .args(["--store", store.to_str().unwrap()])
        .args(["--certs-dir", certs.to_str().unwrap()])
        .env("VOBIZ_AUTH_TOKEN", TOKEN)
        .env_remove("VOBIZ_TUNNEL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines of a child's stream, read on a thread, as a channel.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next JSON line of `type` within the deadline.
fn next_json(lines: &std::sync::mpsc::Receiver<String>, kind: &str) -> serde_json::Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind} line"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["type"] == kind {
            return value;
        }
    }
}

/// Kills the child when dropped (the test failed half-way).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_a_store_error_line_and_records_after_the_lock() {
    let mut upstream = upstream(origin_reply()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("exchanges.db");
    let certs = dir.path().join("certs");
    let mut child = Child(spawn_listener(&store, &certs, &upstream.url()));
    let stdout = lines_of(child.0.stdout.take().unwrap());
    let stderr = lines_of(child.0.stderr.take().unwrap());
    let listening = next_json(&stdout, "listening");
    let addr: std::net::SocketAddr = listening["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();

    let locker = rusqlite::Connection::open(&store).unwrap();
    locker.busy_timeout(Duration::from_secs(5)).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let client = TlsClient::new(addr, certs.join("dev-ca.pem"));
    let request = hyper::Request::post("/vobiz/hangup")
        .header("host", format!("localhost:{}", addr.port()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"CallUUID=bin-locked&Event=Hangup",
        )))
        .unwrap();
    let answer = client.send(request).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ORIGIN_BODY));
    upstream.next().await;
    let error = next_json(&stdout, "store_error");
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("database is locked"), "{message}");
    let exchange = next_json(&stdout, "exchange");
    assert_eq!(exchange["status"], 200);
    assert_eq!(exchange["call_uuid"], "bin-locked");

    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    let reader = vobiz_tunnel::store::StoreReader::open(&store).unwrap();
    let recorded = within(async {
        loop {
            let latest = reader.latest(10).unwrap();
            if let Some(id) = latest
                .iter()
                .find(|s| s.call_uuid.as_deref() == Some("bin-locked"))
                .and_then(|s| s.id)
            {
                return reader.get(id).unwrap().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert_eq!(recorded.outcome, Outcome::Forwarded);
    assert_eq!(
        recorded.response.map(|r| r.body),
        Some(bytes::Bytes::from_static(ORIGIN_BODY.as_bytes()))
    );

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let diagnostics: Vec<String> = stderr.try_iter().collect();
    let diagnostics = diagnostics.join("\n");
    assert!(!diagnostics.contains("panicked"), "{diagnostics}");
    assert!(!diagnostics.contains(TOKEN), "no token in the log");
}

/// Runs `listen` on `store` and expects it to stop at start: its exit status and stderr.
fn start_fails(store: &Path, certs: &Path) -> (std::process::ExitStatus, String) {
    let mut child = Child(spawn_listener(store, certs, "http://127.0.0.1:9"));
    let stdout = lines_of(child.0.stdout.take().unwrap());
    let stderr = lines_of(child.0.stderr.take().unwrap());
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if let Ok(line) = stdout.try_recv() {
            panic!("the listener started on an unusable store: {line}");
        }
        assert!(
            Instant::now() < until,
            "the listener neither started nor failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(5)) {
        text.push_str(&line);
        text.push('\n');
    }
    assert!(!text.contains("panicked"), "{text}");
    (status, text)
}

#[test]
fn a_missing_store_folder_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("not/yet/there/exchanges.db");
    let mut child = Child(spawn_listener(
        &store,
        &dir.path().join("certs"),
        "http://127.0.0.1:9",
    ));
    let stdout = lines_of(child.0.stdout.take().unwrap());
    let listening = next_json(&stdout, "listening");
    assert_eq!(listening["store"], store.to_str().unwrap());
    assert!(store.is_file(), "the store was created with its folders");
}

#[test]
fn a_store_folder_that_cannot_be_created_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let store = file.join("sub/exchanges.db");
    let (status, stderr) = start_fails(&store, &dir.path().join("certs"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the store's folder")
            && stderr.contains(&file.join("sub").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn a_store_read_only_from_the_start_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("store");
    std::fs::create_dir(&folder).unwrap();
    let store = folder.join("exchanges.db");
    {
        // An existing store, closed cleanly (its WAL folded back and removed).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let opened = vobiz_tunnel::store::Store::open(&store).unwrap();
            opened.flush().await;
        });
    }
    // Read-only: by permissions for a normal user; root ignores them, so by the immutable
    // attribute on the file and its folder (no -wal or -shm can be created either).
    let _guard;
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        if let Some(reason) = immutable_unsupported(dir.path()) {
            eprintln!("SKIPPED read-only store at start: {reason}");
            return;
        }
        for leftover in ["exchanges.db-wal", "exchanges.db-shm"] {
            let _ = std::fs::remove_file(folder.join(leftover));
        }
        _guard = Immutable::set(&[&store, &folder]);
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let (status, stderr) = start_fails(&store, &dir.path().join("certs"));
    if !root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&store.display().to_string()) && stderr.contains("read-only"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The store's file deleted while the listener runs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_deleted_while_recording_is_started_again_and_said_so() {
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    let mut events = harness.tunnel.events.subscribe();
    let before = callback(&harness, "del-before", 1, 0).await;
    origin_saw(&mut upstream, &[("del-before".into(), before)]).await;
    recorded_calls(&harness, &["del-before"]).await;

    // Someone cleans up (`rm store.db*`) while the listener runs.
    let store = harness.config.store.clone();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sent = Vec::new();
    for (n, call) in ["del-after-1", "del-after-2"].into_iter().enumerate() {
        let body = callback(&harness, call, 10 + n as u64, 0).await;
        sent.push((call.to_string(), body));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    origin_saw(&mut upstream, &sent).await;

    // The listener said what happened, and went on recording where readers look.
    let errors = store_errors(&mut events);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("was deleted or moved away")
                && e.contains(&store.display().to_string())),
        "{errors:?}"
    );
    assert!(
        store.exists(),
        "a new store was started at {}",
        store.display()
    );
    let recorded = recorded_calls(&harness, &["del-after-2"]).await;
    assert_recorded_exactly(&recorded, &sent[1..]);
}

/// Deleted while nothing arrives: the listener does not wait for the next callback to notice.
/// A new store is at the path at once (so `list` and the inspector read it), and the first
/// callback after is recorded there, not into the deleted file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_deleted_while_idle_is_started_again_before_the_next_callback() {
    let mut upstream = upstream(origin_reply()).await;
    let harness = harness_on(&upstream.url(), None).await;
    let before = callback(&harness, "idle-before", 1, 0).await;
    origin_saw(&mut upstream, &[("idle-before".into(), before)]).await;
    recorded_calls(&harness, &["idle-before"]).await;
    // A callback signed with V2 and V3, whose V2 pair comes again after the restart.
    let signed = vobiz_headers(&harness.url("/vobiz/again"), TOKEN, None);
    let harness = &harness;
    let again = |headers: Vec<(String, String)>| async move {
        let request = form_post(harness, "/vobiz/again", "CallUUID=again", &headers);
        assert_eq!(harness.client().send(request).await.status, 200);
    };
    again(signed.clone()).await;
    upstream.next().await;

    let store = harness.config.store.clone();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    within(async {
        let ready = |path: &Path| {
            vobiz_tunnel::store::StoreReader::open(path).is_ok_and(|r| r.count().is_ok())
        };
        while !ready(&store) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let body = callback(harness, "idle-after", 2, 0).await;
    let sent = [("idle-after".to_string(), body)];
    origin_saw(&mut upstream, &sent).await;
    let recorded = recorded_calls(harness, &["idle-after"]).await;
    assert_recorded_exactly(&recorded, &sent);
    assert!(
        !recorded
            .iter()
            .any(|e| e.call_uuid.as_deref() == Some("idle-before")),
        "the new store starts empty"
    );
    // What the listener remembers of the old store's nonces went with it: its ids name
    // nothing here.
    let v2_pair: Vec<(String, String)> = signed
        .into_iter()
        .filter(|(name, _)| name.starts_with("X-Vobiz-Signature-V2"))
        .collect();
    again(v2_pair).await;
    upstream.next().await;
    let again = harness.last_recorded().await;
    assert_eq!(again.call_uuid.as_deref(), Some("again"));
    assert_eq!(again.nonce_reused_of, None, "{:?}", again.flags);
}
