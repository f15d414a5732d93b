//! Tells a forwarded request when its answer has been slow for long enough that what was
//! received should be written to the store as pending (see `pipeline::serve`).
//!
//! One ticker serves every request in flight, instead of a timer each. Almost every answer
//! comes back long before the deadline, so a timer per request was registered and cancelled
//! for nothing, and as the earliest deadline in the runtime's timer wheel its registration
//! woke the I/O driver with a syscall: that cost ~5% of the proxy's CPU per request under
//! keep-alive load. Here a request only takes a slot in a table; the ticker runs only while
//! the table is not empty, and marks the slots that are due.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The requests waiting on an answer, and the ticker that watches them.
pub struct SlowAnswers {
    shared: Arc<Shared>,
    ticker: JoinHandle<()>,
}

struct Shared {
    /// How long an answer may take before the request counts as slow.
    after: Duration,
    waiting: Mutex<Slab<Waiting>>,
    /// Wakes the ticker when the table stops being empty.
    work: Notify,
}

struct Waiting {
    since: Instant,
    waker: Waker,
    due: bool,
}

impl SlowAnswers {
    /// Starts the ticker (on the current tokio runtime). A request is told it is slow once
    /// `after` has passed since it started waiting, at most half of `after` late.
    pub fn start(after: Duration) -> SlowAnswers {
        let shared = Arc::new(Shared {
            after,
            waiting: Mutex::new(Slab::new()),
            work: Notify::new(),
        });
        let ticker = tokio::spawn(tick(shared.clone()));
        SlowAnswers { shared, ticker }
    }

    /// Completes once the answer counts as slow, counted from now. Dropping it (the answer
    /// came) frees its slot.
    pub fn wait(&self) -> Slow<'_> {
        Slow {
            shared: &self.shared,
            since: Instant::now(),
            slot: None,
        }
    }
}

impl Drop for SlowAnswers {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, Slab<Waiting>> {
        // A poisoned lock only means a waker panicked mid-wake; the table is still whole.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks what is due at `now` and wakes it, outside the lock.
    fn wake_due(&self, now: Instant) {
        let mut due = Vec::new();
        for (_, waiting) in self.waiting().iter_mut() {
            if !waiting.due && now.duration_since(waiting.since) >= self.after {
                waiting.due = true;
                due.push(waiting.waker.clone());
            }
        }
        due.into_iter().for_each(Waker::wake);
    }
}

/// Runs while something waits: every `after / 2`, wakes what has become due.
async fn tick(shared: Arc<Shared>) {
    let period = (shared.after / 2).max(Duration::from_millis(1));
    loop {
        if shared.waiting().is_empty() {
            // A request that arrives between the look and the wait leaves a permit behind.
            shared.work.notified().await;
            continue;
        }
        tokio::time::sleep(period).await;
        shared.wake_due(Instant::now());
    }
}

/// See [`SlowAnswers::wait`].
pub struct Slow<'a> {
    shared: &'a Shared,
    since: Instant,
    slot: Option<usize>,
}

impl Future for Slow<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut waiting = this.shared.waiting();
        match this.slot.and_then(|slot| waiting.get_mut(slot)) {
            Some(entry) if entry.due => Poll::Ready(()),
            Some(entry) => {
                if !entry.waker.will_wake(cx.waker()) {
                    entry.waker = cx.waker().clone();
                }
                Poll::Pending
            }
            None => {
                let first = waiting.is_empty();
                this.slot = Some(waiting.insert(Waiting {
                    since: this.since,
                    waker: cx.waker().clone(),
                    due: false,
                }));
                drop(waiting);
                if first {
                    this.shared.work.notify_one();
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Slow<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.waiting().try_remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_completes_after_the_delay_and_not_before() {
        let slow = SlowAnswers::start(Duration::from_millis(40));
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), slow.wait())
            .await
            .expect("the wait completes");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
    }

    #[tokio::test]
    async fn a_dropped_wait_frees_its_slot() {
        // Far from due, however slowly a loaded machine runs this test.
        let slow = SlowAnswers::start(Duration::from_secs(600));
        {
            let wait = slow.wait();
            tokio::pin!(wait);
            let early = tokio::time::timeout(Duration::from_millis(5), &mut wait).await;
            assert!(early.is_err(), "not due yet");
            assert_eq!(slow.shared.waiting().len(), 1);
        }
        assert!(slow.shared.waiting().is_empty());
    }

    #[tokio::test]
    async fn waits_still_complete_after_the_ticker_went_idle() {
        let slow = SlowAnswers::start(Duration::from_millis(10));
        tokio::time::timeout(Duration::from_secs(5), slow.wait())
            .await
            .expect("the first wait completes");
        // Nothing waits now: the ticker parks until the next request takes a slot.
        tokio::time::sleep(Duration::from_millis(30)).await;
        tokio::time::timeout(Duration::from_secs(5), slow.wait())
            .await
            .expect("a wait after an idle spell completes");
    }

    #[tokio::test]
    async fn many_waits_each_complete_once_and_leave_nothing_behind() {
        let slow = Arc::new(SlowAnswers::start(Duration::from_millis(10)));
        let waits = (0..100).map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { slow.wait().await })
        });
        for wait in waits.collect::<Vec<_>>() {
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("every wait completes")
                .expect("no wait panics");
        }
        assert!(slow.shared.waiting().is_empty());
    }
}
