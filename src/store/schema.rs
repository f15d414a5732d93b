//! The store's schema and its migrations. `PRAGMA user_version` holds the number of migrations
//! applied; each migration runs once, in order, inside a transaction. Never edit a released
//! migration: add a new one (the README documents the resulting schema for `sqlite3` users).

use rusqlite::Connection;

use super::StoreError;

/// Migrations, in order. Index + 1 is the schema version a migration produces.
const MIGRATIONS: &[&str] = &[
    // 1: one row per exchange; raw header blocks and body bytes; derived columns for filtering.
    r#"
    CREATE TABLE exchanges (
        id                     INTEGER PRIMARY KEY,
        replay_of              INTEGER,
        nonce_reused_of        INTEGER,
        received_at_us         INTEGER NOT NULL,
        forwarded_at_us        INTEGER,
        first_byte_at_us       INTEGER,
        done_at_us             INTEGER,
        duration_ms            REAL,
        client_addr            TEXT,
        tls_version            TEXT,
        alpn                   TEXT,
        sni                    TEXT,
        http_version           TEXT NOT NULL,
        method                 TEXT NOT NULL,
        target                 TEXT NOT NULL,
        path                   TEXT NOT NULL,
        host                   TEXT,
        public_url             TEXT NOT NULL,
        request_headers        BLOB NOT NULL,
        request_body           BLOB NOT NULL,
        request_body_truncated INTEGER NOT NULL DEFAULT 0,
        event                  TEXT,
        call_uuid              TEXT,
        signature              TEXT NOT NULL,
        signature_scheme       TEXT,
        signature_detail       TEXT NOT NULL,
        nonce_key              TEXT,
        outcome                TEXT NOT NULL,
        error                  TEXT,
        status                 INTEGER,
        response_headers       BLOB,
        response_body          BLOB,
        flags                  TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX exchanges_call_uuid ON exchanges(call_uuid) WHERE call_uuid IS NOT NULL;
    CREATE INDEX exchanges_nonce_key ON exchanges(nonce_key) WHERE nonce_key IS NOT NULL;
    CREATE INDEX exchanges_replay_of ON exchanges(replay_of) WHERE replay_of IS NOT NULL;
    "#,
    // 2: filtering by Event (the most common filter) without a scan; ~15 bytes per row.
    r#"
    CREATE INDEX exchanges_event ON exchanges(event COLLATE NOCASE);
    "#,
    // 3: what the Vobiz checks found (XML lint, delivery analysis), a JSON array of
    // {rule, severity, message}; rows of older versions read as none.
    r#"
    ALTER TABLE exchanges ADD COLUMN findings TEXT NOT NULL DEFAULT '[]';
    "#,
    // 4: `signature_detail` leaves out what the row's request headers and URL already say
    // (signature values, nonces, documented strings to sign) and what the verdict repeats;
    // see `signature::stored`. The table is unchanged: the new version only makes older
    // builds refuse the store rather than misread its new rows.
    "-- signature_detail in its compact form",
    // 5: the inspector's counts by verdict and status class over the whole store without a
    // scan. Only the unusual rows are indexed (not valid; no answer or not 2xx), so a store of
    // healthy callbacks pays nothing per insert; the usual counts are the total less these.
    r#"
    CREATE INDEX exchanges_unusual_signature ON exchanges(signature)
        WHERE signature <> 'valid';
    CREATE INDEX exchanges_unusual_status ON exchanges(status)
        WHERE status IS NULL OR status < 200 OR status >= 300;
    "#,
    // 6: `call:` ignores case, so its index is on the lower-cased CallUUID; it replaces the
    // plain one (the exact lookup of a call's exchanges narrows by it too).
    r#"
    DROP INDEX IF EXISTS exchanges_call_uuid;
    CREATE INDEX exchanges_call_uuid_lower ON exchanges(lower(call_uuid))
        WHERE call_uuid IS NOT NULL;
    "#,
    // 7: where a replay was sent when that was not the local server (`replay --to`, `t` in
    // the inspector); NULL for everything else.
    r#"
    ALTER TABLE exchanges ADD COLUMN sent_to TEXT;
    "#,
];

/// How long the writer waits for another process's lock before giving up on a batch.
pub const WRITER_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long opening a store waits for another process that is opening or migrating it.
const OPEN_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Connection settings for every connection: WAL so readers (`list`, `show`, the UI) never block
/// the writer; `synchronous=NORMAL` because WAL commits then survive a crash of the process
/// (what the tool promises) without an fsync per commit.
///
/// The writer waits at most [`WRITER_BUSY_TIMEOUT`] for a lock held by another process (a
/// `sqlite3` shell, a replay): callbacks must not wait on it for long, so after that the
/// write fails, is reported, and the request is forwarded anyway.
pub fn configure(conn: &Connection) -> Result<(), StoreError> {
    // Switching to WAL needs the file to itself: another process opening the same new store
    // at the same moment holds it briefly.
    conn.busy_timeout(OPEN_BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let mode = switch_to_wal(conn)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "the store could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints run on their own thread (see `checkpoint.rs`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL starts over (see `checkpoint.rs`), its file is cut back to this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.busy_timeout(WRITER_BUSY_TIMEOUT)?;
    Ok(())
}

/// The tables of a database that is not a vobiz-tunnel store (no schema version, and tables
/// of its own): a mistyped `--store app.db` must not add ours to it, or switch it to WAL.
pub fn foreign_tables(conn: &Connection) -> Result<Option<String>, StoreError> {
    conn.busy_timeout(OPEN_BUSY_TIMEOUT)?;
    // One statement, so one snapshot: another process may be creating our schema right now.
    let (version, tables): (i64, Option<String>) = conn.query_row(
        "SELECT (SELECT user_version FROM pragma_user_version), \
                (SELECT group_concat(name, ', ') FROM sqlite_master \
                 WHERE type = 'table' AND name NOT LIKE 'sqlite_%')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(tables.filter(|t| version == 0 && !t.is_empty()))
}

/// `journal_mode=WAL`, retried while another process holds the file: SQLite answers a
/// journal-mode change that cannot get its lock with "database is locked" at once, without
/// waiting on the busy timeout.
fn switch_to_wal(conn: &Connection) -> Result<String, StoreError> {
    let deadline = std::time::Instant::now() + OPEN_BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            result => return Ok(result?),
        }
    }
}

/// Brings the schema up to [`SCHEMA_VERSION`]. Refuses a store written by a newer build.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    // Two processes may open a new (or old) store at once (two listeners, an import): the
    // first to take the write lock migrates, the other waits for it and then finds the
    // version it needs. The version is read again under the lock for that reason.
    conn.busy_timeout(OPEN_BUSY_TIMEOUT)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    conn.busy_timeout(WRITER_BUSY_TIMEOUT)?;
    Ok(())
}
