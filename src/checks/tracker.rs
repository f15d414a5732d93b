//! Recent deliveries, for the `duplicate-delivery` rule: which callback (by its identity key)
//! arrived when, as which exchange. Bounded in time (the window) and in size (the capacity),
//! with a time-ordered queue for eviction; the lock is held only for a map lookup and insert.
//!
//! Keys and nonces are kept as 64-bit hashes (SipHash with a per-process random key), not as
//! strings: 50 000 remembered deliveries then take ~3 MB instead of ~15 MB, and a false match
//! needs a 64-bit collision.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use crate::exchange::ExchangeId;

/// Deliveries older than this are forgotten: Vobiz's retries (3, with exponential backoff)
/// all fall well within it.
pub const DEFAULT_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// At most this many deliveries are remembered (a few MB at most), whatever the rate.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// The first delivery of a callback that arrived again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Earlier {
    /// Its exchange id (`None` when the store could not record it).
    pub id: Option<ExchangeId>,
    pub received_us: i64,
    /// It carried the same nonce (a replay of the same request rather than a new delivery).
    pub same_nonce: bool,
}

#[derive(Debug)]
struct Seen {
    id: Option<ExchangeId>,
    received_us: i64,
    nonce: Option<u64>,
}

#[derive(Debug, Default)]
struct Recent {
    by_key: HashMap<u64, Seen>,
    /// Keys in arrival order, for eviction.
    order: VecDeque<(i64, u64)>,
}

/// Thread-safe memory of recent deliveries.
#[derive(Debug)]
pub struct DeliveryTracker {
    recent: Mutex<Recent>,
    window_us: i64,
    capacity: usize,
    hasher: RandomState,
}

impl Default for DeliveryTracker {
    fn default() -> Self {
        DeliveryTracker::new(DEFAULT_WINDOW_US, DEFAULT_CAPACITY)
    }
}

impl DeliveryTracker {
    /// A tracker remembering deliveries for `window_us` microseconds, at most `capacity`.
    pub fn new(window_us: i64, capacity: usize) -> DeliveryTracker {
        DeliveryTracker {
            recent: Mutex::new(Recent::default()),
            window_us,
            capacity: capacity.max(1),
            hasher: RandomState::new(),
        }
    }

    /// The hasher that makes a delivery's identity into the key this tracker remembers.
    pub fn key_hasher(&self) -> impl Hasher {
        self.hasher.build_hasher()
    }

    /// Records a delivery of `key` (see [`DeliveryTracker::key_hasher`]) and returns the first
    /// delivery of the same key within the window, if any. A repeat is not recorded again, so
    /// a third delivery also names the first.
    pub fn observe(
        &self,
        key: u64,
        id: Option<ExchangeId>,
        received_us: i64,
        nonce: Option<&str>,
    ) -> Option<Earlier> {
        let nonce = nonce.map(|n| self.hasher.hash_one(n));
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let horizon = received_us.saturating_sub(self.window_us);
        while let Some((at, _)) = recent.order.front() {
            if *at >= horizon && recent.order.len() < self.capacity {
                break;
            }
            if let Some((at, old)) = recent.order.pop_front() {
                if recent.by_key.get(&old).is_some_and(|s| s.received_us == at) {
                    recent.by_key.remove(&old);
                }
            }
        }
        if let Some(seen) = recent.by_key.get(&key) {
            if seen.received_us >= horizon {
                return Some(Earlier {
                    id: seen.id,
                    received_us: seen.received_us,
                    same_nonce: nonce.is_some() && seen.nonce == nonce,
                });
            }
        }
        recent.order.push_back((received_us, key));
        recent.by_key.insert(
            key,
            Seen {
                id,
                received_us,
                nonce,
            },
        );
        None
    }

    /// Gives the delivery of `key` received at `received_us` its exchange id, if it is the one
    /// remembered and has none yet.
    pub fn identify(&self, key: u64, received_us: i64, id: ExchangeId) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = recent.by_key.get_mut(&key) {
            if seen.received_us == received_us && seen.id.is_none() {
                seen.id = Some(id);
            }
        }
    }

    /// How many deliveries are remembered.
    pub fn len(&self) -> usize {
        self.recent
            .lock()
            .map(|r| r.by_key.len())
            .unwrap_or_else(|e| e.into_inner().by_key.len())
    }

    /// Nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn key(tracker: &DeliveryTracker, name: &str) -> u64 {
        let mut hasher = tracker.key_hasher();
        name.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn a_repeat_within_the_window_names_the_first() {
        let tracker = DeliveryTracker::new(1_000, 10);
        assert_eq!(
            tracker.observe(key(&tracker, "k"), Some(1), 0, Some("n1")),
            None
        );
        let again = tracker.observe(key(&tracker, "k"), Some(2), 500, Some("n2"));
        assert_eq!(
            again,
            Some(Earlier {
                id: Some(1),
                received_us: 0,
                same_nonce: false
            })
        );
        let third = tracker.observe(key(&tracker, "k"), Some(3), 600, Some("n1"));
        assert_eq!(third.map(|e| (e.id, e.same_nonce)), Some((Some(1), true)));
        assert_eq!(
            tracker.observe(key(&tracker, "other"), Some(4), 700, None),
            None
        );
    }

    #[test]
    fn a_first_delivery_learns_its_id_once_written() {
        let tracker = DeliveryTracker::new(1_000, 10);
        tracker.observe(key(&tracker, "k"), None, 100, None);
        // Another delivery's id (a repeat received later) does not take the first's place.
        tracker.identify(key(&tracker, "k"), 200, 9);
        tracker.identify(key(&tracker, "k"), 100, 7);
        tracker.identify(key(&tracker, "k"), 100, 8);
        let again = tracker.observe(key(&tracker, "k"), None, 300, None);
        assert_eq!(again.and_then(|e| e.id), Some(7));
    }

    #[test]
    fn old_deliveries_are_forgotten_and_memory_is_bounded() {
        let tracker = DeliveryTracker::new(1_000, 3);
        tracker.observe(key(&tracker, "k"), Some(1), 0, None);
        assert_eq!(
            tracker.observe(key(&tracker, "k"), Some(2), 5_000, None),
            None
        );
        for i in 0..10 {
            tracker.observe(key(&tracker, &format!("x{i}")), Some(i), 5_000 + i, None);
        }
        assert!(tracker.len() <= 3, "{}", tracker.len());
    }
}
