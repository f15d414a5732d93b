//! The writer thread: drains the queue in batches, one transaction per batch, and acknowledges
//! inserts only after their commit. A failed batch is reported and the thread keeps going, so a
//! full disk or a locked file never stops the proxy.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{Inserted, Op, StoreHealth};
use crate::exchange::{Exchange, ExchangeId, Flag};

/// Upper bound of operations per transaction: large enough to amortise the commit, small
/// enough that an acknowledgement never waits long behind a burst.
const MAX_BATCH: usize = 512;

type Ack = oneshot::Sender<Result<Inserted, String>>;

pub(super) fn run(
    mut conn: Connection,
    mut queue: mpsc::UnboundedReceiver<Op>,
    health: &StoreHealth,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(&mut conn, &mut batch, health);
    }
    if let Err(e) = conn.pragma_update(None, "optimize", "") {
        tracing::debug!("store optimize at exit failed: {e}");
    }
}

fn write_batch(conn: &mut Connection, batch: &mut Vec<Op>, health: &StoreHealth) {
    let mut acks: Vec<(Ack, Result<Inserted, String>)> = Vec::new();
    let mut flushes = Vec::new();
    let outcome = conn
        .transaction()
        .map_err(|e| e.to_string())
        .and_then(|tx| {
            for op in batch.drain(..) {
                match op {
                    Op::Insert { exchange, ack } => {
                        let result = insert(&tx, &exchange).map_err(|e| e.to_string());
                        if let Err(e) = &result {
                            let request = &exchange.request;
                            health.note(&format!(
                                "recording a {} {}: {e}",
                                request.method, request.target
                            ));
                        }
                        acks.push((ack, result));
                    }
                    Op::Complete(exchange) => {
                        if let Err(e) = complete(&tx, &exchange) {
                            let id = exchange.id.unwrap_or_default();
                            health.note(&format!("recording the end of exchange {id}: {e}"));
                        }
                    }
                    Op::Flush(done) => flushes.push(done),
                }
            }
            tx.commit().map_err(|e| e.to_string())
        });
    if let Err(error) = &outcome {
        health.note(&format!(
            "commit failed, {} inserts lost: {error}",
            acks.len()
        ));
    }
    for (ack, result) in acks {
        let result = match &outcome {
            Ok(()) => result,
            Err(error) => Err(error.clone()),
        };
        let _ = ack.send(result);
    }
    for done in flushes {
        let _ = done.send(());
    }
    batch.clear();
}

fn flags_text(flags: &[Flag]) -> String {
    flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The findings as the JSON array the `findings` column holds.
fn findings_json(exchange: &Exchange) -> String {
    if exchange.findings.is_empty() {
        return "[]".into(); // the common case, without serde
    }
    serde_json::to_string(&exchange.findings).unwrap_or_else(|_| "[]".into())
}

/// The key under which a signed request's nonce is remembered: nonce and signature together,
/// so two different callbacks that happen to share a nonce are not confused.
fn nonce_key(exchange: &Exchange) -> Option<String> {
    let verdict = &exchange.verdict;
    match (&verdict.nonce, &verdict.signature) {
        (Some(nonce), Some(signature)) => Some(format!("{nonce} {signature}")),
        _ => None,
    }
}

fn insert(tx: &Transaction<'_>, exchange: &Exchange) -> rusqlite::Result<Inserted> {
    let nonce_key = nonce_key(exchange);
    let nonce_reused_of: Option<ExchangeId> = match &nonce_key {
        Some(key) => tx
            .prepare_cached("SELECT id FROM exchanges WHERE nonce_key = ?1 ORDER BY id LIMIT 1")?
            .query_row([key], |row| row.get(0))
            .optional()?,
        None => None,
    };
    let mut flags = exchange.flags.clone();
    if nonce_reused_of.is_some() && !flags.contains(&Flag::NonceReused) {
        flags.push(Flag::NonceReused);
    }
    let request = &exchange.request;
    let response = exchange.response.as_ref();
    let verdict_json = serde_json::to_string(&exchange.verdict).unwrap_or_else(|_| "{}".into());
    let mut statement = tx.prepare_cached(
        "INSERT INTO exchanges (
            replay_of, nonce_reused_of, received_at_us, forwarded_at_us, first_byte_at_us,
            done_at_us, duration_ms, client_addr, tls_version, alpn, sni, http_version, method,
            target, path, host, public_url, request_headers, request_body, request_body_truncated,
            event, call_uuid, signature, signature_scheme, signature_detail, nonce_key, outcome,
            error, status, response_headers, response_body, flags, findings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)",
    )?;
    statement.execute(params![
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
        request.headers.to_block(),
        &request.body[..],
        request.body_truncated,
        exchange.event,
        exchange.call_uuid,
        exchange.verdict.status.as_str(),
        exchange.verdict.scheme.map(|s| s.as_str()),
        verdict_json,
        nonce_key,
        exchange.outcome.as_str(),
        exchange.error,
        response.map(|r| r.status),
        response.map(|r| r.headers.to_block()),
        response.map(|r| &r.body[..]),
        flags_text(&flags),
        findings_json(exchange),
    ])?;
    Ok(Inserted {
        id: tx.last_insert_rowid(),
        nonce_reused_of,
    })
}

fn complete(tx: &Transaction<'_>, exchange: &Exchange) -> rusqlite::Result<()> {
    let response = exchange.response.as_ref();
    tx.prepare_cached(
        "UPDATE exchanges SET forwarded_at_us = ?2, first_byte_at_us = ?3, done_at_us = ?4,
            duration_ms = ?5, outcome = ?6, error = ?7, status = ?8, response_headers = ?9,
            response_body = ?10, flags = ?11, findings = ?12
         WHERE id = ?1",
    )?
    .execute(params![
        exchange.id,
        exchange.timings.forwarded_us,
        exchange.timings.first_byte_us,
        exchange.timings.done_us,
        exchange.timings.duration_ms(),
        exchange.outcome.as_str(),
        exchange.error,
        response.map(|r| r.status),
        response.map(|r| r.headers.to_block()),
        response.map(|r| &r.body[..]),
        flags_text(&exchange.flags),
        findings_json(exchange),
    ])?;
    Ok(())
}
