//! Finding exchanges the store already holds: a HAR file imported again (a newer export of
//! the same store, or one exported from this very store) must not record its exchanges twice.
//!
//! The same exchange is the same request received at the same microsecond: method, target,
//! header block and body, byte for byte. What the store later learned about it (flags, a
//! finished answer) does not make it another one.

use std::collections::HashSet;

use rusqlite::params;

use super::calls::ONE_CALL;
use super::{StoreError, StoreReader};
use crate::exchange::{Exchange, ExchangeId};

impl StoreReader {
    /// For each of `exchanges`, in order, the id of the row that already records it, or
    /// `None`. Two identical entries find two rows (one each), not the same one twice.
    ///
    /// A callback names its call, and the `CallUUID` index finds its candidates. The
    /// others (a health check, a request of another API) are looked for in one pass over the
    /// rows without a call, within the entries' time span.
    pub fn already_recorded(
        &self,
        exchanges: &[Exchange],
    ) -> Result<Vec<Option<ExchangeId>>, StoreError> {
        let mut claimed = HashSet::new();
        let mut found = vec![None; exchanges.len()];
        let mut of_a_call = self.conn.prepare(&format!(
            "SELECT id FROM exchanges WHERE {ONE_CALL} AND received_at_us = ?2 AND method = ?3
             AND target = ?4 AND request_headers = ?5 AND request_body = ?6 ORDER BY id"
        ))?;
        for (slot, exchange) in found.iter_mut().zip(exchanges) {
            let Some(call_uuid) = &exchange.call_uuid else {
                continue;
            };
            let request = &exchange.request;
            let ids = of_a_call.query_map(
                params![
                    call_uuid,
                    exchange.timings.received_us,
                    request.method,
                    request.target,
                    request.headers.to_block(),
                    &request.body[..],
                ],
                |row| row.get::<_, ExchangeId>(0),
            )?;
            *slot = first_unclaimed(ids, &mut claimed)?;
        }

        let callless: Vec<usize> = (0..exchanges.len())
            .filter(|&i| exchanges[i].call_uuid.is_none())
            .collect();
        let span = callless.iter().map(|&i| exchanges[i].timings.received_us);
        let (Some(earliest), Some(latest)) = (span.clone().min(), span.max()) else {
            return Ok(found);
        };
        // One pass, reading two columns of each row: the bodies of the few rows received at
        // the same microsecond as an entry are compared after it, by id.
        let wanted: HashSet<i64> = callless
            .iter()
            .map(|&i| exchanges[i].timings.received_us)
            .collect();
        let mut in_span = self.conn.prepare(
            "SELECT id, received_at_us FROM exchanges
             WHERE call_uuid IS NULL AND received_at_us BETWEEN ?1 AND ?2 ORDER BY id",
        )?;
        let mut at_the_same_time: Vec<(ExchangeId, i64)> = Vec::new();
        for row in in_span.query_map([earliest, latest], |row| Ok((row.get(0)?, row.get(1)?)))? {
            let (id, received_us) = row?;
            if wanted.contains(&received_us) {
                at_the_same_time.push((id, received_us));
            }
        }
        let mut same_request = self.conn.prepare(
            "SELECT 1 FROM exchanges WHERE id = ?1 AND method = ?2 AND target = ?3
             AND request_headers = ?4 AND request_body = ?5",
        )?;
        for i in callless {
            let exchange = &exchanges[i];
            let request = &exchange.request;
            let headers = request.headers.to_block();
            let mut same = Vec::new();
            for &(id, received_us) in &at_the_same_time {
                if received_us == exchange.timings.received_us
                    && same_request.exists(params![
                        id,
                        request.method,
                        request.target,
                        headers,
                        &request.body[..],
                    ])?
                {
                    same.push(Ok(id));
                }
            }
            found[i] = first_unclaimed(same.into_iter(), &mut claimed)?;
        }
        Ok(found)
    }
}

fn first_unclaimed(
    ids: impl Iterator<Item = rusqlite::Result<ExchangeId>>,
    claimed: &mut HashSet<ExchangeId>,
) -> Result<Option<ExchangeId>, StoreError> {
    for id in ids {
        let id = id?;
        if claimed.insert(id) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}
