//! The nonces of every signature header of the callbacks this writer recorded last.
//!
//! The store indexes one nonce per exchange, the deciding header's, which finds an as-is
//! replay even from before a restart. Vobiz sends V2, V3 and -MA- headers together, and a
//! captured callback resent with only one of the others (and any body) repeats that
//! header's nonce and signature. Indexing every header's would catch it in the store too,
//! but each random-position index entry is a page the commit writes: one more per callback
//! cost a fifth of the listener's throughput under load. So the other headers' are
//! remembered here, in memory, for the last [`REMEMBERED`] keys this process wrote.
//!
//! Keys enter only once their transaction commits: a rolled-back id is given again.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::exchange::ExchangeId;

/// About 32 000 callbacks of two signature headers each, in about 2 MiB.
pub(super) const REMEMBERED: usize = 65_536;

/// When an exchange with a key was received, and which one it was.
type First = (i64, ExchangeId);

pub(super) struct RecentNonces {
    /// The first exchange received with each key.
    first: HashMap<i64, First>,
    /// The keys in the order they came, for forgetting the oldest.
    order: VecDeque<i64>,
    /// Written in the open transaction, not yet committed.
    uncommitted: Vec<(i64, First)>,
}

impl RecentNonces {
    pub fn new() -> RecentNonces {
        RecentNonces {
            first: HashMap::new(),
            order: VecDeque::new(),
            uncommitted: Vec::new(),
        }
    }

    /// The first exchange received no later than `received_us` with one of `keys`: committed,
    /// or written earlier in the open transaction.
    pub fn first_before(&self, keys: &[i64], received_us: i64) -> Option<First> {
        let committed = keys.iter().filter_map(|key| self.first.get(key)).copied();
        let uncommitted = self
            .uncommitted
            .iter()
            .filter(|(key, _)| keys.contains(key))
            .map(|&(_, first)| first);
        committed
            .chain(uncommitted)
            .filter(|&(first_received_us, _)| first_received_us <= received_us)
            .min()
    }

    /// `keys` of the exchange `id`, received at `received_us`, written in the open transaction.
    pub fn written(&mut self, keys: &[i64], received_us: i64, id: ExchangeId) {
        self.uncommitted
            .extend(keys.iter().map(|&key| (key, (received_us, id))));
    }

    /// The open transaction committed: what it wrote is remembered.
    pub fn committed(&mut self) {
        for (key, first) in self.uncommitted.drain(..) {
            match self.first.entry(key) {
                Entry::Occupied(mut known) => {
                    // Imports may bring an original after its replay.
                    if first < *known.get() {
                        known.insert(first);
                    }
                }
                Entry::Vacant(new) => {
                    new.insert(first);
                    self.order.push_back(key);
                }
            }
        }
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.first.remove(&oldest);
            }
        }
    }

    /// The open transaction rolled back: its ids will be given again.
    pub fn rolled_back(&mut self) {
        self.uncommitted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_received_is_found_once_committed() {
        let mut recent = RecentNonces::new();
        recent.written(&[7, 8], 1_000, 1);
        assert_eq!(
            recent.first_before(&[8], 2_000),
            Some((1_000, 1)),
            "same batch"
        );
        recent.committed();
        recent.written(&[8], 2_000, 2);
        recent.committed();
        assert_eq!(recent.first_before(&[9, 8], 3_000), Some((1_000, 1)));
        assert_eq!(recent.first_before(&[7], 500), None, "received before it");
        assert_eq!(recent.first_before(&[9], 3_000), None);
        // An original imported after its replay is the first.
        recent.written(&[8], 500, 3);
        recent.committed();
        assert_eq!(recent.first_before(&[8], 3_000), Some((500, 3)));
    }

    #[test]
    fn a_rolled_back_write_is_forgotten() {
        let mut recent = RecentNonces::new();
        recent.written(&[7], 1_000, 1);
        recent.rolled_back();
        recent.committed();
        assert_eq!(recent.first_before(&[7], 2_000), None);
    }

    #[test]
    fn only_the_last_keys_are_remembered() {
        let mut recent = RecentNonces::new();
        for i in 0..REMEMBERED as i64 + 10 {
            recent.written(&[i], i, i);
            recent.committed();
        }
        assert_eq!(recent.first_before(&[0], i64::MAX), None, "forgotten");
        assert_eq!(recent.first_before(&[9], i64::MAX), None, "forgotten");
        assert_eq!(recent.first_before(&[10], i64::MAX), Some((10, 10)));
        assert_eq!(recent.first.len(), REMEMBERED);
        assert_eq!(recent.order.len(), REMEMBERED);
    }
}
