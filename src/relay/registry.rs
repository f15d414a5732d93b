//! Which laptop serves which route, right now. Each route (`--token`, `--route`) has one slot
//! holding the current tunnel ([`Link`]); a newer tunnel with the same token replaces (and
//! closes) the older, and a callback can wait up to `--hold` for a slot to fill. Tokens are
//! kept only as SHA-256 digests, compared in constant time ([`protocol::find_token`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use tokio::sync::{watch, Notify};

use super::config::{Route, RouteMatch};
use super::protocol;

/// One authenticated tunnel: the HTTP/2 client half the relay sends callbacks on.
pub struct Link {
    /// Distinguishes a tunnel from the one that replaced it.
    pub id: u64,
    /// Index of its route in the registry.
    pub route: usize,
    /// The laptop's address.
    pub peer: SocketAddr,
    /// What the laptop was told callbacks arrive at (`OK <public-base-url>`).
    pub public_base: String,
    pub since: Instant,
    sender: SendRequest<Full<Bytes>>,
    close: Notify,
    close_reason: OnceLock<&'static str>,
    replaced_by: OnceLock<SocketAddr>,
}

impl Link {
    pub fn new(
        id: u64,
        route: usize,
        peer: SocketAddr,
        public_base: String,
        sender: SendRequest<Full<Bytes>>,
    ) -> Link {
        Link {
            id,
            route,
            peer,
            public_base,
            since: Instant::now(),
            sender,
            close: Notify::new(),
            close_reason: OnceLock::new(),
            replaced_by: OnceLock::new(),
        }
    }

    /// A handle to send one callback on (HTTP/2 senders are cheap clones of one connection).
    pub fn sender(&self) -> SendRequest<Full<Bytes>> {
        self.sender.clone()
    }

    /// The connection behind it has ended (it is about to be unregistered).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Asks the task driving the tunnel to drop it; the first reason given is kept.
    pub fn close(&self, reason: &'static str) {
        self.close_with(reason, None);
    }

    /// Closes it because the laptop at `peer` connected with the same token.
    pub fn replace_by(&self, peer: SocketAddr) {
        self.close_with(
            "replaced by a newer connection with the same token",
            Some(peer),
        );
    }

    fn close_with(&self, reason: &'static str, replaced_by: Option<SocketAddr>) {
        if self.close_reason.set(reason).is_ok() {
            if let Some(peer) = replaced_by {
                let _ = self.replaced_by.set(peer);
            }
        }
        // A stored permit: the driving task sees it even if it is not waiting yet.
        self.close.notify_one();
    }

    /// The laptop that took this tunnel's route, if that is why it closed.
    pub fn replaced_by(&self) -> Option<SocketAddr> {
        self.replaced_by.get().copied()
    }

    /// Resolves once [`Link::close`] is called, with its reason.
    pub async fn closed(&self) -> &'static str {
        self.close.notified().await;
        self.close_reason
            .get()
            .copied()
            .unwrap_or("closed by the relay")
    }
}

struct Slot {
    route: Route,
    digest: [u8; 32],
    current: watch::Sender<Option<Arc<Link>>>,
}

/// The routes and their current tunnels.
pub struct Registry {
    slots: Vec<Slot>,
    digests: Vec<[u8; 32]>,
    next_id: AtomicU64,
}

fn is_live(current: &Option<Arc<Link>>) -> bool {
    current.as_ref().is_some_and(|link| !link.is_closed())
}

/// `host[:port]` → lower-case host without the port or a trailing dot.
pub fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => authority.split(':').next().unwrap_or(authority),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `path` is `prefix` or lies under it (`/bob` matches `/bob` and `/bob/x`, not `/bobby`).
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Registry {
    pub fn new(routes: Vec<Route>) -> Registry {
        let slots: Vec<Slot> = routes
            .into_iter()
            .map(|route| Slot {
                digest: protocol::token_digest(route.token.expose()),
                route,
                current: watch::channel(None).0,
            })
            .collect();
        Registry {
            digests: slots.iter().map(|s| s.digest).collect(),
            slots,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn route(&self, index: usize) -> Option<&Route> {
        self.slots.get(index).map(|slot| &slot.route)
    }

    /// The index of the route named `name` (as [`Route::name`] spells it).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|slot| slot.route.name() == name)
    }

    /// The route whose token this is (constant time), or `None`.
    pub fn authenticate(&self, token: &str) -> Option<usize> {
        protocol::find_token(token, &self.digests)
    }

    /// A fresh tunnel id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Which route a public callback belongs to: a hostname route first, then the longest
    /// path prefix, then the catch-all `--token` route.
    pub fn match_request(&self, authority: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = authority.map(host_of) {
            let by_host = self
                .slots
                .iter()
                .position(|slot| matches!(&slot.route.matcher, RouteMatch::Host(h) if *h == host));
            if by_host.is_some() {
                return by_host;
            }
        }
        let by_prefix = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match &slot.route.matcher {
                RouteMatch::Prefix(prefix) if under_prefix(path, prefix) => Some((i, prefix.len())),
                _ => None,
            })
            .max_by_key(|&(_, len)| len)
            .map(|(i, _)| i);
        by_prefix.or_else(|| {
            self.slots
                .iter()
                .position(|slot| slot.route.matcher == RouteMatch::Any)
        })
    }

    /// Makes `link` its route's tunnel and closes the one it replaces (returned).
    pub fn register(&self, link: Arc<Link>) -> Option<Arc<Link>> {
        let slot = self.slots.get(link.route)?;
        let peer = link.peer;
        let old = slot.current.send_replace(Some(link))?;
        old.replace_by(peer);
        Some(old)
    }

    /// Empties the slot if `link` still holds it (a replacement is left alone).
    pub fn unregister(&self, link: &Link) {
        if let Some(slot) = self.slots.get(link.route) {
            slot.current.send_if_modified(|current| {
                let ours = current.as_ref().is_some_and(|c| c.id == link.id);
                if ours {
                    *current = None;
                }
                ours
            });
        }
    }

    /// The route's live tunnel, waiting up to `hold` for one to (re)connect.
    pub async fn wait(&self, route: usize, hold: Duration) -> Option<Arc<Link>> {
        let slot = self.slots.get(route)?;
        {
            let current = slot.current.borrow();
            if is_live(&current) {
                return current.clone();
            }
        }
        if hold.is_zero() {
            return None;
        }
        let mut changes = slot.current.subscribe();
        let found = match tokio::time::timeout(hold, changes.wait_for(is_live)).await {
            Ok(Ok(current)) => current.clone(),
            _ => None,
        };
        found
    }

    /// The route's live tunnel now, without waiting.
    pub fn connected(&self, route: usize) -> Option<Arc<Link>> {
        let current = self.slots.get(route)?.current.borrow();
        is_live(&current).then(|| current.clone()).flatten()
    }

    /// Whether the route has a live tunnel now.
    pub fn is_connected(&self, route: usize) -> bool {
        self.slots
            .get(route)
            .is_some_and(|slot| is_live(&slot.current.borrow()))
    }

    /// Drops every tunnel (the laptops reconnect); how many there were.
    pub fn close_all(&self, reason: &'static str) -> usize {
        let mut closed = 0;
        for slot in &self.slots {
            if let Some(link) = slot.current.send_replace(None) {
                link.close(reason);
                closed += 1;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::AuthToken;

    fn route(matcher: RouteMatch, token: &str) -> Route {
        Route {
            matcher,
            token: AuthToken::new(token),
        }
    }

    #[test]
    fn hosts_then_longest_prefix_then_the_default() {
        let registry = Registry::new(vec![
            route(RouteMatch::Any, "t0"),
            route(RouteMatch::Prefix("/bob".into()), "t1"),
            route(RouteMatch::Prefix("/bob/team".into()), "t2"),
            route(RouteMatch::Host("alice.example.com".into()), "t3"),
        ]);
        let m = |host: &str, path: &str| registry.match_request(Some(host), path);
        assert_eq!(m("Alice.Example.com:8443", "/bob/x"), Some(3));
        assert_eq!(m("hooks.example.com", "/bob/x"), Some(1));
        assert_eq!(m("hooks.example.com", "/bob"), Some(1));
        assert_eq!(m("hooks.example.com", "/bob/team/cb"), Some(2));
        assert_eq!(m("hooks.example.com", "/bobby"), Some(0));
        assert_eq!(registry.match_request(None, "/x"), Some(0));
        assert_eq!(registry.authenticate("t2"), Some(2));
        assert_eq!(registry.authenticate("t9"), None);
        assert_eq!(registry.index_of("/bob"), Some(1));

        let no_default = Registry::new(vec![route(RouteMatch::Prefix("/a".into()), "t")]);
        assert_eq!(no_default.match_request(Some("h"), "/b"), None);
    }

    #[test]
    fn authorities_lose_their_port() {
        assert_eq!(host_of("Hooks.Example.com:443"), "hooks.example.com");
        assert_eq!(host_of("hooks.example.com."), "hooks.example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert!(under_prefix("/bob/x", "/bob") && !under_prefix("/bobby", "/bob"));
    }

    #[tokio::test]
    async fn an_empty_slot_answers_at_once_without_hold() {
        let registry = Registry::new(vec![route(RouteMatch::Any, "t")]);
        let started = Instant::now();
        assert!(registry.wait(0, Duration::ZERO).await.is_none());
        assert!(registry.wait(0, Duration::from_millis(50)).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(registry.wait(7, Duration::ZERO).await.is_none());
        assert_eq!(registry.close_all("test"), 0);
    }
}
