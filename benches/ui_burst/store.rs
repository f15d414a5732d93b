//! Reading a child's store: the rows it recorded, with SQL on a read-only connection.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::SETTLE_TIMEOUT;

/// Rows in the store, read with SQL on a read-only connection (the schema is public).
pub fn count_rows(store: &Path) -> rusqlite::Result<u64> {
    let conn = rusqlite::Connection::open_with_flags(
        store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))
}

/// Polls the store until it holds `want` rows; the last count seen.
pub fn wait_for_rows(store: &Path, want: u64) -> u64 {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let rows = count_rows(store).unwrap_or(0);
        if rows >= want || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
