//! Durable SQLite persistence of exchanges.
//!
//! One writer thread owns the write connection and commits whatever is queued in one
//! transaction (group commit), so recording keeps up with the proxy however many connections
//! are open. The pipeline awaits the commit of a request before forwarding it, so a crash
//! mid-forward loses nothing that was received; completions are queued without waiting.
//! Readers ([`StoreReader`]) open their own connections; WAL mode lets them read while a
//! listener writes.

mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::exchange::{Exchange, ExchangeId};

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
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, queue, &writer_health))
            .map_err(StoreError::Thread)?;
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
