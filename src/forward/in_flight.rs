//! Requests in flight to the local server, capped. Each holds a connection to it (a file
//! descriptor); the open-files budget counts one per sender connection, but one HTTP/2
//! connection carries many requests. Past the cap the next request is refused at once rather
//! than running the process out of descriptors, which would stop `accept` for everyone.
//!
//! A counter, not a semaphore: nothing ever waits for a slot, and releasing a tokio
//! semaphore permit takes its waiters' lock on every request.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many requests are out to the local server, and how many may be.
#[derive(Debug)]
pub struct InFlight {
    now: AtomicUsize,
    max: usize,
}

/// One request's place among those in flight, given back when dropped.
#[derive(Debug)]
pub struct Slot<'a>(&'a InFlight);

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight {
            now: AtomicUsize::new(0),
            max,
        }
    }

    /// A slot, or `None` when `max` requests are already out.
    pub fn try_take(&self) -> Option<Slot<'_>> {
        if self.now.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.now.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self))
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_refused_past_the_cap_and_given_back() {
        let in_flight = InFlight::new(2);
        let first = in_flight.try_take().expect("one");
        let second = in_flight.try_take().expect("two");
        assert!(in_flight.try_take().is_none(), "the cap holds");
        assert!(in_flight.try_take().is_none(), "a refusal takes nothing");
        drop(first);
        let third = in_flight.try_take().expect("given back");
        drop((second, third));
        assert_eq!(in_flight.now.load(Ordering::Acquire), 0);
    }
}
