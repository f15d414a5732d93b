//! Filtered reads: a [`Filter`] compiled to SQL, with keyset pagination on the `id` primary
//! key (`id < ?` / `id > ?`, never OFFSET), so a page costs the same at the end of a
//! million-row store as at its start.
//!
//! They run on the reader's own connection, which has the filter's SQL functions registered
//! at open, with cached statements.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::reader::{summary_from_row, SUMMARY_COLUMNS};
use super::{ExchangeSummary, StoreError, StoreReader};
use crate::exchange::ExchangeId;
use crate::filter::Filter;

impl StoreReader {
    /// Up to `limit` matching summaries with id < `before` (`None`: from the newest),
    /// returned oldest first. The next older page starts before the first id returned.
    pub fn page(
        &self,
        filter: &Filter,
        before: Option<ExchangeId>,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let clause = filter.to_sql();
        let mut params = Vec::with_capacity(clause.params.len() + 2);
        let bound = match before {
            Some(before) => {
                params.push(Value::Integer(before));
                "id < ? AND "
            }
            None => "",
        };
        params.extend(clause.params);
        params.push(Value::Integer(sql_limit(limit)));
        let query = format!(
            "SELECT * FROM (SELECT {SUMMARY_COLUMNS} FROM exchanges WHERE {bound}{} \
             ORDER BY id DESC LIMIT ?) ORDER BY id",
            clause.sql
        );
        self.summaries(&query, params)
    }

    /// Up to `limit` matching summaries with id > `after`, oldest first (polling for new rows:
    /// pass the newest id seen).
    pub fn page_after(
        &self,
        filter: &Filter,
        after: ExchangeId,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let clause = filter.to_sql();
        let mut params = vec![Value::Integer(after)];
        params.extend(clause.params);
        params.push(Value::Integer(sql_limit(limit)));
        let query = format!(
            "SELECT {SUMMARY_COLUMNS} FROM exchanges WHERE id > ? AND {} ORDER BY id LIMIT ?",
            clause.sql
        );
        self.summaries(&query, params)
    }

    /// How many exchanges match.
    pub fn count_matching(&self, filter: &Filter) -> Result<u64, StoreError> {
        let clause = filter.to_sql();
        let query = format!("SELECT count(*) FROM exchanges WHERE {}", clause.sql);
        let count: i64 = self
            .conn
            .prepare_cached(&query)?
            .query_row(params_from_iter(clause.params), |row| row.get(0))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Ids of all matching exchanges, ascending (for `export` and `replay`).
    pub fn ids_matching(&self, filter: &Filter) -> Result<Vec<ExchangeId>, StoreError> {
        let clause = filter.to_sql();
        let query = format!("SELECT id FROM exchanges WHERE {} ORDER BY id", clause.sql);
        let mut statement = self.conn.prepare_cached(&query)?;
        let ids = statement.query_map(params_from_iter(clause.params), |row| row.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn summaries(
        &self,
        query: &str,
        params: Vec<Value>,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let mut statement = self.conn.prepare_cached(query)?;
        let rows = statement.query_map(params_from_iter(params), summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// SQLite takes a signed limit; anything beyond `i64::MAX` means "all" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
