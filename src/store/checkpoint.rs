//! WAL checkpoints on a thread of their own. SQLite would otherwise checkpoint (with an
//! fsync) inside whichever commit crosses the threshold, and every callback waiting on that
//! commit would wait for the disk too. A passive checkpoint never blocks the writer.
//!
//! Passive checkpoints alone never shrink the WAL under sustained load: SQLite starts the WAL
//! over only when a checkpoint has copied every frame, and the writer always adds more. The
//! WAL then grew by ~14 KB per exchange (14 GB over a million) and so did its shared-memory
//! index, which is mapped into the process (+30 MB resident). So once the WAL is over
//! [`RESTART_ABOVE`], the writer thread itself runs a RESTART checkpoint between two batches
//! ([`WalRestart`]), right after a passive checkpoint has finished and before the next one
//! starts ([`Shared`]): only the frames of the last few milliseconds are left to copy, and
//! the next commit writes the WAL from its start again (`journal_size_limit`, set in
//! `schema::configure`, then cuts the file back). Measured at full load: commits wait a few
//! milliseconds, rarely up to ~70. (Run from this thread, the checkpoint held the write lock
//! while waiting for readers and the disk, and the writer's commit failed with "database is
//! locked"; as TRUNCATE, or at any moment rather than after a passive one, it held up
//! callbacks for 75-340 ms, every half second at full load.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::identity::FileWatch;
use super::Op;

/// How often the WAL is copied back into the database file. Often, so that little is left
/// for the writer's WAL restart (which holds up commits while it runs).
const INTERVAL: Duration = Duration::from_millis(100);
/// WAL size above which the writer starts the WAL over.
const RESTART_ABOVE: u64 = 64 * 1024 * 1024;
/// A restart slower than this is reported (callbacks wait for it).
const SLOW_RESTART: Duration = Duration::from_millis(250);
/// How long the final checkpoint waits for locks.
const LOCK_WAIT: Duration = Duration::from_millis(200);

/// What the checkpoint thread and the writer's WAL restart share.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Held while a passive checkpoint runs; the restart only tries it.
    running: Mutex<()>,
    /// A passive checkpoint has just finished: nearly every frame is in the database file.
    caught_up: AtomicBool,
}

/// The writer's side: between batches, after each passive checkpoint, a look at the WAL's
/// size and, when it is over [`RESTART_ABOVE`], a RESTART checkpoint on the writer's
/// connection.
pub(super) struct WalRestart {
    wal: Option<PathBuf>,
    above: u64,
    shared: Arc<Shared>,
}

impl WalRestart {
    pub(super) fn new(conn: &Connection, shared: Arc<Shared>) -> WalRestart {
        WalRestart::above(conn, RESTART_ABOVE, shared)
    }

    fn above(conn: &Connection, above: u64, shared: Arc<Shared>) -> WalRestart {
        let wal = conn.path().filter(|p| !p.is_empty()).map(|p| {
            let mut wal = std::ffi::OsString::from(p);
            wal.push("-wal");
            PathBuf::from(wal)
        });
        WalRestart { wal, above, shared }
    }

    pub(super) fn run_if_due(&mut self, conn: &Connection) {
        let Some(wal) = &self.wal else { return };
        if !self.shared.caught_up.swap(false, Ordering::Relaxed) {
            return;
        }
        if std::fs::metadata(wal).map_or(0, |m| m.len()) <= self.above {
            return;
        }
        // A passive checkpoint that started meanwhile would be waited for: skip this round.
        let Ok(_no_passive) = self.shared.running.try_lock() else {
            return;
        };
        // Busy (a reader is still on old frames) is fine: the next look tries again.
        let started = Instant::now();
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
            tracing::debug!("WAL restart skipped: {e}");
        }
        let took = started.elapsed();
        if took > SLOW_RESTART {
            tracing::warn!("emptying the store's WAL held up recording for {took:?}");
        }
    }
}

/// Starts the checkpointer for the store at `path`; it ends when `writer_done` is set.
/// `wake` reaches the writer: when the store's file goes away while nothing is written, the
/// writer (which looks at the path between batches) would otherwise not notice until the
/// next callback, and readers would go on showing the deleted store.
pub(super) fn spawn(
    path: PathBuf,
    writer_done: Arc<AtomicBool>,
    shared: Arc<Shared>,
    wake: mpsc::WeakUnboundedSender<Op>,
) {
    let started = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            crate::thread_priority::lower_current_thread(crate::thread_priority::BACKGROUND);
            let mut conn = match Connection::open(&path) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("store checkpoints are off ({e}); the WAL file will grow");
                    return;
                }
            };
            let mut file = FileWatch::new(&path);
            while !writer_done.load(Ordering::Relaxed) {
                std::thread::sleep(INTERVAL);
                // The writer starts a new store when the file goes away; follow it there
                // (without creating it: that is the writer's to do, with the schema).
                if file.moved().is_some() {
                    if let Some(writer) = wake.upgrade() {
                        let _ = writer.send(Op::Flush(oneshot::channel().0));
                    }
                    if let Ok(fresh) =
                        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                    {
                        conn = fresh;
                        file = FileWatch::new(&path);
                    }
                }
                let running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
                match checkpoint(&conn, "PASSIVE", Duration::ZERO) {
                    Ok(()) => shared.caught_up.store(true, Ordering::Relaxed),
                    Err(e) => tracing::debug!("store checkpoint skipped: {e}"),
                }
                drop(running);
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
    fn a_wal_over_the_limit_starts_over_between_batches() {
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
        let shared = Arc::new(Shared::default());
        let mut restart = WalRestart::above(&conn, 256 * 1024, shared.clone());
        for _ in 0..100 {
            conn.execute("INSERT INTO t VALUES (zeroblob(8192))", [])
                .unwrap();
        }
        assert!(wal_size() > 256 * 1024, "{}", wal_size());
        restart.run_if_due(&conn);
        assert!(wal_size() > 256 * 1024, "not before a passive checkpoint");
        shared.caught_up.store(true, Ordering::Relaxed);
        let passive = shared.running.lock().unwrap();
        restart.run_if_due(&conn);
        assert!(
            wal_size() > 256 * 1024,
            "not while a passive checkpoint runs"
        );
        drop(passive);
        shared.caught_up.store(true, Ordering::Relaxed);
        restart.run_if_due(&conn);
        // Restarted: the next commit writes its frames from the start of the WAL again.
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let frames: i64 = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(frames <= 4, "{frames} frames in the WAL after a restart");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 101);
    }
}
