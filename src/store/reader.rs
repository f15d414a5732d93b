//! Reading the store: summaries for lists (no bodies, so a million rows stay cheap) and whole
//! exchanges for detail views. Read-only connections; safe while a listener writes.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde::Serialize;

use super::{schema, StoreError};
use crate::exchange::{
    Exchange, ExchangeId, Flag, Headers, Outcome, RequestRecord, ResponseRecord, Timings, TlsInfo,
};
use crate::signature::{stored, Scheme, Verdict, VerdictStatus};

/// The columns a list row needs. Field names are the JSON contract of `list --json` and of
/// the headless log's `exchange` lines.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeSummary {
    pub id: Option<ExchangeId>,
    pub received_at_us: i64,
    pub method: String,
    pub path: String,
    pub target: String,
    pub status: Option<u16>,
    pub duration_ms: Option<f64>,
    pub signature: VerdictStatus,
    pub signature_scheme: Option<Scheme>,
    pub event: Option<String>,
    pub call_uuid: Option<String>,
    pub outcome: Outcome,
    pub flags: Vec<Flag>,
    pub replay_of: Option<ExchangeId>,
    pub error: Option<String>,
    /// What the Vobiz checks found (usually nothing), for the `⚠ N` of a text line.
    pub findings: Vec<crate::checks::Finding>,
}

impl ExchangeSummary {
    /// Still waiting for its local server: pending, and not left so by a process that died
    /// (`interrupted`), as [`StoreReader::settled_through`] reads it.
    pub fn is_under_way(&self) -> bool {
        self.outcome == Outcome::Pending && !self.flags.contains(&Flag::Interrupted)
    }

    pub fn of(exchange: &Exchange) -> Self {
        ExchangeSummary {
            id: exchange.id,
            received_at_us: exchange.timings.received_us,
            method: exchange.request.method.clone(),
            path: exchange.request.path().to_string(),
            target: exchange.request.target.clone(),
            status: exchange.status(),
            duration_ms: exchange.timings.duration_ms(),
            signature: exchange.verdict.status,
            signature_scheme: exchange.verdict.scheme,
            event: exchange.event.clone(),
            call_uuid: exchange.call_uuid.clone(),
            outcome: exchange.outcome,
            flags: exchange.flags.clone(),
            replay_of: exchange.replay_of,
            error: exchange.error.clone(),
            findings: exchange.findings.clone(),
        }
    }
}

pub(super) const SUMMARY_COLUMNS: &str =
    "id, received_at_us, method, path, target, status, duration_ms, \
    signature, signature_scheme, event, call_uuid, outcome, flags, replay_of, error, findings";

/// A read-only connection to the store at `path`, and its schema version, read at once:
/// SQLite opens lazily, so a file it cannot read fails at that first read, and the error
/// then names the file.
fn connect(path: &Path) -> Result<(Connection, i64), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let first_read = |conn: Connection| -> Result<(Connection, i64), StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Filters with header terms call a function of ours from SQL.
        crate::filter::sql::register_functions(&conn)?;
        let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok((conn, version))
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    match first_read(conn) {
        Err(StoreError::Sqlite(error)) if cannot_open(&error) => {
            // A store in WAL mode needs its shared-memory file (`-shm`) beside it, created by
            // the first reader when missing: on read-only media (a read-only mount, a
            // container's read-only volume, an immutable folder) it cannot be. Without a
            // write-ahead log to read, the file alone is the whole store, and nothing can
            // write to it there: it is read as immutable, with no shared memory. Only then:
            // a store anyone can still write to (the same error has other causes, such as
            // running out of file descriptors) must be read through its log and locks.
            if !on_read_only_media(path) {
                return Err(with_path(path, StoreError::Sqlite(error)));
            }
            if !log_is_empty(path) {
                return Err(StoreError::ReadOnlyLog(path.to_path_buf()));
            }
            let immutable = Connection::open_with_flags(
                immutable_uri(path),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(open_err)?;
            first_read(immutable).map_err(|e| with_path(path, e))
        }
        result => result.map_err(|e| with_path(path, e)),
    }
}

fn cannot_open(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
}

/// SQLite's own errors name no file: the store's path is attached.
fn with_path(path: &Path, error: StoreError) -> StoreError {
    match error {
        StoreError::Sqlite(source) => StoreError::Open {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    }
}

/// Whether the store's folder takes no new file, and its shared-memory file is not there
/// (so no process writes the store): what read-only media look like to a reader.
fn on_read_only_media(path: &Path) -> bool {
    if beside(path, "-shm").exists() {
        return false;
    }
    let probe = beside(path, &format!("-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(e) => matches!(
            e.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM)
        ),
    }
}

/// Whether the store's write-ahead log is absent or empty (a listener that stopped folds it
/// into the file; a copy of the `.db` file alone has none).
fn log_is_empty(path: &Path) -> bool {
    std::fs::metadata(beside(path, "-wal")).map_or(true, |m| m.len() == 0)
}

/// The file SQLite keeps beside the store: its name with `suffix` (`-wal`, `-shm`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `file:` URI of `path` with `immutable=1`: every byte outside the unreserved set is
/// percent-encoded, so `?`, `#` and `%` in a folder's name stay part of the path.
fn immutable_uri(path: &Path) -> String {
    // `file:///abs` for an absolute path: after `file://` comes an authority, so a path that
    // itself starts with `//` must not follow `file:` directly.
    let mut uri = String::from(match path.is_absolute() {
        true => "file://",
        false => "file:",
    });
    for &byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                uri.push(byte as char)
            }
            _ => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// A read-only view of a store file.
pub struct StoreReader {
    pub(super) conn: Connection,
    path: PathBuf,
    /// Which file `conn` reads, for [`StoreReader::follow_the_path`].
    file: super::identity::FileWatch,
}

impl StoreReader {
    /// Opens an existing store for reading.
    pub fn open(path: &Path) -> Result<StoreReader, StoreError> {
        // Before the open: a file that replaces this one from now on is noticed.
        let file = super::identity::FileWatch::new(path);
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        if path.is_dir() {
            return Err(StoreError::Folder(path.to_path_buf()));
        }
        let (conn, version) = connect(path)?;
        if version > schema::SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: schema::SCHEMA_VERSION,
            });
        }
        Ok(StoreReader {
            conn,
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a row holds `text` (a deciding header's nonce and signature, as the
    /// `nonce_key` column has them): one lookup in its index.
    pub fn has_nonce_key(&self, text: &str) -> Result<bool, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT 1 FROM exchanges WHERE nonce_key = ?1 LIMIT 1")?;
        Ok(statement.exists([text])?)
    }

    /// Every signature header's nonce key of the latest `limit` signed callbacks (see
    /// `latest_nonces`), oldest first.
    pub fn latest_nonce_keys(&self, limit: usize) -> Result<Vec<Vec<i64>>, StoreError> {
        let latest = super::latest_nonces::latest(&self.conn, limit)?;
        Ok(latest.into_iter().map(|stored| stored.keys).collect())
    }

    /// How many exchanges carry a nonce key (through its index, without a scan).
    pub fn count_nonce_keys(&self) -> Result<u64, StoreError> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM exchanges WHERE nonce_key IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(count.max(0) as u64)
    }

    /// Calls `each` with every stored nonce key (read from its index alone, in index order).
    pub fn each_nonce_key(&self, mut each: impl FnMut(&str)) -> Result<(), StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT nonce_key FROM exchanges WHERE nonce_key IS NOT NULL")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if let rusqlite::types::ValueRef::Text(text) = row.get_ref(0)? {
                each(&String::from_utf8_lossy(text));
            }
        }
        Ok(())
    }

    /// Reads the file the path names now, if that is another one than this reader opened: a
    /// running listener starts a new store when its file is deleted or replaced (see
    /// `identity`), and a long-lived reader (the inspector) would otherwise go on reading the
    /// old one. True when it switched; an error (no file there yet) leaves this reader as it
    /// is, to try again later. Looks at the path at most every 0.1 s.
    pub fn follow_the_path(&mut self) -> Result<bool, StoreError> {
        if self.file.moved().is_none() {
            return Ok(false);
        }
        let fresh = StoreReader::open(&self.path)?;
        // A file the listener has only just created has no table yet: not a store to read
        // until its migration is committed (the next look tries again).
        let version: i64 = fresh
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == 0 {
            return Err(StoreError::Missing(self.path.clone()));
        }
        *self = fresh;
        Ok(true)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))?)
    }

    /// Every exchange counted by signature verdict and by status class, from the partial
    /// indexes of the unusual ones (schema 5): milliseconds on a million rows.
    pub fn tally(&self) -> Result<Tally, StoreError> {
        // One snapshot for every count and the newest id, so a caller can tell which
        // exchanges the counts hold (those up to `newest`) while a listener writes on.
        let snapshot = self.conn.unchecked_transaction()?;
        let (total, newest) =
            snapshot.query_row("SELECT count(*), max(id) FROM exchanges", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let mut tally = Tally {
            total,
            newest,
            ..Tally::default()
        };
        let mut by_verdict = self.conn.prepare_cached(TALLY_UNUSUAL_VERDICTS)?;
        let mut unusual = 0;
        for row in
            by_verdict.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?
        {
            let (signature, count) = row?;
            // Read as rows are, so the counts agree with what the list shows.
            tally.by_verdict[Tally::verdict_index(parse_status(&signature))] += count;
            unusual += count;
        }
        tally.by_verdict[0] = total.saturating_sub(unusual);
        let mut by_status = self.conn.prepare_cached(TALLY_UNUSUAL_STATUSES)?;
        let mut unusual = 0;
        for row in by_status.query_map([], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, u64>(1)?))
        })? {
            let (status, count) = row?;
            let status = status.map(|s| u16::try_from(s).unwrap_or(u16::MAX));
            tally.by_class[Tally::class_index(status)] += count;
            unusual += count;
        }
        tally.by_class[2] = total.saturating_sub(unusual);
        let mut pending = self.conn.prepare_cached(TALLY_PENDING_IDS)?;
        tally.pending = pending
            .query_map([TALLY_PENDING as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(pending);
        drop(by_status);
        drop(by_verdict);
        snapshot.commit()?;
        Ok(tally)
    }

    /// The newest id up to which every exchange has ended (none is still waiting for its
    /// local server): a poll for the rows that match a filter reads on after it. A row its
    /// process left pending (flagged `interrupted`) has ended too. Read from the partial index
    /// of unusual statuses and the end of the table: cheap on any store. An ended row can
    /// still change a little later (the `nonce_reused` of a replay whose original is written
    /// after it, `sender_gone`): a live filter on those flags shows it at the next reload.
    pub fn settled_through(&self) -> Result<ExchangeId, StoreError> {
        let snapshot = self.conn.unchecked_transaction()?;
        let newest: Option<ExchangeId> =
            snapshot.query_row("SELECT max(id) FROM exchanges", [], |r| r.get(0))?;
        let first_under_way: Option<ExchangeId> =
            snapshot.query_row(FIRST_UNDER_WAY, [], |r| r.get(0))?;
        snapshot.commit()?;
        Ok(match first_under_way {
            Some(id) => id - 1,
            None => newest.unwrap_or(0),
        })
    }

    /// The newest `limit` exchanges, oldest first.
    pub fn latest(&self, limit: usize) -> Result<Vec<ExchangeSummary>, StoreError> {
        let sql = format!(
            "SELECT * FROM (SELECT {SUMMARY_COLUMNS} FROM exchanges ORDER BY id DESC LIMIT ?1) \
             ORDER BY id"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map([limit as i64], summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Exchanges with ids in `[from, to]`, oldest first, at most `limit`.
    pub fn range(
        &self,
        from: ExchangeId,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let sql =
            format!("SELECT {SUMMARY_COLUMNS} FROM exchanges WHERE id >= ?1 ORDER BY id LIMIT ?2");
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map([from, limit as i64], summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One whole exchange, bodies included.
    pub fn get(&self, id: ExchangeId) -> Result<Option<Exchange>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT * FROM exchanges WHERE id = ?1")?;
        Ok(statement.query_row([id], exchange_from_row).optional()?)
    }
}

fn parse_flags(text: &str) -> Vec<Flag> {
    text.split(',').filter_map(Flag::parse).collect()
}

fn parse_status(text: &str) -> VerdictStatus {
    match text {
        "valid" => VerdictStatus::Valid,
        "invalid" => VerdictStatus::Invalid,
        "unchecked" => VerdictStatus::Unchecked,
        _ => VerdictStatus::Unsigned,
    }
}

fn parse_scheme(text: Option<String>) -> Option<Scheme> {
    text.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok())
}

pub(super) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<ExchangeSummary> {
    let signature: String = row.get("signature")?;
    let outcome: String = row.get("outcome")?;
    let flags: String = row.get("flags")?;
    Ok(ExchangeSummary {
        id: row.get("id")?,
        received_at_us: row.get("received_at_us")?,
        method: row.get("method")?,
        path: row.get("path")?,
        target: row.get("target")?,
        status: row.get("status")?,
        duration_ms: row.get("duration_ms")?,
        signature: parse_status(&signature),
        signature_scheme: parse_scheme(row.get("signature_scheme")?),
        event: row.get("event")?,
        call_uuid: row.get("call_uuid")?,
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Pending),
        flags: parse_flags(&flags),
        replay_of: row.get("replay_of")?,
        error: row.get("error")?,
        findings: parse_findings(&row.get::<_, String>("findings")?),
    })
}

/// The stored findings; an unreadable value reads as none rather than failing the row.
fn parse_findings(text: &str) -> Vec<crate::checks::Finding> {
    match text {
        "" | "[]" => Vec::new(),
        json => serde_json::from_str(json).unwrap_or_default(),
    }
}

fn exchange_from_row(row: &Row<'_>) -> rusqlite::Result<Exchange> {
    let request_headers = Headers::from_block(&row.get::<_, Vec<u8>>("request_headers")?);
    let public_url: String = row.get("public_url")?;
    let detail: String = row.get("signature_detail")?;
    let signature: String = row.get("signature")?;
    let header_pairs = request_headers.to_text_pairs();
    let received = stored::Received {
        headers: &header_pairs,
        url: &public_url,
    };
    let verdict = stored::from_stored_json(&detail, &received).unwrap_or_else(|_| Verdict {
        explanation: vec!["the stored signature details could not be read".into()],
        ..Verdict::bare(parse_status(&signature))
    });
    let outcome: String = row.get("outcome")?;
    let flags: String = row.get("flags")?;
    let response = match row.get::<_, Option<u16>>("status")? {
        Some(status) => Some(ResponseRecord {
            status,
            headers: Headers::from_block(
                &row.get::<_, Option<Vec<u8>>>("response_headers")?
                    .unwrap_or_default(),
            ),
            body: row
                .get::<_, Option<Vec<u8>>>("response_body")?
                .unwrap_or_default()
                .into(),
        }),
        None => None,
    };
    Ok(Exchange {
        id: row.get("id")?,
        replay_of: row.get("replay_of")?,
        nonce_reused_of: row.get("nonce_reused_of")?,
        // A store not yet opened by a writer of schema 7 (readers do not migrate) has no
        // such column: nothing was sent elsewhere that it could say.
        sent_to: match row.get("sent_to") {
            Err(rusqlite::Error::InvalidColumnName(_)) => None,
            other => other?,
        },
        request: RequestRecord {
            method: row.get("method")?,
            target: row.get("target")?,
            http_version: row.get("http_version")?,
            host: row.get("host")?,
            public_url,
            headers: request_headers,
            body: row.get::<_, Vec<u8>>("request_body")?.into(),
            body_truncated: row.get("request_body_truncated")?,
            client_addr: row.get("client_addr")?,
            tls: TlsInfo {
                version: row.get("tls_version")?,
                alpn: row.get("alpn")?,
                sni: row.get("sni")?,
            },
        },
        verdict,
        event: row.get("event")?,
        call_uuid: row.get("call_uuid")?,
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Pending),
        error: row.get("error")?,
        response,
        timings: Timings {
            received_us: row.get("received_at_us")?,
            forwarded_us: row.get("forwarded_at_us")?,
            first_byte_us: row.get("first_byte_at_us")?,
            done_us: row.get("done_at_us")?,
        },
        flags: parse_flags(&flags),
        findings: parse_findings(&row.get::<_, String>("findings")?),
    })
}

/// The rows [`StoreReader::tally`] counts one by one; each `WHERE` is its partial index's.
const TALLY_UNUSUAL_VERDICTS: &str =
    "SELECT signature, count(*) FROM exchanges WHERE signature <> 'valid' GROUP BY signature";
const TALLY_UNUSUAL_STATUSES: &str = "SELECT status, count(*) FROM exchanges \
     WHERE status IS NULL OR status < 200 OR status >= 300 GROUP BY status";
/// The same index's condition, so that it serves this too.
const TALLY_PENDING_IDS: &str = "SELECT id FROM exchanges \
     WHERE (status IS NULL OR status < 200 OR status >= 300) \
     AND status IS NULL AND outcome = 'pending' ORDER BY id DESC LIMIT ?1";
/// The oldest exchange still under way: pending, and not left so by a process that died.
/// Searched in the partial index of unusual statuses (pending rows have none).
const FIRST_UNDER_WAY: &str = "SELECT min(id) FROM exchanges \
     WHERE (status IS NULL OR status < 200 OR status >= 300) \
     AND status IS NULL AND outcome = 'pending' \
     AND ',' || flags || ',' NOT LIKE '%,interrupted,%'";
/// Pending exchanges a tally names (they are few: callbacks the local server is thinking
/// about, and those a crash left pending).
pub const TALLY_PENDING: usize = 1000;

/// Counts over the whole store, for the inspector's top bar and health view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    /// The newest exchange counted: every one up to it is in the counts, none after it.
    pub newest: Option<ExchangeId>,
    /// Exchanges still pending when counted (under "no status"), at most [`TALLY_PENDING`]:
    /// their end moves them to their answer's class.
    pub pending: Vec<ExchangeId>,
    /// Index 0: no status; 1–5: 1xx–5xx (other statuses count with the nearest class).
    pub by_class: [u64; 6],
    /// valid, invalid, unsigned, unchecked.
    pub by_verdict: [u64; 4],
}

impl Tally {
    /// Where a status counts in [`Tally::by_class`].
    pub fn class_index(status: Option<u16>) -> usize {
        status.map_or(0, |s| (s / 100).clamp(1, 5) as usize)
    }

    /// Where a verdict counts in [`Tally::by_verdict`].
    pub fn verdict_index(verdict: VerdictStatus) -> usize {
        match verdict {
            VerdictStatus::Valid => 0,
            VerdictStatus::Invalid => 1,
            VerdictStatus::Unsigned => 2,
            VerdictStatus::Unchecked => 3,
        }
    }
}

#[cfg(test)]
mod follow_tests {
    use super::*;
    use crate::store::Store;

    /// A new store at `path` holding one exchange, written into the file and closed.
    fn store_with_one_row(path: &Path) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = Store::open(path).unwrap();
        let exchange = std::sync::Arc::new(crate::exchange::Exchange::received(
            Default::default(),
            crate::signature::Verdict::bare(VerdictStatus::Unsigned),
            0,
        ));
        runtime.block_on(store.insert(exchange)).unwrap();
        runtime.block_on(store.flush_into_file());
    }

    #[test]
    fn a_reader_follows_its_path_to_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let mut reader = StoreReader::open(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(!reader.follow_the_path().unwrap(), "nothing moved");

        // The file goes; for a moment there is none (the reader stays as it is)...
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(reader.follow_the_path().is_err());
        // ...then a new store with a row is there: the reader reads it.
        store_with_one_row(&path);
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(reader.follow_the_path().unwrap());
        assert_eq!(reader.count().unwrap(), 1);
    }

    /// Rows up to the first still waiting for its local server have ended; a row its
    /// process left pending for good (`interrupted`) does not hold the mark back.
    #[test]
    fn settled_through_stops_before_the_first_exchange_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = Store::open(&path).unwrap();
        let reader = StoreReader::open(&path).unwrap();
        assert_eq!(reader.settled_through().unwrap(), 0, "an empty store");
        let received = || {
            std::sync::Arc::new(crate::exchange::Exchange::received(
                Default::default(),
                crate::signature::Verdict::bare(VerdictStatus::Unsigned),
                0,
            ))
        };
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut exchange = received();
            let id = runtime.block_on(store.insert(exchange.clone())).unwrap().id;
            std::sync::Arc::make_mut(&mut exchange).id = Some(id);
            ids.push((id, exchange));
        }
        let end = |exchange: &std::sync::Arc<crate::exchange::Exchange>| {
            let mut ended = (**exchange).clone();
            ended.failed(crate::exchange::Outcome::UpstreamError, 502, "x".into());
            runtime
                .block_on(store.finish(std::sync::Arc::new(ended)))
                .unwrap();
        };
        end(&ids[0].1);
        end(&ids[2].1);
        assert_eq!(reader.settled_through().unwrap(), ids[0].0);
        // As `orphans` flags it when its process is gone.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE exchanges SET flags = 'interrupted' WHERE id = ?1",
                [ids[1].0],
            )
            .unwrap();
        assert_eq!(reader.settled_through().unwrap(), ids[2].0);
    }

    /// `show` and `export` on a store a newer writer has not opened yet (readers do not
    /// migrate): a row of schema 6 reads whole, without `sent_to`.
    #[test]
    fn a_store_of_the_previous_schema_reads_without_the_newer_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        store_with_one_row(&path);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE exchanges DROP COLUMN sent_to; PRAGMA user_version = 6;")
            .unwrap();
        drop(conn);
        let reader = StoreReader::open(&path).unwrap();
        let row = reader.get(1).unwrap().expect("the row");
        assert_eq!(row.sent_to, None);
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::filter::Filter;
    use rusqlite::types::Value;

    fn plan(reader: &StoreReader, query: &str, params: Vec<Value>) -> Vec<String> {
        reader
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// On a million rows a scan takes seconds; these queries are answered by indexes.
    #[test]
    fn counts_and_call_lookups_read_indexes_not_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(crate::store::Store::open(&path).unwrap());
        let reader = StoreReader::open(&path).unwrap();
        let call = Filter::parse("call:7D1C").unwrap().to_sql();
        let letter_first = Filter::parse("call:Ab").unwrap().to_sql();
        let exact = format!(
            "SELECT id FROM exchanges WHERE {}",
            crate::store::calls::ONE_CALL
        );
        for (query, params, index) in [
            (
                TALLY_UNUSUAL_VERDICTS.to_string(),
                vec![],
                "exchanges_unusual_signature",
            ),
            (
                TALLY_UNUSUAL_STATUSES.to_string(),
                vec![],
                "exchanges_unusual_status",
            ),
            (
                FIRST_UNDER_WAY.to_string(),
                vec![],
                "exchanges_unusual_status",
            ),
            (
                format!("SELECT id FROM exchanges WHERE {}", call.sql),
                call.params,
                "exchanges_call_uuid_lower",
            ),
            (
                format!("SELECT id FROM exchanges WHERE {}", letter_first.sql),
                letter_first.params,
                "exchanges_call_uuid_lower",
            ),
            (
                exact,
                vec![Value::Text("x".into())],
                "exchanges_call_uuid_lower",
            ),
        ] {
            let steps = plan(&reader, &query, params);
            assert!(
                steps.iter().any(|step| step.contains(index)),
                "{query}: {steps:?}"
            );
        }
    }
}
