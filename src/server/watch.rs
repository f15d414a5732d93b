//! One served connection under two watches: the listener stopping, and idleness.
//!
//! hyper closes an HTTP/1.1 connection that takes too long over a request's headers, idle
//! keep-alive ones included, but nothing closes a connection that never says which protocol
//! it speaks (a TLS handshake, then silence, or half an HTTP/2 preface), nor an HTTP/2
//! connection without streams: its client answers our keep-alive pings and holds the
//! connection forever. A few thousand of those take every connection slot and no callback
//! gets in. So each connection counts the requests it is serving; once it has served none
//! for `idle_timeout` it is shut down gracefully (HTTP/2: GOAWAY, so that a request racing
//! the close is known to be unprocessed and can be retried), and dropped if that takes
//! longer than [`CLOSE_GRACE`].
//!
//! An HTTP/1 request whose head is still arriving is not idleness: [`super::refusal`] answers
//! it `408` when the header timeout passes, and records what came. Closing it here would
//! race that answer and leave the sender with nothing.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a connection asked to close may take to do so before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Requests a connection is serving, and since when it has served none.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests begun so far.
    started: AtomicU64,
    /// Microseconds after `opened` at which the last request ended (0: none yet).
    idle_since_us: AtomicU64,
    /// The start of a request's head has arrived and its end has not (HTTP/1).
    head_underway: AtomicBool,
}

/// A request being served; dropping it ends the request.
#[derive(Debug)]
pub struct Serving(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_us: AtomicU64::new(0),
            head_underway: AtomicBool::new(false),
        })
    }

    /// A request begins; it ends when the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Serving {
        self.head_underway.store(false, Ordering::Release);
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Serving(self.clone())
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests begun since the connection opened.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// The start of a request's head has arrived; it is underway until the request begins
    /// (or the connection ends).
    pub fn head_begun(&self) {
        self.head_underway.store(true, Ordering::Release);
    }

    /// When a head begun now has been awaited for `timeout`: the clock starts when the
    /// connection opened or its last request ended (hyper's, a backstop, starts once that
    /// request's answer is written, so a slowly written answer takes from the next head's
    /// time here, not there).
    pub fn head_deadline(&self, timeout: Duration) -> Instant {
        let since = Duration::from_micros(self.idle_since_us.load(Ordering::Acquire));
        self.opened + since + timeout
    }

    /// When the connection will have been idle for `timeout`, or `None` while it serves a
    /// request or receives one's head.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.head_underway.load(Ordering::Acquire)
        {
            return None;
        }
        Some(self.head_deadline(timeout))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_micros() as u64;
        activity.idle_since_us.store(now, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a watched connection ended.
#[derive(Debug)]
pub enum Ended<E> {
    /// It ended by itself, or finished a graceful shutdown: its own result.
    Finished(Result<(), E>),
    /// Closed after serving no request for the idle timeout.
    Idle,
}

/// Drives `connection` until it ends: shut down gracefully when `stop` turns true, and when
/// it has served no request for `idle_timeout` (then reported as [`Ended::Idle`]).
pub async fn serve<C>(
    connection: C,
    activity: &Activity,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> Ended<C::Error>
where
    C: GracefulConnection,
{
    let mut connection = std::pin::pin!(connection);
    let mut stopping = *stop.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    let mut idle_closed_at: Option<Instant> = None;
    loop {
        // While a request is served, look again after a whole timeout: the idle clock can
        // only start after it ends, so the connection is closed no later than it must be.
        let wake_at = match idle_closed_at {
            Some(at) => at + CLOSE_GRACE,
            None => activity
                .idle_deadline(idle_timeout)
                .unwrap_or_else(|| Instant::now() + idle_timeout),
        };
        // In this order: the stop before the connection, which could use up the task's
        // budget on a busy connection every time; the connection before the idle clock, so
        // that bytes it has read (a head begun) count first.
        tokio::select! {
            biased;
            changed = stop.changed(), if !stopping => {
                // A closed channel means the listener is gone: stop as well.
                let _ = changed;
                stopping = true;
                if idle_closed_at.is_none() {
                    connection.as_mut().graceful_shutdown();
                }
            }
            result = connection.as_mut() => {
                return match idle_closed_at {
                    Some(_) => Ended::Idle,
                    None => Ended::Finished(result),
                };
            }
            () = tokio::time::sleep_until(wake_at) => {
                match idle_closed_at {
                    Some(_) => return Ended::Idle, // it did not close in time: drop it
                    None => {
                        let idle = activity
                            .idle_deadline(idle_timeout)
                            .is_some_and(|deadline| deadline <= Instant::now());
                        if idle {
                            idle_closed_at = Some(Instant::now());
                            if !stopping {
                                connection.as_mut().graceful_shutdown();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Wraps a per-request future so that the connection counts it as served until it ends.
pub fn counted<F: Future>(activity: &Arc<Activity>, request: F) -> impl Future<Output = F::Output> {
    let serving = activity.begin();
    async move {
        let output = request.await;
        drop(serving);
        output
    }
}
