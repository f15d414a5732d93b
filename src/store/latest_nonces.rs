//! The nonce keys of every signature header of the latest callbacks in the store, worked out
//! again from their stored headers: what the writer's memory ([`super::recent_nonces`]) and
//! the replay guard's held before a restart.
//!
//! The store indexes only the deciding header's nonce (one index entry per callback; one more
//! would cost a fifth of the throughput). Without this, a captured callback resent after a
//! restart with only its V2 (or -MA-) header, and any body, would pass as new.

use rusqlite::Connection;

use super::row::nonce_keys;
use crate::exchange::{Exchange, ExchangeId, Headers, RequestRecord};
use crate::signature::{stored, Verdict, VerdictStatus};

/// How many of the latest signed callbacks are read at start-up: about what the writer
/// remembers, in a fraction of a second.
pub const AT_START: usize = 16_384;

/// At most this many rows are looked at per signed callback wanted: unsigned ones between
/// them are passed over, up to a bound.
const ROWS_PER_SIGNED: i64 = 4;

/// One stored callback's keys.
pub struct StoredKeys {
    pub id: ExchangeId,
    pub received_us: i64,
    pub keys: Vec<i64>,
}

/// The keys of the latest `limit` callbacks that carried a signature, oldest first. A row
/// whose stored verdict cannot be read gives none.
pub fn latest(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<StoredKeys>> {
    // Among the latest rows only (a rowid range, not the whole table backwards): a store of
    // mostly unsigned callbacks would otherwise be read whole at every start.
    let mut statement = conn.prepare(
        "SELECT id, received_at_us, request_headers, public_url, signature_detail
         FROM exchanges
         WHERE id > (SELECT coalesce(max(id), 0) FROM exchanges) - ?2
           AND nonce_key IS NOT NULL
         ORDER BY id DESC LIMIT ?1",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map([limit, limit.saturating_mul(ROWS_PER_SIGNED)], |row| {
        let headers = Headers::from_block(&row.get::<_, Vec<u8>>(2)?);
        let public_url: String = row.get(3)?;
        let detail: String = row.get(4)?;
        let pairs = headers.to_text_pairs();
        let received = stored::Received {
            headers: &pairs,
            url: &public_url,
        };
        let verdict = stored::from_stored_json(&detail, &received)
            .unwrap_or_else(|_| Verdict::bare(VerdictStatus::Unchecked));
        let received_us: i64 = row.get(1)?;
        let exchange = Exchange::received(RequestRecord::default(), verdict, received_us);
        Ok(StoredKeys {
            id: row.get(0)?,
            received_us,
            keys: nonce_keys(&exchange),
        })
    })?;
    let mut latest = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    latest.reverse();
    Ok(latest)
}
