//! A certificate resolver for PEM files that change on disk (certbot renewals, a secret
//! store rewriting a mounted file): it serves the last good certificate and key, and a
//! background task reloads them when either file changes, so that new connections get the
//! new certificate without a restart.
//!
//! Safety rule: only a pair that loads completely *and* whose key matches the certificate
//! replaces the one being served. A change is loaded only once the files have stopped
//! changing for one poll interval, so a file caught half-written is not even tried; and if
//! it still fails, the old certificate stays and a warning names the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{Identity, TlsError};

/// How often the files are looked at. Two `stat` calls per tick; a change is picked up
/// within two ticks (one to notice it, one to see that it has settled).
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// Turns a loaded chain and key into what rustls serves, refusing a key that does not
/// belong to the leaf certificate (the classic mistake after a partial renewal).
pub fn certified_key(identity: Identity) -> Result<Arc<CertifiedKey>, TlsError> {
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&identity.key)
        .map_err(TlsError::Mismatch)?;
    let key = CertifiedKey::new(identity.chain, signer);
    match key.keys_match() {
        // aws-lc-rs always knows the public key; "unknown" would only come from a
        // provider that cannot tell, which is not a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(key))
        }
        Err(e) => Err(TlsError::Mismatch(e)),
    }
}

/// What we compare between polls: a file is "changed" when any of these differ. The inode
/// catches certbot's symlink swap even when size and mtime happen to match.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks: certbot's live/ files point into archive/.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

type PairStamp = (Option<Stamp>, Option<Stamp>);

/// Serves the current certificate from `cert`/`key` and swaps in new files.
#[derive(Debug)]
pub struct ReloadingResolver {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingResolver {
    /// Loads the files (an error here is fatal: there is nothing to serve yet) and starts a
    /// tokio task polling them every `every`, so it must be called within a tokio runtime.
    /// The task stops when the resolver is dropped.
    pub fn watch(cert: &Path, key: &Path, every: Duration) -> Result<Arc<Self>, TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let first = certified_key(Identity::load(cert, key)?)?;
        let resolver = Arc::new(ReloadingResolver {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(first),
        });
        tokio::spawn(poll(Arc::downgrade(&resolver), stamps, every));
        Ok(resolver)
    }

    /// The certificate being served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value
        // inside is still a complete certificate.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn stamps(&self) -> PairStamp {
        (stamp(&self.cert), stamp(&self.key))
    }

    /// Loads the pair and swaps it in; on failure keeps serving the old one.
    fn reload(&self) {
        match Identity::load(&self.cert, &self.key).and_then(certified_key) {
            Ok(new) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = new;
                tracing::info!(
                    "reloaded the certificate from {} and {}",
                    self.cert.display(),
                    self.key.display()
                );
            }
            Err(e) => tracing::warn!(
                "{} or {} changed but cannot be used, still serving the previous \
                 certificate: {e}",
                self.cert.display(),
                self.key.display()
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The watcher: notices a change, waits until the files look the same on two consecutive
/// polls (the writer has finished), then tries them once. A pair that failed is not tried
/// again until the files change again, so a broken renewal warns once, not every tick.
async fn poll(resolver: Weak<ReloadingResolver>, loaded: PairStamp, every: Duration) {
    let mut applied = loaded.clone();
    let mut seen = loaded;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(resolver) = resolver.upgrade() else {
            return;
        };
        let now = {
            let resolver = resolver.clone();
            match tokio::task::spawn_blocking(move || resolver.stamps()).await {
                Ok(now) => now,
                Err(_) => continue,
            }
        };
        if now != seen {
            // Still being written (or just replaced): look again next tick.
            seen = now;
            continue;
        }
        if now == applied {
            continue;
        }
        applied = now;
        // Reading and parsing is file I/O; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || resolver.reload()).await;
    }
}
