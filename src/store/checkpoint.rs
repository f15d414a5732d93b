//! WAL checkpoints on a thread of their own. SQLite would otherwise checkpoint (with an
//! fsync) inside whichever commit crosses the threshold, and every callback waiting on that
//! commit would wait for the disk too. A passive checkpoint never blocks the writer.
//!
//! Passive checkpoints alone never shrink the WAL under sustained load: SQLite starts the WAL
//! over only when a checkpoint has copied every frame, and the writer always adds more. The
//! WAL then grew by ~14 KB per exchange (14 GB over a million) and so did its shared-memory
//! index, which is mapped into the process (+30 MB resident). So once the WAL is over
//! [`RESTART_ABOVE`], the writer thread itself runs a TRUNCATE checkpoint between two batches
//! ([`Truncation`]): it copies the few frames the passive ones left and empties the file.
//! Run from this thread instead, it held the write lock while waiting for readers and the
//! disk, and the writer's commit failed with "database is locked".

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the WAL is copied back into the database file.
const INTERVAL: Duration = Duration::from_millis(500);
/// WAL size above which the writer starts the WAL over.
const RESTART_ABOVE: u64 = 64 * 1024 * 1024;
/// How long the final checkpoint waits for locks.
const LOCK_WAIT: Duration = Duration::from_millis(200);

/// The writer's side: between batches, at most every [`INTERVAL`], a look at the WAL's size
/// and, when it is over [`RESTART_ABOVE`], a TRUNCATE checkpoint on the writer's connection.
pub(super) struct Truncation {
    wal: Option<PathBuf>,
    above: u64,
    next_look: Instant,
}

impl Truncation {
    pub(super) fn new(conn: &Connection) -> Truncation {
        Truncation::above(conn, RESTART_ABOVE)
    }

    fn above(conn: &Connection, above: u64) -> Truncation {
        let wal = conn.path().filter(|p| !p.is_empty()).map(|p| {
            let mut wal = std::ffi::OsString::from(p);
            wal.push("-wal");
            PathBuf::from(wal)
        });
        Truncation {
            wal,
            above,
            next_look: Instant::now() + INTERVAL,
        }
    }

    pub(super) fn run_if_due(&mut self, conn: &Connection) {
        let Some(wal) = &self.wal else { return };
        if Instant::now() < self.next_look {
            return;
        }
        self.next_look = Instant::now() + INTERVAL;
        if std::fs::metadata(wal).map_or(0, |m| m.len()) <= self.above {
            return;
        }
        // Busy (a reader is still on old frames) is fine: the next look tries again.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::debug!("WAL truncation skipped: {e}");
        }
    }
}

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
                if let Err(e) = checkpoint(&conn, "PASSIVE", Duration::ZERO) {
                    tracing::debug!("store checkpoint skipped: {e}");
                }
            }
            // The writer is gone: fold the WAL back in completely.
            let _ = checkpoint(&conn, "TRUNCATE", LOCK_WAIT);
        });
    if let Err(e) = started {
        tracing::warn!("store checkpoints are off ({e}); the WAL file will grow");
    }
}

/// One checkpoint in `mode`, waiting up to `wait` for locks. A busy result (the writer kept
/// its lock) is not an error: the next round tries again.
fn checkpoint(conn: &Connection, mode: &str, wait: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(wait)?;
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_over_the_limit_is_emptied_between_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Connection::open(&path).unwrap();
        crate::store::schema::configure(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        let wal_size = || {
            std::fs::metadata(dir.path().join("s.db-wal"))
                .unwrap()
                .len()
        };
        let mut truncation = Truncation::above(&conn, 256 * 1024);
        for _ in 0..100 {
            conn.execute("INSERT INTO t VALUES (zeroblob(8192))", [])
                .unwrap();
        }
        assert!(wal_size() > 256 * 1024, "{}", wal_size());
        truncation.run_if_due(&conn);
        assert!(wal_size() > 256 * 1024, "not before its interval");
        truncation.next_look = Instant::now();
        truncation.run_if_due(&conn);
        assert_eq!(wal_size(), 0);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 100);
    }
}
