//! Calls: the exchanges of one Vobiz call (same `CallUUID`) as a story, for the UI's call view.

use rusqlite::Row;
use serde::Serialize;

use super::reader::summary_from_row;
use super::{ExchangeSummary, StoreError, StoreReader};

/// How far back the call list looks, in exchanges: enough for a day of development, bounded
/// so a million-row store still answers at once.
const RECENT_EXCHANGES: i64 = 20_000;

/// One call, summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallSummary {
    pub call_uuid: String,
    pub first_at_us: i64,
    pub last_at_us: i64,
    pub exchanges: u64,
    /// Vobiz events in arrival order (Ring, StartApp, ..., Hangup).
    pub events: Vec<String>,
    /// Exchanges answered with 4xx/5xx or not answered.
    pub failures: u64,
}

fn call_from_row(row: &Row<'_>) -> rusqlite::Result<CallSummary> {
    let events: Option<String> = row.get(4)?;
    Ok(CallSummary {
        call_uuid: row.get(0)?,
        first_at_us: row.get(1)?,
        last_at_us: row.get(2)?,
        exchanges: row.get(3)?,
        events: events
            .map(|e| e.split('\u{1f}').map(str::to_string).collect())
            .unwrap_or_default(),
        failures: row.get(5)?,
    })
}

/// The exchanges of the call `?1`; the lower-cased condition is what the index (schema 6)
/// answers, the exact one what the call is.
pub(super) const ONE_CALL: &str =
    "call_uuid IS NOT NULL AND lower(call_uuid) = lower(?1) AND call_uuid = ?1";

impl StoreReader {
    /// The most recent calls, newest first.
    pub fn calls(&self, limit: usize) -> Result<Vec<CallSummary>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT call_uuid, min(received_at_us), max(received_at_us), count(*),
                    group_concat(coalesce(event, '?'), char(31)),
                    sum(CASE WHEN status IS NULL OR status >= 400 THEN 1 ELSE 0 END)
             FROM (SELECT id, call_uuid, received_at_us, event, status FROM exchanges
                   WHERE call_uuid IS NOT NULL
                     AND id > (SELECT coalesce(max(id), 0) FROM exchanges) - ?1
                   ORDER BY id)
             GROUP BY call_uuid
             ORDER BY max(id) DESC
             LIMIT ?2",
        )?;
        let rows = statement.query_map([RECENT_EXCHANGES, limit as i64], call_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every exchange of one call, in arrival order.
    pub fn call(&self, call_uuid: &str) -> Result<Vec<ExchangeSummary>, StoreError> {
        let sql = format!(
            "SELECT {} FROM exchanges WHERE {ONE_CALL} ORDER BY id",
            super::reader::SUMMARY_COLUMNS
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map([call_uuid], summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
