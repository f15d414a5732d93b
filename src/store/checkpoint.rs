//! WAL checkpoints on a thread of their own. SQLite would otherwise checkpoint (with an
//! fsync) inside whichever commit crosses the threshold, and every callback waiting on that
//! commit would wait for the disk too. A passive checkpoint never blocks the writer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is copied back into the database file.
const INTERVAL: Duration = Duration::from_millis(500);

/// Starts the checkpointer for the store at `path`; it ends when `writer_done` is set.
pub(super) fn spawn(path: PathBuf, writer_done: Arc<AtomicBool>) {
    let started = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let conn = match Connection::open(&path) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("store checkpoints are off ({e}); the WAL file will grow");
                    return;
                }
            };
            while !writer_done.load(Ordering::Relaxed) {
                std::thread::sleep(INTERVAL);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!("store checkpoint skipped: {e}");
                }
            }
            // The writer is gone: fold the WAL back in completely.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        });
    if let Err(e) = started {
        tracing::warn!("store checkpoints are off ({e}); the WAL file will grow");
    }
}
