//! What the store's `nonce_key` index holds, summed up in memory for `--reject-replays`: a
//! Bloom filter of the key of every stored exchange, so that a new callback (which no stored
//! exchange carries: nearly every one) is let through without a SQLite read. Only a key the
//! filter may hold (one that came before, or one in ~1 600 by chance) is looked up.
//!
//! The writer adds the key of every row it commits, whatever became of the exchange (let
//! through, refused, too large): its bits just before the commit, its count just after. The
//! filter is filled from the index on a thread of its own at start, again when more keys have
//! come than it was sized for, and afresh when the store file is replaced; until a fill is
//! in, every callback is looked up. A fill reads what was committed before its snapshot; the
//! keys committed since, and those of a commit under way, are added when it is installed: no
//! stored key is ever answered "absent".
//! What another process writes to the store (an `import`, a second listener) while this one
//! runs is known to the filter only after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{StoreError, StoreReader};

/// Bits per key the filter is sized for: with [`HASHES`] probes, one absent key in ~1 600 is
/// taken for a present one at the sized load, and the store then answers.
const BITS_PER_KEY: u64 = 16;
const HASHES: u64 = 8;
/// Keys a new filter has room for at least (2 MiB).
const MIN_KEYS: u64 = 1 << 20;
/// The largest filter (32 MiB): a store of more keys is summed up less sharply, not wrongly.
const MAX_BITS: u64 = 1 << 28;

/// A Bloom filter over 64-bit keys (themselves SHA-256 bits: uniform already).
struct Bloom {
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

    /// The bit positions of `key` in a filter of `mask + 1` bits: double hashing over its two
    /// halves.
    fn probes(mask: u64, key: i64) -> impl Iterator<Item = u64> {
        let key = key as u64;
        let (first, step) = (key, key.rotate_left(32) | 1);
        (0..HASHES).map(move |i| first.wrapping_add(i.wrapping_mul(step)) & mask)
    }

    pub fn add(&mut self, key: i64) {
        self.set(key);
        self.added += 1;
    }

    /// Sets `key`'s bits without counting it (it is counted when [`Bloom::add`]ed).
    fn set(&mut self, key: i64) {
        for bit in Bloom::probes(self.mask, key) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False only for a key never added.
    pub fn may_hold(&self, key: i64) -> bool {
        Bloom::probes(self.mask, key)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// More keys were added than it was sized for (it answers "maybe" ever more often), and
    /// a new one can be larger.
    fn outgrown(&self) -> bool {
        self.added > self.capacity && self.mask + 1 < MAX_BITS
    }
}

/// How long after a failed fill the next is tried (meanwhile every callback is looked up).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The store's nonce keys, summed up; shared by the writer (which adds) and the guard (which
/// asks).
pub struct NonceSummary {
    path: PathBuf,
    state: Mutex<State>,
    /// Tests hold a fill here, its snapshot taken, to commit in the meantime.
    #[cfg(test)]
    gate: tests::Gate,
}

#[derive(Default)]
struct State {
    /// `None` until a fill of the current store file is in.
    ready: Option<Bloom>,
    filling: bool,
    /// Keys committed while a fill reads the store.
    since_fill: Vec<i64>,
    /// The keys of the commit under way (the writer commits one batch at a time).
    in_commit: Vec<i64>,
    /// After a failed fill: no other before this.
    retry_after: Option<Instant>,
    /// Times the store file was replaced: a fill that began before the last one read the
    /// old file.
    file_generation: u64,
}

impl NonceSummary {
    /// A summary of the store at `path`, filled from now on.
    pub(super) fn start(path: &Path) -> Arc<NonceSummary> {
        let summary = Arc::new(NonceSummary {
            path: path.to_path_buf(),
            state: Mutex::default(),
            #[cfg(test)]
            gate: tests::Gate::default(),
        });
        summary.fill_if_due(&mut summary.lock());
        summary
    }

    /// Whether the store may hold `key`: `true` until a fill is in.
    pub fn may_hold(&self, key: i64) -> bool {
        self.lock()
            .ready
            .as_ref()
            .is_none_or(|bloom| bloom.may_hold(key))
    }

    /// Whether a filter is in use (then a new key costs no store lookup).
    pub fn is_ready(&self) -> bool {
        self.lock().ready.is_some()
    }

    /// The deciding keys of rows the writer is about to commit: held from now on, so that no
    /// moment finds one in the store and not here. [`NonceSummary::committed`] follows.
    pub(super) fn committing(&self, keys: &[i64]) {
        let mut state = self.lock();
        // Those of a commit that rolled back go with them: extra keys only cost lookups.
        state.in_commit.clear();
        state.in_commit.extend_from_slice(keys);
        if let Some(bloom) = state.ready.as_mut() {
            for &key in keys {
                bloom.set(key);
            }
        }
    }

    /// The deciding keys of rows the writer has just committed: counted, and kept aside for
    /// a fill that is reading the store (it may have begun before their commit).
    pub(super) fn committed(self: &Arc<Self>, keys: &[i64]) {
        if keys.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.in_commit.clear();
        if state.filling {
            state.since_fill.extend_from_slice(keys);
        }
        if let Some(bloom) = state.ready.as_mut() {
            for &key in keys {
                bloom.add(key);
            }
        }
        if state.ready.as_ref().is_none_or(Bloom::outgrown) {
            self.fill_if_due(&mut state);
        }
    }

    /// The store file was replaced: what it holds is not what was summed up. Told by the
    /// writer and by the guard's reader, whichever notices first.
    pub fn file_replaced(self: &Arc<Self>) {
        let mut state = self.lock();
        state.ready = None;
        state.retry_after = None;
        // A fill under way may have read the old file: it is not installed (see `fill`), and
        // a new one starts once it ends.
        state.file_generation += 1;
        self.fill_if_due(&mut state);
    }

    /// Starts a fill unless one runs or a failed one is too recent. `filling` is set before
    /// the fill reads the store, so every key committed after its read began is kept aside.
    fn fill_if_due(self: &Arc<Self>, state: &mut State) {
        if state.filling || state.retry_after.is_some_and(|at| Instant::now() < at) {
            return;
        }
        state.filling = true;
        state.since_fill.clear();
        let summary = self.clone();
        let spawned = std::thread::Builder::new()
            .name("nonce-summary".into())
            .spawn(move || summary.fill());
        if let Err(e) = spawned {
            tracing::warn!("--reject-replays: no thread to read the store's nonces: {e}");
            state.filling = false;
            state.retry_after = Some(Instant::now() + RETRY_AFTER);
        }
    }

    fn fill(self: Arc<Self>) {
        let generation = self.lock().file_generation;
        // A panic here must not leave `filling` set for ever (and `since_fill` growing).
        let snapshot_taken = || {
            #[cfg(test)]
            self.gate.pass();
        };
        let filled = std::panic::catch_unwind(|| read_store(&self.path, snapshot_taken));
        let filled = filled.unwrap_or_else(|_| {
            Err(StoreError::Write(
                "reading the store's nonces panicked".into(),
            ))
        });
        let mut state = self.lock();
        state.filling = false;
        let keys = std::mem::take(&mut state.since_fill);
        match filled {
            // The file was replaced while it read: read the new one.
            Ok(_) if state.file_generation != generation => self.fill_if_due(&mut state),
            Ok(mut bloom) => {
                for key in keys {
                    bloom.add(key);
                }
                // Committed, or about to be, after the snapshot; counted when committed.
                for &key in &state.in_commit {
                    bloom.set(key);
                }
                let old = state.ready.replace(bloom);
                state.retry_after = None;
                drop(state);
                drop(old); // up to 32 MiB given back, outside the lock
            }
            Err(e) => {
                tracing::warn!(
                    "--reject-replays could not read the store's nonces ({e}); callbacks are \
                     looked up in the store instead, and it is tried again in {} s",
                    RETRY_AFTER.as_secs()
                );
                state.retry_after = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A filter of every nonce key in the store at `path`, with room for as many again.
/// `snapshot_taken` is called once the read transaction's snapshot is fixed: what is
/// committed from then on is not read.
fn read_store(path: &Path, snapshot_taken: impl FnOnce()) -> Result<Bloom, StoreError> {
    let store = StoreReader::open(path)?;
    // One snapshot for the count and the keys (it starts with the count's read).
    store.conn.execute_batch("BEGIN")?;
    let mut bloom = Bloom::with_room_for(store.count_nonce_keys()?.saturating_mul(2));
    snapshot_taken();
    store.each_nonce_key(|text| bloom.add(super::nonce_text_key(text)))?;
    store.conn.execute_batch("COMMIT")?;
    Ok(bloom)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a test holds a fill (see `NonceSummary::gate`): closed, a fill that reaches it
    /// says so and waits until it opens.
    #[derive(Default)]
    pub(super) struct Gate {
        closed: Mutex<bool>,
        changed: std::sync::Condvar,
        reached: std::sync::atomic::AtomicBool,
    }

    impl Gate {
        pub(super) fn pass(&self) {
            self.reached
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let mut closed = self.closed.lock().unwrap();
            while *closed {
                closed = self.changed.wait(closed).unwrap();
            }
        }

        fn close(&self) {
            *self.closed.lock().unwrap() = true;
            self.reached
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }

        fn open(&self) {
            *self.closed.lock().unwrap() = false;
            self.changed.notify_all();
        }

        async fn reached(&self) {
            while !self.reached.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    #[tokio::test]
    async fn a_key_committed_while_a_fill_reads_is_in_the_filter_it_installs() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open_summing_up_nonces(&dir.path().join("s.db")).unwrap();
        let summary = store.nonce_summary().unwrap().clone();
        ready(&summary).await;
        let mut exchange = crate::export::tests::sample();
        exchange.id = None;
        exchange.verdict.nonce = Some("3333".into());
        exchange.verdict.signature = Some("c2lnbmF0dXJl".into());
        let key = super::super::nonce_keys(&exchange)[0];

        // A fill takes its snapshot and is held; the key is committed meanwhile.
        summary.gate.close();
        summary.file_replaced();
        tokio::time::timeout(Duration::from_secs(20), summary.gate.reached())
            .await
            .expect("the fill never took its snapshot");
        store.insert(Arc::new(exchange)).await.unwrap();
        summary.gate.open();
        ready(&summary).await;
        assert!(summary.may_hold(key), "not in its snapshot, but kept aside");
    }

    async fn ready(summary: &Arc<NonceSummary>) {
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            while !summary.is_ready() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        waited.await.expect("the summary was never filled");
    }

    #[tokio::test]
    async fn what_is_committed_and_what_was_stored_before_a_restart_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let with_nonce = |nonce: &str| {
            let mut exchange = crate::export::tests::sample();
            exchange.id = None;
            exchange.verdict.nonce = Some(nonce.into());
            exchange.verdict.signature = Some("c2lnbmF0dXJl".into());
            exchange
        };
        let key_of = |exchange: &crate::exchange::Exchange| super::super::nonce_keys(exchange)[0];
        let (before, after) = (with_nonce("1111"), with_nonce("2222"));

        let store = super::super::Store::open_summing_up_nonces(&path).unwrap();
        let summary = store.nonce_summary().unwrap().clone();
        ready(&summary).await;
        assert!(!summary.may_hold(key_of(&before)));
        store.insert(Arc::new(before.clone())).await.unwrap();
        assert!(summary.may_hold(key_of(&before)), "added at its commit");
        drop(store);

        let store = super::super::Store::open_summing_up_nonces(&path).unwrap();
        let summary = store.nonce_summary().unwrap().clone();
        ready(&summary).await;
        assert!(summary.may_hold(key_of(&before)), "read from the store");
        assert!(!summary.may_hold(key_of(&after)));
        // A replaced file is read again (here the same one), the old summary dropped.
        summary.file_replaced();
        ready(&summary).await;
        assert!(summary.may_hold(key_of(&before)));
        assert!(!summary.may_hold(key_of(&after)));
    }

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
