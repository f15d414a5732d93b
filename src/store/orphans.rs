//! Exchanges left `pending` by a process that stopped before they ended (killed, crashed,
//! the machine lost power): whether and how their senders were answered is unknown, and
//! without a word they would look in flight forever.
//!
//! Each process that writes a store holds a shared `flock` on its file for as long as its
//! writer runs, and the kernel lets go of it however the process ends. A writer that can
//! take the lock exclusively when it starts is the only one: every pending row is then an
//! orphan, and is flagged `interrupted` with a sentence in its error. With another writer
//! running (a second listener, a replay), its pending rows may be in flight, and none are
//! touched. `flock` and SQLite's own (`fcntl`) locks do not meet on a local file system,
//! which WAL mode needs anyway.

use std::fs::File;
use std::path::Path;

use rusqlite::Connection;

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
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!("cannot open {} to lock it: {e}", path.display());
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
        match file.lock_shared() {
            Ok(()) => WriterLock { _held: Some(file) },
            Err(e) => {
                tracing::debug!("cannot lock {}: {e}", path.display());
                WriterLock { _held: None }
            }
        }
    }
}

/// Flags every pending row not flagged yet; how many.
fn flag_orphans(conn: &Connection) -> rusqlite::Result<usize> {
    // The status condition is that of the `exchanges_unusual_status` index (a pending row
    // has no status): the rows are found through it, not by a scan of the whole store.
    conn.execute(
        "UPDATE exchanges SET
            flags = CASE WHEN flags = '' THEN 'interrupted' ELSE flags || ',interrupted' END,
            error = COALESCE(error, ?1)
         WHERE (status IS NULL OR status < 200 OR status >= 300)
           AND outcome = 'pending'
           AND ',' || flags || ',' NOT LIKE '%,interrupted,%'",
        [INTERRUPTED],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection) -> String {
        let sql = "EXPLAIN QUERY PLAN SELECT id FROM exchanges
             WHERE (status IS NULL OR status < 200 OR status >= 300) AND outcome = 'pending'";
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        rows.join("; ")
    }

    #[test]
    fn orphans_are_found_through_an_index_not_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::connect(&dir.path().join("s.db")).unwrap();
        let plan = plan(&conn);
        assert!(plan.contains("exchanges_unusual_status"), "{plan}");
    }
}
