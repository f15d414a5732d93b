//! What the store's `nonce_key` index holds, summed up in memory: a Bloom filter of the key
//! of every stored exchange, so that a new callback (which no stored exchange carries: nearly
//! every one) is let through without a SQLite read. Only a key the filter may hold (one that
//! came before, or one in ~1 600 by chance) is looked up in the store.
//!
//! The filter is filled on a thread of its own from the index (a million keys in well under
//! a second); until then every callback is looked up. The guard adds each key it lets
//! through; when more have come than the filter was sized for, it is filled again, larger.
//! A filter never forgets, so nothing stored is missed: what was stored while it was being
//! filled is among the keys the guard remembers, which it adds at the swap
//! ([`StoredKeys::install`]). Exchanges another process writes to the store (an `import`, a
//! second listener) while this one runs are seen in the store only after a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::store::StoreReader;

/// Bits per key the filter is sized for: with [`HASHES`] probes, one absent key in ~1 600 is
/// taken for a present one at the sized load, and the store then answers.
const BITS_PER_KEY: u64 = 16;
const HASHES: u64 = 8;
/// Keys a new filter has room for at least (2 MiB).
const MIN_KEYS: u64 = 1 << 20;
/// The largest filter (32 MiB): a store of more keys is summed up less sharply, not wrongly.
const MAX_BITS: u64 = 1 << 28;

/// A Bloom filter over 64-bit keys (themselves SHA-256 bits: uniform already).
pub struct Bloom {
    words: Vec<u64>,
    mask: u64,
    /// Keys it was sized for, and keys added.
    capacity: u64,
    added: u64,
}

impl Bloom {
    /// Room for `keys` keys (rounded up to a power of two, within the bounds).
    pub fn with_room_for(keys: u64) -> Bloom {
        let bits = (keys.max(MIN_KEYS).saturating_mul(BITS_PER_KEY))
            .min(MAX_BITS)
            .next_power_of_two();
        Bloom {
            words: vec![0; (bits / 64) as usize],
            mask: bits - 1,
            capacity: bits / BITS_PER_KEY,
            added: 0,
        }
    }

    /// The bit positions of `key`: double hashing over its two halves.
    fn probes(&self, key: i64) -> impl Iterator<Item = u64> + '_ {
        let key = key as u64;
        let (first, step) = (key, key.rotate_left(32) | 1);
        (0..HASHES).map(move |i| first.wrapping_add(i.wrapping_mul(step)) & self.mask)
    }

    pub fn add(&mut self, key: i64) {
        let probes: Vec<u64> = self.probes(key).collect();
        for bit in probes {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.added += 1;
    }

    /// False only for a key never added.
    pub fn may_hold(&self, key: i64) -> bool {
        self.probes(key)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// More keys were added than it was sized for (it answers "maybe" ever more often), and
    /// a new one can be larger.
    fn outgrown(&self) -> bool {
        self.added > self.capacity && self.mask + 1 < MAX_BITS
    }
}

/// The filter, once filled, and whether a (re)fill is under way.
#[derive(Default)]
pub struct StoredKeys {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ready: Option<Bloom>,
    filling: bool,
}

impl StoredKeys {
    /// Whether the store may hold `key`: `true` until the filter is ready.
    pub fn may_hold(&self, key: i64) -> bool {
        self.lock()
            .ready
            .as_ref()
            .is_none_or(|bloom| bloom.may_hold(key))
    }

    /// Whether a filter is in use (for tests: then a new key costs no store lookup).
    pub fn is_ready(&self) -> bool {
        self.lock().ready.is_some()
    }

    /// A key let through (about to be stored), added with the guard's memory locked (the
    /// order of the two locks everywhere). A filter that has had more than it was sized for
    /// is filled again from the store at `path`.
    pub fn add(self: &Arc<Self>, key: i64, path: &std::path::Path, remembered: &Remembered) {
        let mut state = self.lock();
        let Some(bloom) = state.ready.as_mut() else {
            return; // the fill under way takes it from the remembered keys
        };
        bloom.add(key);
        if bloom.outgrown() && !state.filling {
            drop(state);
            self.fill(path.to_path_buf(), remembered.clone());
        }
    }

    /// Fills a new filter from the store at `path` on a thread of its own, then installs it.
    pub fn fill(self: &Arc<Self>, path: PathBuf, remembered: Remembered) {
        self.lock().filling = true;
        let keys = self.clone();
        let spawned = std::thread::Builder::new()
            .name("replay-keys".into())
            .spawn(move || {
                let filled = read_store(&path);
                // The guard's memory first, as everywhere: nothing is let through while its
                // keys are added, so none let through since the store was read is missed.
                let recent = remembered.lock().unwrap_or_else(|e| e.into_inner());
                let mut state = keys.lock();
                state.filling = false;
                match filled {
                    Ok(mut bloom) => {
                        for &key in recent.keys() {
                            bloom.add(key);
                        }
                        state.ready = Some(bloom);
                    }
                    Err(e) => tracing::warn!(
                        "--reject-replays could not read the store's nonces ({e}); every \
                         callback is looked up in the store instead"
                    ),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("--reject-replays: no thread to read the store's nonces: {e}");
            self.lock().filling = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The keys the guard remembers (every one let through lately), added when a filled filter is
/// installed: they cover what was let through but not yet in the store when it was read.
pub type Remembered = Arc<Mutex<super::Seen>>;

/// A filter of every nonce key in the store at `path`, with room for as many again.
fn read_store(path: &std::path::Path) -> Result<Bloom, crate::store::StoreError> {
    let store = StoreReader::open(path)?;
    let mut bloom = Bloom::with_room_for(store.count_nonce_keys()?.saturating_mul(2));
    store.each_nonce_key(|text| bloom.add(crate::store::nonce_text_key(text)))?;
    Ok(bloom)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys as the store's are: uniform 64-bit values (a simple mixer stands in for SHA-256).
    fn key(i: u64) -> i64 {
        let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) as i64
    }

    #[test]
    fn a_key_added_is_always_held_and_few_absent_ones_seem_to_be() {
        let mut bloom = Bloom::with_room_for(0);
        let added = bloom.capacity;
        for i in 0..added {
            bloom.add(key(i));
        }
        assert!((0..added).all(|i| bloom.may_hold(key(i))));
        assert!(!bloom.outgrown());
        let tried = 200_000;
        let mistaken = (0..tried)
            .filter(|i| bloom.may_hold(key(added + i)))
            .count();
        // Sized for one in ~1 600 at full load; allow twice that.
        assert!(mistaken < tried as usize / 800, "{mistaken} of {tried}");
        bloom.add(key(added));
        assert!(bloom.outgrown());
        let mut largest = Bloom::with_room_for(u64::MAX);
        largest.added = largest.capacity + 1;
        assert!(!largest.outgrown(), "no larger one to fill");
    }

    #[test]
    fn sizes_stay_within_bounds() {
        assert_eq!(Bloom::with_room_for(0).capacity, MIN_KEYS);
        assert_eq!(Bloom::with_room_for(MIN_KEYS + 1).capacity, 2 * MIN_KEYS);
        assert_eq!(
            Bloom::with_room_for(u64::MAX).words.len() as u64,
            MAX_BITS / 64
        );
    }
}
