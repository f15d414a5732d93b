//! Durable SQLite persistence of exchanges.
//!
//! One writer thread owns the write connection and commits whatever is queued in one
//! transaction (group commit), so recording keeps up with the proxy however many connections
//! are open. The pipeline writes each exchange once, whole, when it ends, and answers the
//! sender only after that commit: whatever got an answer is in the store. An exchange still
//! in flight after a few milliseconds (a slow local server) is written at once as pending and
//! updated at its end, so a crash mid-forward loses nothing that was received (the next
//! run flags such a row `interrupted`: see [`orphans`]).
//! Readers ([`StoreReader`]) open their own connections; WAL mode lets them read while a
//! listener writes.

mod calls;
mod checkpoint;
mod deferred;
mod filtered;
mod identity;
mod latest_nonces;
mod nonce_summary;
mod orphans;
mod reader;
mod recent_nonces;
mod row;
mod same;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use row::Row;

use crate::exchange::{Exchange, ExchangeId};

pub use calls::CallSummary;
pub use latest_nonces::AT_START as LATEST_NONCES_AT_START;
pub use nonce_summary::NonceSummary;
pub use reader::{ExchangeSummary, StoreReader, Tally};
pub use row::{nonce_keys, nonce_text, nonce_text_key};
pub use schema::SCHEMA_VERSION;

/// Why the store failed. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store's folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the store {0} is read-only: every callback is recorded before it is answered, so \
         the file and its folder must be writable (check their permissions and attributes, \
         or pass another --store)"
    )]
    ReadOnly(PathBuf),
    #[error(
        "cannot read the store {0}: its folder is read-only, and its write-ahead log \
         ({0}-wal) holds exchanges that SQLite reads only through the shared-memory file \
         ({0}-shm), which is missing and cannot be created there: copy the store with its \
         -wal and -shm files, or copy the .db file alone after the listener has stopped \
         (stopping folds the log into it)"
    )]
    ReadOnlyLog(PathBuf),
    #[error("{0} is a folder, not a store: pass the store's file (such as {0}/exchanges.db)")]
    Folder(PathBuf),
    #[error("no store at {0} (start `vobiz-tunnel listen` once, or pass --store)")]
    Missing(PathBuf),
    #[error("the store was written by a newer vobiz-tunnel (schema {found}; this build knows up to {supported})")]
    TooNew { found: i64, supported: i64 },
    #[error(
        "{path} is another application's SQLite database (tables: {tables}), not a \
         vobiz-tunnel store; it was left untouched: pass a new file to --store"
    )]
    NotOurs { path: PathBuf, tables: String },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store write failed: {0}")]
    Write(String),
    #[error("cannot start the store's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the store's writer has stopped")]
    WriterGone,
}

/// What the writer answers when a new exchange is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    pub id: ExchangeId,
    /// An earlier exchange that carried the same nonce and signature.
    pub nonce_reused_of: Option<ExchangeId>,
}

type Ack = oneshot::Sender<Result<Inserted, String>>;

enum Op {
    /// A new row (the request side of an exchange still in flight, or a whole exchange),
    /// answered with its id once committed.
    Insert {
        exchange: Arc<Exchange>,
        row: Row,
        ack: Ack,
    },
    /// The end of an exchange: written into its row, or as a whole new row when it has none
    /// (it was never written at receipt, or the store refused that write). Answered once
    /// committed when someone waits for it.
    End {
        exchange: Arc<Exchange>,
        row: Row,
        ack: Option<Ack>,
    },
    Flush(oneshot::Sender<()>),
}

/// Write failures seen at run time, for the log and the UI's status bar.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failed_writes: AtomicU64,
    deferred_writes: AtomicU64,
    lost_writes: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Something the listener's subscribers must hear although no write failed (the store's
    /// file was deleted and started again); see [`StoreHealth::take_notice`].
    notice: Mutex<Option<String>>,
    has_notice: AtomicBool,
}

impl StoreHealth {
    /// Counts a failure and reports it loudly in the log.
    pub fn note(&self, error: &str) {
        self.failed_writes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
        tracing::error!("store write failed (the proxy keeps forwarding): {error}");
    }

    pub fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Writes the store refused for now, waiting in memory to be retried.
    pub fn deferred_writes(&self) -> u64 {
        self.deferred_writes.load(Ordering::Relaxed)
    }

    /// Writes given up on (the memory cap for deferred writes, or a row SQLite refuses).
    pub fn lost_writes(&self) -> u64 {
        self.lost_writes.load(Ordering::Relaxed)
    }

    fn set_deferred(&self, count: usize) {
        self.deferred_writes.store(count as u64, Ordering::Relaxed);
    }

    /// Reports something that went wrong without a write failing, for the log now and for
    /// the listener's subscribers with the next recorded exchange.
    fn announce(&self, message: String) {
        tracing::error!("{message}");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.clone());
        }
        if let Ok(mut notice) = self.notice.lock() {
            *notice = Some(message);
            self.has_notice.store(true, Ordering::Release);
        }
    }

    /// The message of [`StoreHealth::announce`], once. Cheap when there is none (a flag).
    pub fn take_notice(&self) -> Option<String> {
        // A plain load first: this runs for every recorded exchange.
        if !self.has_notice.load(Ordering::Relaxed)
            || !self.has_notice.swap(false, Ordering::Acquire)
        {
            return None;
        }
        self.notice.lock().ok().and_then(|mut n| n.take())
    }

    /// Counts and reports writes that will never be recorded.
    fn lose(&self, count: usize, why: &str) {
        self.lost_writes.fetch_add(count as u64, Ordering::Relaxed);
        self.note(&format!("{count} writes lost, not recorded: {why}"));
    }
}

/// Creates a new store file readable by its owner only: it holds every callback's fields
/// (callers' numbers, recordings' URLs) and header, credentials included. SQLite gives its
/// `-wal` and `-shm` files the same mode. An existing file is left as it is; one that cannot
/// be made here is SQLite's to report, with the path.
fn create_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Opens (creating if needed) the store's file at `path` for writing, configured and
/// migrated. Every error names the file.
pub(crate) fn connect(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    if path.is_dir() {
        return Err(StoreError::Folder(path.to_path_buf()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    create_private(path);
    let mut conn = rusqlite::Connection::open(path).map_err(open_err)?;
    // A file that cannot be opened for writing is opened read-only by SQLite, silently;
    // every write would then fail. Say so now, naming the file, rather than run a proxy
    // that records nothing (or fail below with SQLite's bare "unable to open").
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(StoreError::ReadOnly(path.to_path_buf()));
    }
    // SQLite's own errors here (the folder refuses the -wal and -shm files, a damaged
    // file) name no file: attach the path.
    let with_path = |error| match error {
        StoreError::Sqlite(source) => open_err(source),
        other => other,
    };
    if let Some(tables) = schema::foreign_tables(&conn).map_err(with_path)? {
        return Err(StoreError::NotOurs {
            path: path.to_path_buf(),
            tables,
        });
    }
    schema::configure(&conn).map_err(with_path)?;
    schema::migrate(&mut conn).map_err(with_path)?;
    Ok(conn)
}

/// Handle to the store's writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    path: Arc<PathBuf>,
    ops: mpsc::UnboundedSender<Op>,
    health: Arc<StoreHealth>,
    nonce_summary: Option<Arc<NonceSummary>>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, migrates it and starts the writer.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let deferred = deferred::Deferred::new(deferred::MAX_ROWS, deferred::MAX_BYTES);
        Store::open_with(path, deferred, false)
    }

    /// Like [`Store::open`], with the stored nonce keys summed up in memory as they are
    /// committed ([`Store::nonce_summary`], for `--reject-replays`).
    pub fn open_summing_up_nonces(path: &Path) -> Result<Store, StoreError> {
        let deferred = deferred::Deferred::new(deferred::MAX_ROWS, deferred::MAX_BYTES);
        Store::open_with(path, deferred, true)
    }

    fn open_with(
        path: &Path,
        deferred: deferred::Deferred,
        summing_up_nonces: bool,
    ) -> Result<Store, StoreError> {
        let conn = connect(path)?;
        let nonce_summary = summing_up_nonces.then(|| NonceSummary::start(path));
        let writer_summary = nonce_summary.clone();
        let lock = orphans::WriterLock::take(path, &conn);
        let (ops, queue) = mpsc::unbounded_channel();
        let health = Arc::new(StoreHealth::default());
        let writer_health = health.clone();
        let writer_done = Arc::new(AtomicBool::new(false));
        let done = writer_done.clone();
        let checkpoints = Arc::new(checkpoint::Shared::default());
        let writer_checkpoints = checkpoints.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                crate::thread_priority::lower_current_thread(crate::thread_priority::STORE_WRITER);
                writer::run(
                    conn,
                    queue,
                    &writer_health,
                    deferred,
                    writer_checkpoints,
                    writer_summary,
                );
                done.store(true, Ordering::Relaxed);
                drop(lock); // no pending row of this writer's is in flight any more
            })
            .map_err(StoreError::Thread)?;
        checkpoint::spawn(
            path.to_path_buf(),
            writer_done,
            checkpoints,
            ops.downgrade(),
        );
        Ok(Store {
            path: Arc::new(path.to_path_buf()),
            ops,
            health,
            nonce_summary,
        })
    }

    /// The stored nonce keys summed up, when opened with [`Store::open_summing_up_nonces`].
    pub fn nonce_summary(&self) -> Option<&Arc<NonceSummary>> {
        self.nonce_summary.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.health
    }

    /// Commits a new exchange (request side, and the response side if it has one) and returns
    /// its id once the commit is done. The writer drops its reference before answering, so the
    /// caller can `Arc::make_mut` the exchange afterwards without a copy.
    pub async fn insert(&self, exchange: Arc<Exchange>) -> Result<Inserted, StoreError> {
        let (ack, answer) = oneshot::channel();
        let row = Row::of(&exchange);
        self.send(Op::Insert { exchange, row, ack })?;
        Self::answer(answer).await
    }

    /// Commits the end of an exchange (its outcome, response, timings and flags, which replace
    /// the stored ones; the whole exchange when it has no id yet) and returns once the commit
    /// is done, with its id. When the store refuses the write (a lock, a full disk), the error
    /// is returned at once and the writer keeps the exchange and retries it until the store
    /// accepts it, so what was received is still recorded. Like [`Store::insert`], the writer
    /// drops its reference before answering (unless it keeps the exchange for a retry).
    pub async fn finish(&self, exchange: Arc<Exchange>) -> Result<Inserted, StoreError> {
        let (ack, answer) = oneshot::channel();
        self.send(Op::End {
            row: Row::of(&exchange),
            exchange,
            ack: Some(ack),
        })?;
        Self::answer(answer).await
    }

    /// Queues the end of an exchange like [`Store::finish`], without waiting for the commit.
    pub fn complete(&self, exchange: Arc<Exchange>) {
        if self
            .send(Op::End {
                row: Row::of(&exchange),
                exchange,
                ack: None,
            })
            .is_err()
        {
            self.health
                .note("the store's writer has stopped; a completion was not recorded");
        }
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.ops.send(op).map_err(|_| StoreError::WriterGone)
    }

    async fn answer(
        answer: oneshot::Receiver<Result<Inserted, String>>,
    ) -> Result<Inserted, StoreError> {
        match answer.await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(message)) => Err(StoreError::Write(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.ops.send(Op::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Commits everything queued, then folds the WAL back into the database file and empties
    /// it: for the end of a run (the listener stopping, an import, a replay), so that the
    /// `.db` file alone is complete when someone copies it. Best effort: a reader still in
    /// the file (another process) only leaves the WAL in place, as it is while running.
    pub async fn flush_into_file(&self) {
        self.flush().await;
        let path = self.path.to_path_buf();
        let folded = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_secs(1))?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        })
        .await;
        if let Ok(Err(e)) = folded {
            tracing::debug!("folding the store's WAL back in at the end: {e}");
        }
    }

    /// A reader on the same file.
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        StoreReader::open(&self.path)
    }
}

/// The default store file: `<data dir>/vobiz-tunnel/exchanges.db`
/// (e.g. `~/.local/share/vobiz-tunnel/exchanges.db`).
pub fn default_path() -> PathBuf {
    dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("vobiz-tunnel")
        .join("exchanges.db")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Flag, Headers, Outcome, RequestRecord, ResponseRecord};
    use crate::signature::{verify, AuthToken, CallbackRequest, Keys};

    const TOKEN: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";

    #[test]
    fn another_applications_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let app = rusqlite::Connection::open(&path).unwrap();
        app.execute_batch("CREATE TABLE users (id INTEGER); CREATE TABLE orders (id INTEGER);")
            .unwrap();
        drop(app);
        let error = connect(&path).unwrap_err().to_string();
        assert!(
            error.contains("app.db") && error.contains("users, orders"),
            "{error}"
        );
        let app = rusqlite::Connection::open(&path).unwrap();
        let mode: String = app
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "not switched to WAL");
        let ours: i64 = app
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'exchanges'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ours, 0);
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_succeed() {
        // Two listeners (or an import and a listener) started together on a store that does
        // not exist yet: one creates the schema, the other waits and finds it.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("race{round}.db"));
            let openers: Vec<_> = (0..3)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || connect(&path).map(|_| ()))
                })
                .collect();
            for opener in openers {
                let opened = opener.join().unwrap();
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
            let conn = connect(&path).unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
    }

    fn exchange(nonce: &str) -> Exchange {
        let url = "https://example.com/vobiz/hangup";
        let keys = Keys {
            auth_tokens: vec![AuthToken::new(TOKEN)],
            main_auth_tokens: vec![],
        };
        let signature = crate::signature::sign_v3_docs(&keys.auth_tokens[0], url, nonce);
        let headers = Headers(vec![
            (
                "content-type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ),
            ("x-vobiz-signature-v3".into(), signature.into_bytes()),
            (
                "x-vobiz-signature-v3-nonce".into(),
                nonce.as_bytes().to_vec(),
            ),
            ("x-odd".into(), vec![0xfe, 0xff]),
        ]);
        let body = b"CallUUID=abc&Event=Hangup&Digits=%2A1".to_vec();
        let pairs = headers.to_text_pairs();
        let verdict = verify(
            &CallbackRequest {
                method: "POST",
                url,
                headers: &pairs,
                body: &body,
                extra_ports: &[],
                other_urls: &[],
            },
            &keys,
        );
        let request = RequestRecord {
            method: "POST".into(),
            target: "/vobiz/hangup".into(),
            http_version: "HTTP/1.1".into(),
            host: Some("example.com".into()),
            public_url: url.into(),
            headers,
            body: body.into(),
            ..RequestRecord::default()
        };
        Exchange::received(request, verdict, 1_700_000_000_000_000)
    }

    #[tokio::test]
    async fn an_exchange_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let inserted = store
            .insert(Arc::new(exchange("11111111111111111111")))
            .await
            .unwrap();
        let mut finished = exchange("11111111111111111111");
        finished.id = Some(inserted.id);
        finished.outcome = Outcome::Forwarded;
        finished.response = Some(ResponseRecord {
            status: 200,
            headers: Headers(vec![("content-type".into(), b"text/xml".to_vec())]),
            body: bytes::Bytes::from_static(b"<Response/>"),
        });
        finished.timings.forwarded_us = Some(finished.timings.received_us + 10);
        finished.timings.first_byte_us = Some(finished.timings.received_us + 900);
        finished.timings.done_us = Some(finished.timings.received_us + 1000);
        finished.add_flag(Flag::Slow);
        store.complete(Arc::new(finished.clone()));
        store.flush().await;

        let read = store.reader().unwrap().get(inserted.id).unwrap().unwrap();
        assert_eq!(read, finished);
        let summaries = store.reader().unwrap().latest(10).unwrap();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].event.as_deref(), Some("Hangup"));
        assert_eq!(summaries[0].duration_ms, Some(1.0));
    }

    #[tokio::test]
    async fn an_exchange_that_carries_an_id_is_still_inserted_whole() {
        // Its encoded row leaves the request side out (an id means "already written"); the
        // writer encodes it itself rather than store a row without it.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut carried = exchange("44444444444444444444");
        carried.id = Some(999);
        let inserted = store.insert(Arc::new(carried.clone())).await.unwrap();
        carried.id = Some(inserted.id);
        let read = store.reader().unwrap().get(inserted.id).unwrap().unwrap();
        assert_eq!(read, carried);
    }

    #[tokio::test]
    async fn a_reused_nonce_and_signature_point_to_the_first_exchange() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let first = store
            .insert(Arc::new(exchange("22222222222222222222")))
            .await
            .unwrap();
        let other = store
            .insert(Arc::new(exchange("33333333333333333333")))
            .await
            .unwrap();
        let again = store
            .insert(Arc::new(exchange("22222222222222222222")))
            .await
            .unwrap();
        assert_eq!(first.nonce_reused_of, None);
        assert_eq!(other.nonce_reused_of, None);
        assert_eq!(again.nonce_reused_of, Some(first.id));
    }

    #[tokio::test]
    async fn a_nonce_is_reused_only_by_an_exchange_received_after_it() {
        // An import may bring in an original after the replays recorded from it.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let at = |received_us: i64| {
            let mut exchange = exchange("88888888888888888888");
            exchange.timings.received_us = received_us;
            Arc::new(exchange)
        };
        let replay = store.insert(at(2_000)).await.unwrap();
        let original = store.insert(at(1_000)).await.unwrap();
        let later = store.insert(at(3_000)).await.unwrap();
        assert_eq!(replay.nonce_reused_of, None);
        assert_eq!(
            original.nonce_reused_of, None,
            "the original reused nothing"
        );
        assert_eq!(
            later.nonce_reused_of,
            Some(original.id),
            "the first received"
        );
        // Written after it, the original still points the replay at itself.
        let read = store.reader().unwrap().get(replay.id).unwrap().unwrap();
        assert_eq!(read.nonce_reused_of, Some(original.id));
        assert!(read.has_flag(Flag::NonceReused), "{:?}", read.flags);
        let read = store.reader().unwrap().get(original.id).unwrap().unwrap();
        assert!(!read.has_flag(Flag::NonceReused), "{:?}", read.flags);
    }

    #[tokio::test]
    async fn concurrent_inserts_are_all_committed_with_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .insert(Arc::new(exchange(&format!("{i:020}"))))
                    .await
                    .unwrap()
                    .id
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        assert_eq!(store.reader().unwrap().count().unwrap(), 200);
    }

    #[tokio::test]
    async fn reopening_keeps_rows_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .insert(Arc::new(exchange("44444444444444444444")))
                .await
                .unwrap();
            store.flush().await;
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.reader().unwrap().count().unwrap(), 1);
        drop(store);

        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&path).err().expect("refused");
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(StoreReader::open(&path).is_err());
    }

    #[tokio::test]
    async fn a_locked_database_fails_the_write_and_is_reported_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let locker = rusqlite::Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let result = store
            .insert(Arc::new(exchange("55555555555555555555")))
            .await;
        assert!(
            result.is_err(),
            "the write fails while another process holds the lock"
        );
        assert!(store.health().failed_writes() >= 1);
        assert!(store.health().last_error().unwrap().contains("locked"));
        locker.execute_batch("COMMIT").unwrap();
        assert!(store
            .insert(Arc::new(exchange("66666666666666666666")))
            .await
            .is_ok());
    }

    /// Polls the store until `count` rows are there (the writer retries with backoff).
    async fn wait_for_rows(store: &Store, count: u64) {
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                store.flush().await;
                if store.reader().unwrap().count().unwrap() >= count {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{count} rows were never recorded");
    }

    #[tokio::test]
    async fn writes_refused_while_locked_are_recorded_once_the_lock_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let locker = rusqlite::Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let refused = Arc::new(exchange("77777777777777777777"));
        assert!(store.insert(refused.clone()).await.is_err());
        // The pipeline ends the exchange without an id: queued whole, retried.
        let mut finished = (*refused).clone();
        finished.outcome = Outcome::Forwarded;
        store.complete(Arc::new(finished));
        store.flush().await;
        assert_eq!(store.health().deferred_writes(), 1);
        assert_eq!(store.reader().unwrap().count().unwrap(), 0);

        locker.execute_batch("COMMIT").unwrap();
        wait_for_rows(&store, 1).await;
        let id = store.reader().unwrap().latest(1).unwrap()[0].id.unwrap();
        let read = store.reader().unwrap().get(id).unwrap().unwrap();
        assert_eq!(read.outcome, Outcome::Forwarded);
        assert_eq!(store.health().deferred_writes(), 0);
        assert_eq!(store.health().lost_writes(), 0);
    }

    #[tokio::test]
    async fn deferred_writes_are_capped_and_the_loss_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open_with(&path, deferred::Deferred::new(2, usize::MAX), false).unwrap();
        let locker = rusqlite::Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        for i in 0..4 {
            store.complete(Arc::new(exchange(&format!("{:020}", 900 + i))));
        }
        store.flush().await;
        assert_eq!(store.health().deferred_writes(), 2);
        assert_eq!(store.health().lost_writes(), 2);
        locker.execute_batch("COMMIT").unwrap();
        wait_for_rows(&store, 2).await;
        assert_eq!(store.reader().unwrap().count().unwrap(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_store_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(store.insert(Arc::new(exchange("12345678901234567890"))))
            .unwrap();
        for suffix in ["", "-wal"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
    }

    #[test]
    fn an_unopenable_path_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path())
            .err()
            .expect("a directory is not a database");
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
