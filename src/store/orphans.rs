//! Exchanges left `pending` by a process that stopped before they ended (killed, crashed,
//! the machine lost power): whether and how their senders were answered is unknown, and
//! without a word they would look in flight forever.
//!
//! Each process that writes a store holds a shared lock on a file beside it
//! (`<store>-writers`) for as long as its writer runs, and the operating system lets go of it
//! however the process ends. A writer that can take the lock exclusively when it starts is
//! the only one: every pending row is then an orphan, and is flagged `interrupted` with a
//! sentence in its error (an imported entry without an answer is left as it is: no process
//! of ours was writing it). With another writer running (a second listener, a replay), its
//! pending rows may be in flight, and none are touched.
//!
//! Not a lock on the store file itself: closing any handle of it would drop SQLite's own
//! POSIX locks on it held by the process's other connections; on macOS and Windows the two
//! kinds of lock meet; and a store file replaced while recording would leave the lock on the
//! old one. A file beside it is tied to the path.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How long a starting writer waits for another that is flagging orphans right now (it holds
/// the lock exclusively for one UPDATE).
const WAIT_FOR_FLAGGING: Duration = Duration::from_secs(2);

/// The rows flagged: pending, not imported, not flagged yet. A pending row has no status:
/// the first condition is the partial index's own (so SQLite may use it), the second makes
/// its use a search for the NULLs rather than a walk of every unusual row.
const FLAG_ORPHANS: &str = "UPDATE exchanges SET
        flags = CASE WHEN flags = '' THEN 'interrupted' ELSE flags || ',interrupted' END,
        error = COALESCE(error, ?1)
     WHERE (status IS NULL OR status < 200 OR status >= 300) AND status IS NULL
       AND outcome = 'pending'
       AND ',' || flags || ',' NOT LIKE '%,interrupted,%'
       AND ',' || flags || ',' NOT LIKE '%,imported,%'";

/// What an orphan's error says, when it has none of its own.
pub const INTERRUPTED: &str = "never finished: the process recording it stopped (killed or \
     crashed) before the exchange ended, so whether and how its sender was answered is unknown";

/// The writer's shared lock on the store file; released when dropped.
pub(super) struct WriterLock {
    _held: Option<File>,
}

impl WriterLock {
    /// Flags the orphans if this is the store's only writer, then holds the shared lock.
    /// A lock that cannot be had (an odd file system) costs only the flagging.
    pub fn take(path: &Path, conn: &Connection) -> WriterLock {
        let lock_path = lock_path(path);
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path);
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(
                    "cannot open {} ({e}): rows a killed run leaves pending will not be \
                     flagged interrupted",
                    lock_path.display()
                );
                return WriterLock { _held: None };
            }
        };
        if file.try_lock().is_ok() {
            match flag_orphans(conn) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    "{n} exchange(s) in {} were left pending by a run that stopped before \
                     they ended; they are flagged `interrupted`",
                    path.display()
                ),
                Err(e) => tracing::warn!("cannot flag interrupted exchanges: {e}"),
            }
        }
        // Let go first: on Windows a shared lock would stack on the exclusive one, not
        // replace it. Nothing of this run is pending yet, so the moment between is harmless.
        let _ = file.unlock();
        // Never blocks for long: another writer holds it exclusively only while it flags.
        let started = Instant::now();
        loop {
            match file.try_lock_shared() {
                Ok(()) => return WriterLock { _held: Some(file) },
                Err(TryLockError::WouldBlock) if started.elapsed() < WAIT_FOR_FLAGGING => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot lock {} ({e}): another run may take this run's pending rows \
                         for orphans",
                        lock_path.display()
                    );
                    return WriterLock { _held: None };
                }
            }
        }
    }
}

/// The file writers of the store at `path` lock: beside it, like SQLite's `-wal` (beside the
/// file a symbolic link leads to, as SQLite's is, so that both names share one lock).
fn lock_path(path: &Path) -> PathBuf {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut name = path.into_os_string();
    name.push("-writers");
    PathBuf::from(name)
}

/// Flags every pending row not flagged yet; how many.
fn flag_orphans(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(FLAG_ORPHANS, [INTERRUPTED])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_searched_for_in_an_index_not_scanned_for() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::connect(&dir.path().join("s.db")).unwrap();
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {FLAG_ORPHANS}"))
            .unwrap();
        let plan = statement
            .query_map([INTERRUPTED], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            plan.starts_with("SEARCH exchanges USING INDEX exchanges_unusual_status"),
            "{plan}"
        );
    }

    #[test]
    fn the_lock_is_a_file_beside_the_store() {
        assert_eq!(
            lock_path(Path::new("/tmp/x/exchanges.db")),
            Path::new("/tmp/x/exchanges.db-writers")
        );
    }
}
