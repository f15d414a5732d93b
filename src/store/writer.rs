//! The writer thread: drains the queue in batches, one transaction per batch, and acknowledges
//! inserts only after their commit. A failed batch is reported and the thread keeps going, so a
//! full disk or a locked file never stops the proxy; what did not commit waits in
//! [`Deferred`] and is retried with backoff until the store accepts it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{
    params, CachedStatement, Connection, OptionalExtension, Transaction, TransactionBehavior,
};
use tokio::sync::mpsc;

use super::checkpoint::{self, WalRestart};
use super::deferred::{is_transient, Deferred, Pending};
use super::identity::FileWatch;
use super::latest_nonces;
use super::nonce_summary::NonceSummary;
use super::recent_nonces::RecentNonces;
use super::row::{flags_text, RequestColumns, Row};
use super::{Ack, Inserted, Op, StoreHealth};
use crate::exchange::{Exchange, ExchangeId, Flag};

/// Upper bound of operations per transaction: large enough to amortise the commit, small
/// enough that an acknowledgement never waits long behind a burst.
const MAX_BATCH: usize = 512;

/// While writes are deferred, how often the queue is looked at between retries.
const POLL: Duration = Duration::from_millis(10);

/// What the writer does next.
enum Next {
    Op(Op),
    /// Nothing new, but deferred writes are due.
    Retry,
    Closed,
}

pub(super) fn run(
    conn: Connection,
    mut queue: mpsc::UnboundedReceiver<Op>,
    health: &StoreHealth,
    deferred: Deferred,
    checkpoints: Arc<checkpoint::Shared>,
    summary: Option<Arc<NonceSummary>>,
) {
    let mut writer = Writer::new(conn, health, deferred, checkpoints, summary);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        match next(&mut queue, &writer.deferred) {
            Next::Op(first) => {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
            }
            Next::Retry => {}
            Next::Closed => break,
        }
        writer.follow_the_file();
        writer.write_batch(&mut batch);
        writer.restart_wal_if_due();
    }
    writer.finish();
}

/// The writer's connection and what it keeps between transactions.
struct Writer<'h> {
    conn: Connection,
    health: &'h StoreHealth,
    /// What the store refused, waiting for the next attempt.
    deferred: Deferred,
    /// Every nonce header's key of the latest rows (see `recent_nonces`).
    recent: RecentNonces,
    /// Told the deciding nonce key of every row committed (`--reject-replays`).
    summary: Option<Arc<NonceSummary>>,
    checkpoints: Arc<checkpoint::Shared>,
    restart: WalRestart,
    /// The store's file, to notice it deleted or replaced (none for an in-memory store).
    file: Option<FileWatch>,
}

impl<'h> Writer<'h> {
    fn new(
        conn: Connection,
        health: &'h StoreHealth,
        deferred: Deferred,
        checkpoints: Arc<checkpoint::Shared>,
        summary: Option<Arc<NonceSummary>>,
    ) -> Writer<'h> {
        let restart = WalRestart::new(&conn, checkpoints.clone());
        let file = conn
            .path()
            .filter(|p| !p.is_empty())
            .map(|p| FileWatch::new(Path::new(p)));
        let mut recent = RecentNonces::new();
        // What the last run remembered: its callbacks' other headers are in no index.
        match latest_nonces::latest(&conn, latest_nonces::AT_START) {
            Ok(latest) => {
                for stored in latest {
                    recent.written(&stored.keys, stored.received_us, stored.id);
                }
                recent.committed();
            }
            Err(e) => tracing::warn!(
                "the latest callbacks' nonces could not be read ({e}): a replay of one of \
                 them with another signature header than the one stored is not recognised"
            ),
        }
        Writer {
            conn,
            health,
            deferred,
            recent,
            summary,
            checkpoints,
            restart,
            file,
        }
    }

    /// When the store's file was deleted or replaced, goes on in a new store at its path.
    fn follow_the_file(&mut self) {
        let Some(watch) = self.file.as_mut() else {
            return;
        };
        let Some(what) = watch.moved() else {
            return;
        };
        if let Some(fresh) = start_again(watch, what, self.health) {
            self.conn = fresh;
            self.recent.forget_all();
            self.restart = WalRestart::new(&self.conn, self.checkpoints.clone());
        }
        // What is at the path now is not what was summed up (even if no new store could be
        // started there: readers look there).
        if let Some(summary) = &self.summary {
            summary.file_replaced();
        }
        // Said once: watched afresh from here (a failed start is not retried).
        *watch = FileWatch::new(watch.path());
    }

    fn restart_wal_if_due(&mut self) {
        self.restart.run_if_due(&self.conn);
    }

    /// The queue is closed: a last chance for what the store refused, then say what is lost.
    fn finish(mut self) {
        if !self.deferred.is_empty() {
            self.write_batch(&mut Vec::new());
            if !self.deferred.is_empty() {
                self.health.lose(
                    self.deferred.len(),
                    "the store still refused them when the tool stopped",
                );
            }
        }
        if let Err(e) = self.conn.pragma_update(None, "optimize", "") {
            tracing::debug!("store optimize at exit failed: {e}");
        }
    }

    /// One transaction: the deferred writes first (oldest first), then `batch`. The deciding
    /// nonce keys of the rows it commits go to `summary` before anyone hears of the commit.
    ///
    /// A transient error (locked, full, read-only, I/O) on any statement aborts the whole
    /// transaction: SQLite may already have rolled it back by itself, and the statements after
    /// it would then run, and commit, one by one outside it. Every write of the batch is then
    /// answered with the error, and every end of an exchange is deferred (a failed insert of
    /// a request still in flight is not: its end follows, without an id, and is written
    /// whole).
    fn write_batch(&mut self, batch: &mut Vec<Op>) {
        let Writer {
            conn,
            health,
            deferred,
            recent,
            summary,
            ..
        } = self;
        let summary = summary.as_ref();
        let fresh = batch.iter().any(|op| !matches!(op, Op::Flush(_)));
        if !fresh && deferred.is_empty() {
            // Only flushes: nothing to write, so no transaction (and no wait for a lock).
            for op in batch.drain(..) {
                if let Op::Flush(done) = op {
                    let _ = done.send(());
                }
            }
            return;
        }
        let retried = deferred.take();
        let retrying = retried.len();
        let mut acks: Vec<(Ack, Result<Inserted, String>)> = Vec::new();
        let mut flushes = Vec::new();
        // What must be written again if this transaction does not commit.
        let mut keep: Vec<Pending> = Vec::new();
        let mut failure: Option<rusqlite::Error> = None;
        // IMMEDIATE: take the write lock first, waiting up to the busy timeout for another
        // process's lock. A deferred transaction would start reading (the nonce lookup) and
        // then fail to upgrade to a write at once, without waiting at all.
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => Some(tx),
            Err(e) => {
                failure = Some(e);
                None
            }
        };
        let mut statements = tx.as_ref().and_then(|tx| match Statements::prepare(tx) {
            Ok(statements) => Some(statements),
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        let ops = retried
            .into_iter()
            .map(Pending::into_op)
            .chain(batch.drain(..));
        for op in ops {
            let live = statements.as_mut().filter(|_| failure.is_none());
            match op {
                Op::Insert { exchange, row, ack } => {
                    let inserted =
                        live.map(|statements| statements.insert(&exchange, &row, recent));
                    let result = match inserted {
                        None => Err(String::new()), // answered with the batch's failure below
                        Some(Ok(inserted)) => Ok(inserted),
                        Some(Err(e)) if is_transient(&e) => {
                            failure = Some(e);
                            Err(String::new())
                        }
                        Some(Err(e)) => {
                            let request = &exchange.request;
                            health.note(&format!(
                                "recording a {} {}: {e}",
                                request.method, request.target
                            ));
                            Err(e.to_string())
                        }
                    };
                    drop(exchange);
                    acks.push((ack, result));
                }
                Op::End { exchange, row, ack } => {
                    let ended = live.map(|statements| statements.end(&exchange, &row, recent));
                    let result = match ended {
                        Some(Err(e)) if is_transient(&e) => {
                            failure = Some(e);
                            Err(String::new())
                        }
                        Some(Err(e)) => {
                            let request = &exchange.request;
                            health.lose(
                                1,
                                &format!("recording a {} {}: {e}", request.method, request.target),
                            );
                            if let Some(ack) = ack {
                                acks.push((ack, Err(e.to_string())));
                            }
                            continue;
                        }
                        None => Err(String::new()),
                        Some(Ok(inserted)) => Ok(inserted),
                    };
                    keep.push(Pending(exchange));
                    if let Some(ack) = ack {
                        acks.push((ack, result));
                    }
                }
                Op::Flush(done) => flushes.push(done),
            }
        }
        let committed_keys = statements
            .as_mut()
            .map(|statements| std::mem::take(&mut statements.inserted_keys))
            .unwrap_or_default();
        drop(statements); // they borrow the transaction
        match tx {
            Some(tx) if failure.is_none() => {
                // Before the commit, so that no moment finds a key in the store and not in the
                // summary (after a rollback, the extra keys only cost a lookup each).
                if let Some(summary) = summary {
                    summary.committing(&committed_keys);
                }
                failure = tx.commit().err();
            }
            _ => {} // dropped: rolled back
        }
        match &failure {
            None => {
                recent.committed();
                if let Some(summary) = summary {
                    summary.committed(&committed_keys);
                }
            }
            Some(_) => recent.rolled_back(),
        }
        match &failure {
            None => {
                // Before the answers: a waiting pipeline then owns its exchange alone again.
                drop(keep);
                if retrying > 0 {
                    tracing::warn!(
                        "the store accepts writes again: {retrying} deferred writes recorded"
                    );
                }
                deferred.succeeded();
            }
            Some(error) => {
                let waiting = keep.len();
                if is_transient(error) {
                    let mut dropped = 0;
                    for pending in keep {
                        if !deferred.keep(pending) {
                            dropped += 1;
                        }
                    }
                    if dropped > 0 {
                        health.lose(dropped, &deferred.full_reason());
                    }
                    deferred.failed();
                } else if waiting > 0 {
                    health.lose(waiting, &error.to_string());
                }
                // Retries that fail again are not news; a failure of new writes is.
                if fresh || retrying == 0 {
                    health.note(&format!(
                        "commit failed: {error} ({} writes wait in memory and are retried)",
                        deferred.len()
                    ));
                } else {
                    tracing::debug!("retrying {retrying} deferred store writes failed: {error}");
                }
                let message = error.to_string();
                for (_, result) in &mut acks {
                    *result = Err(message.clone());
                }
            }
        }
        health.set_deferred(deferred.len());
        for (ack, result) in acks {
            let _ = ack.send(result);
        }
        for done in flushes {
            let _ = done.send(());
        }
        batch.clear();
    }
}

/// The store's file `what` (deleted, replaced): a new store at the same path, so that what
/// follows is recorded where `list` and the inspector look. What was committed since the file
/// went away (at most a moment's worth) went with it, and the message says so.
fn start_again(watch: &FileWatch, what: &str, health: &StoreHealth) -> Option<Connection> {
    let path = watch.path().display();
    match super::connect(watch.path()) {
        Ok(conn) => {
            health.announce(format!(
                "the store file {path} {what} while recording; recording goes on in a new \
                 store there (the last moment's exchanges went with the old file)"
            ));
            Some(conn)
        }
        Err(e) => {
            health.announce(format!(
                "the store file {path} {what} while recording, and a new one cannot be \
                 started ({e}); exchanges go into the old file, which nothing can read"
            ));
            None
        }
    }
}

/// Waits for the next operation; with deferred writes waiting, only until their retry is due
/// (the channel has no blocking receive with a timeout, hence the short polls, which happen
/// only while the store refuses writes).
fn next(queue: &mut mpsc::UnboundedReceiver<Op>, deferred: &Deferred) -> Next {
    if deferred.is_empty() {
        return queue.blocking_recv().map_or(Next::Closed, Next::Op);
    }
    loop {
        match queue.try_recv() {
            Ok(op) => return Next::Op(op),
            Err(mpsc::error::TryRecvError::Disconnected) => return Next::Closed,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let now = Instant::now();
        if now >= deferred.retry_at() {
            return Next::Retry;
        }
        std::thread::sleep((deferred.retry_at() - now).min(POLL));
    }
}

/// The writer's statements, prepared once per transaction: the statement cache would hash
/// and compare each statement's whole SQL text for every row.
struct Statements<'tx> {
    first_with_nonce: CachedStatement<'tx>,
    /// Points the exchanges received after a new one with its nonce at it.
    reused_later: CachedStatement<'tx>,
    insert: CachedStatement<'tx>,
    complete: CachedStatement<'tx>,
    /// The deciding nonce key of each row inserted (see `nonce_summary`).
    inserted_keys: Vec<i64>,
}

impl<'tx> Statements<'tx> {
    fn prepare(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Statements {
            // The first received: an exchange may be written after one received later (an
            // import bringing in an original after its replays, a slow body), and only what
            // came after the first reused its nonce.
            first_with_nonce: tx.prepare_cached(
                "SELECT id, received_at_us FROM exchanges WHERE nonce_key = ?1
                 ORDER BY received_at_us, id LIMIT 1",
            )?,
            reused_later: tx.prepare_cached(
                "UPDATE exchanges SET nonce_reused_of = ?1,
                    flags = CASE
                        WHEN flags = '' THEN 'nonce_reused'
                        WHEN ',' || flags || ',' LIKE '%,nonce_reused,%' THEN flags
                        ELSE flags || ',nonce_reused' END
                 WHERE nonce_key = ?2 AND received_at_us > ?3",
            )?,
            insert: tx.prepare_cached(
                "INSERT INTO exchanges (
                    replay_of, nonce_reused_of, received_at_us, forwarded_at_us,
                    first_byte_at_us, done_at_us, duration_ms, client_addr, tls_version, alpn,
                    sni, http_version, method, target, path, host, public_url, request_headers,
                    request_body, request_body_truncated, event, call_uuid, signature,
                    signature_scheme, signature_detail, nonce_key, outcome, error, status,
                    response_headers, response_body, flags, findings, sent_to)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31,
                    ?32, ?33, ?34)",
            )?,
            // The end's flags, and `nonce_reused` if the row has it: a replay whose original
            // was written after it (`reused_later`) learnt it in the store only.
            complete: tx.prepare_cached(
                "UPDATE exchanges SET forwarded_at_us = ?2, first_byte_at_us = ?3,
                    done_at_us = ?4, duration_ms = ?5, outcome = ?6, error = ?7, status = ?8,
                    response_headers = ?9, response_body = ?10, findings = ?12,
                    flags = CASE
                        WHEN ',' || flags || ',' NOT LIKE '%,nonce_reused,%' THEN ?11
                        WHEN ',' || ?11 || ',' LIKE '%,nonce_reused,%' THEN ?11
                        WHEN ?11 = '' THEN 'nonce_reused'
                        ELSE ?11 || ',nonce_reused' END
                 WHERE id = ?1",
            )?,
            inserted_keys: Vec::new(),
        })
    }

    fn insert(
        &mut self,
        exchange: &Exchange,
        row: &Row,
        recent: &mut RecentNonces,
    ) -> rusqlite::Result<Inserted> {
        // `Row::of` leaves the request side out only for an exchange that already has a row;
        // should one be inserted again anyway, it is still written whole.
        let encoded_here;
        let columns = match &row.request {
            Some(columns) => columns,
            None => {
                encoded_here = RequestColumns::of(exchange);
                &encoded_here
            }
        };
        let received_us = exchange.timings.received_us;
        let first: Option<(ExchangeId, i64)> = match &columns.nonce_key {
            Some(key) => self
                .first_with_nonce
                .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?,
            None => None,
        };
        // The store knows the deciding header's nonce; the writer's memory every header's,
        // lately (see `recent_nonces`).
        let in_store = first
            .filter(|&(_, first_received_us)| first_received_us <= received_us)
            .map(|(id, first_received_us)| (first_received_us, id));
        let nonce_reused_of = in_store
            .into_iter()
            .chain(recent.first_before(&columns.nonce_keys, received_us))
            .min()
            .map(|(_, id)| id);
        // Written after exchanges received later with the same nonce: they reused this one's.
        let first_of_its_nonce = first.is_some() && in_store.is_none();
        let reflagged =
            (nonce_reused_of.is_some() && !exchange.has_flag(Flag::NonceReused)).then(|| {
                let mut flags = exchange.flags.clone();
                flags.push(Flag::NonceReused);
                flags_text(&flags)
            });
        let request = &exchange.request;
        let response = exchange.response.as_ref();
        let id = self.insert.insert(params![
            exchange.replay_of,
            nonce_reused_of,
            exchange.timings.received_us,
            exchange.timings.forwarded_us,
            exchange.timings.first_byte_us,
            exchange.timings.done_us,
            exchange.timings.duration_ms(),
            request.client_addr,
            request.tls.version,
            request.tls.alpn,
            request.tls.sni,
            request.http_version,
            request.method,
            request.target,
            request.path(),
            request.host,
            request.public_url,
            columns.headers,
            &request.body[..],
            request.body_truncated,
            exchange.event,
            exchange.call_uuid,
            exchange.verdict.status.as_str(),
            exchange.verdict.scheme.map(|s| s.as_str()),
            columns.signature_detail,
            columns.nonce_key,
            exchange.outcome.as_str(),
            exchange.error,
            response.map(|r| r.status),
            row.response_headers,
            response.map(|r| &r.body[..]),
            reflagged.as_ref().unwrap_or(&row.flags),
            row.findings,
            exchange.sent_to,
        ])?;
        // Now: the row may commit even if what follows fails (an error that is not transient
        // fails this write alone).
        if columns.nonce_key.is_some() {
            // The first of `nonce_keys` is the deciding header's, the stored one's.
            self.inserted_keys.extend(columns.nonce_keys.first());
        }
        if first_of_its_nonce {
            self.reused_later
                .execute(params![id, columns.nonce_key, received_us])?;
        }
        recent.written(&columns.nonce_keys, received_us, id);
        Ok(Inserted {
            id,
            nonce_reused_of,
        })
    }

    /// The end of an exchange: into its row, or the whole exchange as a new row.
    fn end(
        &mut self,
        exchange: &Exchange,
        row: &Row,
        recent: &mut RecentNonces,
    ) -> rusqlite::Result<Inserted> {
        let Some(id) = exchange.id else {
            return self.insert(exchange, row, recent);
        };
        let response = exchange.response.as_ref();
        self.complete.execute(params![
            id,
            exchange.timings.forwarded_us,
            exchange.timings.first_byte_us,
            exchange.timings.done_us,
            exchange.timings.duration_ms(),
            exchange.outcome.as_str(),
            exchange.error,
            response.map(|r| r.status),
            row.response_headers,
            response.map(|r| &r.body[..]),
            row.flags,
            row.findings,
        ])?;
        Ok(Inserted {
            id,
            nonce_reused_of: exchange.nonce_reused_of,
        })
    }
}
