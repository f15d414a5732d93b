//! Rows on their way to the store: how the writer knows that waiting a moment before a commit
//! will fill it.
//!
//! A commit costs about six page writes to the WAL whatever it carries (the table's last leaf
//! and its parent, the last leaf of each index, the header page), and a row adds only half a
//! page; the checkpoint then copies the pages again. Committing whatever was queued the moment
//! the writer woke gave batches of ~4 rows at 16 keep-alive connections and ~14 KB written per
//! callback. So the pipeline takes an [`Arrival`] when a request's body is in and gives it
//! back when the exchange's row is queued, and the writer waits briefly for the rows still on
//! their way (`writer::gather`): ~13 rows a commit and ~11 KB a callback at 16 connections,
//! ~9 KB instead of ~10 at 64, and half the store's lock calls. One callback at a time never
//! waits: when its row is queued, nothing else is on its way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many exchanges have arrived whose row is not queued yet.
#[derive(Debug, Default)]
pub(super) struct Arrivals(AtomicUsize);

impl Arrivals {
    pub(super) fn expected(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One exchange on its way to the store, counted until it is queued or released.
#[must_use = "an arrival counts until it is dropped"]
#[derive(Debug)]
pub struct Arrival(Option<Arc<Arrivals>>);

impl Arrival {
    pub(super) fn new(arrivals: &Arc<Arrivals>) -> Arrival {
        arrivals.0.fetch_add(1, Ordering::Relaxed);
        Arrival(Some(arrivals.clone()))
    }

    /// Stops counting this exchange: its row is being queued, or it will be long in coming
    /// (a slow local server) and the writer must not wait for it.
    pub fn release(&mut self) {
        if let Some(arrivals) = self.0.take() {
            arrivals.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arrival_counts_until_released_or_dropped_and_only_once() {
        let arrivals = Arc::new(Arrivals::default());
        let mut first = Arrival::new(&arrivals);
        let second = Arrival::new(&arrivals);
        assert_eq!(arrivals.expected(), 2);
        first.release();
        assert_eq!(arrivals.expected(), 1);
        first.release();
        drop(first);
        assert_eq!(arrivals.expected(), 1, "released once, counted down once");
        drop(second);
        assert_eq!(arrivals.expected(), 0);
    }
}
