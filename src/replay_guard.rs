//! `--reject-replays`: a callback whose nonce and signature came before is refused (403)
//! before it reaches the local server. Without it such a callback is only flagged
//! `nonce_reused`: the tool's job is to show the app what arrives, replays included.
//!
//! Why a developer may want it: a V3 signature in the documented form covers the URL and the
//! nonce, not the body, so one captured signature would otherwise let anyone send any body
//! to the app. Vobiz's docs ask apps to refuse a nonce seen before; this lets the tunnel do
//! it for an app that does not yet.
//!
//! What counts as seen: every signature header's nonce and signature (V2, V3, -MA-) of each
//! callback let through by this listener, and of the latest ones stored when it started, the
//! latest [`REMEMBERED`] of them; and, for older ones, the deciding header's in the store
//! (its `nonce_key` index), across restarts. The store is read only for a key its
//! [`NonceSummary`] may hold: not for a new callback.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::exchange::Exchange;
use crate::store::{NonceSummary, StoreError, StoreReader};

/// Keys remembered in memory (about 8 MiB at most): some 100 000 callbacks.
const REMEMBERED: usize = 1 << 18;

/// The nonces let through, and the store to ask about older ones.
pub struct ReplayGuard {
    seen: Mutex<Seen>,
    stored: Arc<NonceSummary>,
    store: Mutex<StoreReader>,
    store_lookups: AtomicU64,
}

#[derive(Default)]
struct Seen {
    keys: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Seen {
    fn holds_any(&self, keys: &[i64]) -> bool {
        keys.iter().any(|key| self.keys.contains(key))
    }

    /// Remembers `keys`; past [`REMEMBERED`], the oldest are forgotten.
    fn remember(&mut self, keys: Vec<i64>) {
        for key in keys {
            if self.keys.insert(key) {
                self.order.push_back(key);
            }
        }
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
    }
}

impl ReplayGuard {
    /// A guard over the store `store` reads, whose keys `stored` sums up. It remembers the
    /// keys of the latest callbacks stored, as it did before a restart: the store indexes
    /// only the deciding header's.
    pub fn new(store: StoreReader, stored: Arc<NonceSummary>) -> ReplayGuard {
        let mut seen = Seen::default();
        match store.latest_nonce_keys(crate::store::LATEST_NONCES_AT_START) {
            Ok(latest) => latest.into_iter().for_each(|keys| seen.remember(keys)),
            Err(e) => tracing::warn!(
                "--reject-replays could not read the latest callbacks' nonces ({e}): one of \
                 them resent with another signature header than the one stored is let through"
            ),
        }
        ReplayGuard {
            seen: Mutex::new(seen),
            stored,
            store: Mutex::new(store),
            store_lookups: AtomicU64::new(0),
        }
    }

    /// Whether the store's keys are summed up in memory yet (until then every callback not
    /// remembered is looked up in the store).
    pub fn is_summarised(&self) -> bool {
        self.stored.is_ready()
    }

    /// How many callbacks were looked up in the store so far.
    pub fn store_lookups(&self) -> u64 {
        self.store_lookups.load(Ordering::Relaxed)
    }

    /// `None` when `exchange` (a callback whose signature verified) may go on, remembered
    /// from now on; otherwise why it may not. The store is asked outside the lock (callbacks
    /// do not queue behind a SQLite read); the memory is looked at again, and written, under
    /// it, so of two copies arriving at once one goes through.
    pub fn admit(&self, exchange: &Exchange) -> Option<String> {
        let keys = crate::store::nonce_keys(exchange);
        if keys.is_empty() {
            return None; // nothing to recognise it by
        }
        if self.remembers(&keys) {
            return Some(REFUSAL.into());
        }
        // What the store indexes: the deciding header's nonce and signature, whose key
        // `nonce_keys` gives first.
        let stored_as = crate::store::nonce_text(exchange).map(|text| (text, keys[0]));
        match self.in_store(stored_as.as_ref()) {
            Ok(false) => {}
            Ok(true) => return Some(REFUSAL.into()),
            // A store that cannot answer must not turn callbacks away: the write path reports
            // its failure; the memory still judges recent ones.
            Err(e) => tracing::warn!("--reject-replays could not ask the store: {e}"),
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.holds_any(&keys) {
            return Some(REFUSAL.into());
        }
        seen.remember(keys);
        None
    }

    fn remembers(&self, keys: &[i64]) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.holds_any(keys)
    }

    /// Whether the store holds an exchange `stored_as` (its `nonce_key` text and key).
    fn in_store(&self, stored_as: Option<&(String, i64)>) -> Result<bool, StoreError> {
        let Some((text, key)) = stored_as else {
            return Ok(false);
        };
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        // A store deleted or replaced since is read where its path now points, and its keys
        // are not the ones summed up: until they are, every callback is looked up.
        if let Ok(true) = store.follow_the_path() {
            self.stored.file_replaced();
        }
        if !self.stored.may_hold(*key) {
            return Ok(false);
        }
        self.store_lookups.fetch_add(1, Ordering::Relaxed);
        store.has_nonce_key(text)
    }
}

const REFUSAL: &str = "a replay: an earlier callback carried the same nonce and signature \
                       (--reject-replays)";
