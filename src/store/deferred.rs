//! Writes the store could not take yet, kept in memory and retried with backoff.
//!
//! A lock held by another process for longer than the busy timeout, a full disk or a file
//! that became read-only are usually temporary. The proxy does not wait for them beyond that
//! timeout (a write that fails is answered with the error at once, and the callback is
//! answered all the same), but what was received must still be recorded: the writer keeps
//! the end of every exchange (the whole exchange when it has no row yet) here until a
//! transaction commits. Memory is bounded: past [`MAX_ROWS`] or [`MAX_BYTES`] a write is
//! dropped and counted as lost, loudly ([`super::StoreHealth::lost_writes`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::row::Row;
use super::Op;
use crate::exchange::Exchange;

/// At most this many writes wait in memory.
pub(super) const MAX_ROWS: usize = 10_000;
/// At most about this many bytes (bodies and header blocks) wait in memory.
pub(super) const MAX_BYTES: usize = 64 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether a failed write may succeed later unchanged: the file is locked, the disk is full,
/// or the file cannot be written for now (read-only, permissions, I/O). Anything else (a row
/// SQLite refuses) would fail again, and is reported and dropped.
pub(super) fn is_transient(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        error.sqlite_error_code(),
        Some(
            DatabaseBusy
                | DatabaseLocked
                | DiskFull
                | SystemIoFailure
                | ReadOnly
                | CannotOpen
                | PermissionDenied
        )
    )
}

/// The end of an exchange that did not commit: written into its row when it has one, else
/// as a whole new row.
pub(super) struct Pending(pub(super) Arc<Exchange>);

impl Pending {
    pub(super) fn into_op(self) -> Op {
        Op::End {
            row: Row::of(&self.0),
            exchange: self.0,
            ack: None,
        }
    }

    /// Roughly what it holds in memory.
    fn weight(&self) -> usize {
        let exchange = &self.0;
        let response = exchange
            .response
            .as_ref()
            .map_or(0, |r| r.body.len() + r.headers.0.len() * 64);
        1024 + exchange.request.body.len() + exchange.request.headers.0.len() * 64 + response
    }
}

/// The writes waiting for the store, oldest first, and when to try them again.
pub(super) struct Deferred {
    queue: VecDeque<Pending>,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
    backoff: Duration,
    retry_at: Instant,
}

impl Deferred {
    pub(super) fn new(max_rows: usize, max_bytes: usize) -> Deferred {
        Deferred {
            queue: VecDeque::new(),
            bytes: 0,
            max_rows,
            max_bytes,
            backoff: FIRST_BACKOFF,
            retry_at: Instant::now(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the next attempt is due (meaningful only when not empty).
    pub(super) fn retry_at(&self) -> Instant {
        self.retry_at
    }

    /// Everything waiting, for an attempt; what fails is pushed back.
    pub(super) fn take(&mut self) -> Vec<Pending> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    /// Keeps `pending` for the next attempt, unless the caps are reached: then it is
    /// dropped and `false` returned (the caller counts and reports the losses, once per batch
    /// rather than once per write, which at full load would flood the log).
    pub(super) fn keep(&mut self, pending: Pending) -> bool {
        let weight = pending.weight();
        if self.queue.len() >= self.max_rows || self.bytes + weight > self.max_bytes {
            return false;
        }
        self.bytes += weight;
        self.queue.push_back(pending);
        true
    }

    /// Why writes over the caps are dropped, for the report.
    pub(super) fn full_reason(&self) -> String {
        format!(
            "{} writes already wait for the store (at most {} rows, {} MiB are kept)",
            self.queue.len(),
            self.max_rows,
            self.max_bytes / (1024 * 1024)
        )
    }

    /// An attempt failed: the next one after the backoff, which doubles up to [`MAX_BACKOFF`].
    pub(super) fn failed(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A transaction committed: the store accepts writes again.
    pub(super) fn succeeded(&mut self) {
        self.backoff = FIRST_BACKOFF;
    }
}
