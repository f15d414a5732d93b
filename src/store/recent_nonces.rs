//! The nonces of every signature header of the callbacks this writer recorded last.
//!
//! The store indexes one nonce per exchange, the deciding header's, which finds an as-is
//! replay even from before a restart. Vobiz sends V2, V3 and -MA- headers together, and a
//! captured callback resent with only one of the others (and any body) repeats that
//! header's nonce and signature. Indexing every header's would catch it in the store too,
//! but each random-position index entry is a page the commit writes: one more per callback
//! cost a fifth of the listener's throughput under load. So the other headers' are
//! remembered here, in memory, for the last [`REMEMBERED`] keys this writer committed, and
//! at the start for the latest callbacks in the store (see `latest_nonces`).
//!
//! Keys are taken back if their transaction rolls back: a rolled-back id is given again.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::exchange::ExchangeId;

/// About 16 000 callbacks of two signature headers each (8 000 with -MA- headers too), in
/// about 2 MiB, allocated once.
pub(super) const REMEMBERED: usize = 32_768;

/// Room for the keys of one batch beyond [`REMEMBERED`], before the oldest are forgotten.
const BATCH_KEYS: usize = 4 * 1024;

/// When an exchange with a key was received, and which one it was.
type First = (i64, ExchangeId);

pub(super) struct RecentNonces {
    /// The first exchange received with each key, this transaction's writes included.
    first: HashMap<i64, First>,
    /// The committed keys in the order they came, for forgetting the oldest.
    order: VecDeque<i64>,
    /// What this transaction changed in `first`, with what was there before, to take back.
    undo: Vec<(i64, Option<First>)>,
}

impl RecentNonces {
    pub fn new() -> RecentNonces {
        RecentNonces {
            // Sized once: growing would hold the old and the new table at the peak.
            first: HashMap::with_capacity(REMEMBERED + BATCH_KEYS),
            order: VecDeque::with_capacity(REMEMBERED + BATCH_KEYS),
            undo: Vec::new(),
        }
    }

    /// The first exchange received no later than `received_us` with one of `keys`: committed,
    /// or written earlier in the open transaction.
    pub fn first_before(&self, keys: &[i64], received_us: i64) -> Option<First> {
        keys.iter()
            .filter_map(|key| self.first.get(key))
            .copied()
            .filter(|&(first_received_us, _)| first_received_us <= received_us)
            .min()
    }

    /// `keys` of the exchange `id`, received at `received_us`, written in the open transaction.
    pub fn written(&mut self, keys: &[i64], received_us: i64, id: ExchangeId) {
        for &key in keys {
            match self.first.entry(key) {
                // Imports may bring an original after its replay.
                Entry::Occupied(mut known) if (received_us, id) < *known.get() => {
                    self.undo.push((key, Some(*known.get())));
                    known.insert((received_us, id));
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(new) => {
                    self.undo.push((key, None));
                    new.insert((received_us, id));
                }
            }
        }
    }

    /// The open transaction committed: its new keys join the order, the oldest go.
    pub fn committed(&mut self) {
        for (key, before) in self.undo.drain(..) {
            if before.is_none() {
                self.order.push_back(key);
            }
        }
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.first.remove(&oldest);
            }
        }
    }

    /// The open transaction rolled back: what it wrote is taken back (its ids will be given
    /// again).
    pub fn rolled_back(&mut self) {
        for (key, before) in self.undo.drain(..).rev() {
            match before {
                Some(first) => self.first.insert(key, first),
                None => self.first.remove(&key),
            };
        }
    }

    /// The store was started again (its file deleted or replaced): its ids begin anew, and
    /// none of these name a row of it.
    pub fn forget_all(&mut self) {
        self.first.clear();
        self.order.clear();
        self.undo.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_received_is_found_once_written() {
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
    fn a_rolled_back_write_is_taken_back() {
        let mut recent = RecentNonces::new();
        recent.written(&[7], 1_000, 1);
        recent.committed();
        recent.written(&[7], 500, 2); // an earlier one, in a transaction that fails
        recent.written(&[8], 2_000, 3);
        recent.rolled_back();
        recent.committed();
        assert_eq!(recent.first_before(&[7], 2_000), Some((1_000, 1)));
        assert_eq!(recent.first_before(&[8], 3_000), None);
        assert_eq!(recent.order.len(), 1);
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
        recent.forget_all();
        assert_eq!(recent.first_before(&[10], i64::MAX), None);
    }
}
