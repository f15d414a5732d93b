//! Durable SQLite persistence of exchanges.
//!
//! One writer thread owns the write connection and commits whatever is queued in one
//! transaction (group commit), so recording keeps up with the proxy however many connections
//! are open. The pipeline awaits the commit of a request before forwarding it, so a crash
//! mid-forward loses nothing that was received; completions are queued without waiting.
//! Readers ([`StoreReader`]) open their own connections; WAL mode lets them read while a
//! listener writes.

mod calls;
mod checkpoint;
mod filtered;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::exchange::{Exchange, ExchangeId};

pub use calls::CallSummary;
pub use reader::{ExchangeSummary, StoreReader};
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
    #[error("no store at {0} (start `vobiz-tunnel listen` once, or pass --store)")]
    Missing(PathBuf),
    #[error("the store was written by a newer vobiz-tunnel (schema {found}; this build knows up to {supported})")]
    TooNew { found: i64, supported: i64 },
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

enum Op {
    Insert {
        exchange: Arc<Exchange>,
        ack: oneshot::Sender<Result<Inserted, String>>,
    },
    Complete(Arc<Exchange>),
    Flush(oneshot::Sender<()>),
}

/// Write failures seen at run time, for the log and the UI's status bar.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failed_writes: AtomicU64,
    last_error: Mutex<Option<String>>,
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
}

/// Handle to the store's writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    path: Arc<PathBuf>,
    ops: mpsc::UnboundedSender<Op>,
    health: Arc<StoreHealth>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, migrates it and starts the writer.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        let mut conn = rusqlite::Connection::open(path).map_err(open_err)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        let (ops, queue) = mpsc::unbounded_channel();
        let health = Arc::new(StoreHealth::default());
        let writer_health = health.clone();
        let writer_done = Arc::new(AtomicBool::new(false));
        let done = writer_done.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer::run(conn, queue, &writer_health);
                done.store(true, Ordering::Relaxed);
            })
            .map_err(StoreError::Thread)?;
        checkpoint::spawn(path.to_path_buf(), writer_done);
        Ok(Store {
            path: Arc::new(path.to_path_buf()),
            ops,
            health,
        })
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
        self.ops
            .send(Op::Insert { exchange, ack })
            .map_err(|_| StoreError::WriterGone)?;
        match answer.await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(message)) => Err(StoreError::Write(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Queues the end of an exchange (its outcome, response, timings and flags, which replace
    /// the stored ones); the writer commits it with the next batch. Without an id it is ignored.
    pub fn complete(&self, exchange: Arc<Exchange>) {
        if exchange.id.is_none() {
            return;
        }
        if self.ops.send(Op::Complete(exchange)).is_err() {
            self.health
                .note("the store's writer has stopped; a completion was not recorded");
        }
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.ops.send(Op::Flush(done)).is_ok() {
            let _ = wait.await;
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
