//! Commits that held an answer back. The sender is answered only after its exchange is
//! committed, so a store that stalls (another process holding its write lock, a slow disk)
//! makes callbacks wait, and an exchange's `duration_ms` does not count that wait. A stall
//! holds back every exchange waiting at the time: it is reported once, with a count, and
//! again at most every [`REPORT_EVERY`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::exchange::now_micros;

/// A commit that holds its answer back this long is worth saying (one normally takes well
/// under a millisecond).
pub const SLOW_COMMIT: Duration = Duration::from_millis(200);

/// How often held-back commits are reported, at most.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct SlowCommits {
    /// When the last report went out (µs since the epoch; 0: never).
    reported_at_us: AtomicI64,
    /// Held-back commits since then, not reported one by one.
    unreported: AtomicU64,
}

impl SlowCommits {
    /// Notes that recording `what` (`POST /cb`) held its answer back `held`; the message to
    /// report, if it is long enough and the last report is old enough.
    pub fn note(&self, held: Duration, what: &str) -> Option<String> {
        self.note_at(held, what, now_micros())
    }

    fn note_at(&self, held: Duration, what: &str, now_us: i64) -> Option<String> {
        if held < SLOW_COMMIT {
            return None;
        }
        let last = self.reported_at_us.load(Ordering::Acquire);
        let due = last == 0 || now_us.saturating_sub(last) >= REPORT_EVERY.as_micros() as i64;
        let ours = due
            && self
                .reported_at_us
                .compare_exchange(last, now_us, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if !ours {
            self.unreported.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        let others = self.unreported.swap(0, Ordering::AcqRel);
        let more = match others {
            0 => String::new(),
            n => format!(" ({n} more held back since the last report)"),
        };
        Some(format!(
            "recording {what} took {:.2} s: the store was slow (another process holding its \
             lock, or a slow disk), and the sender waited that much longer than the \
             exchange's duration shows{more}",
            held.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_reported_once_then_counted_until_the_next_report() {
        let slow = SlowCommits::default();
        let held = Duration::from_millis(310);
        let start = 1_000_000_000;
        assert_eq!(
            slow.note_at(Duration::from_millis(2), "POST /a", start),
            None
        );
        let first = slow.note_at(held, "POST /a", start).unwrap();
        assert_eq!(
            first,
            "recording POST /a took 0.31 s: the store was slow (another process holding its \
             lock, or a slow disk), and the sender waited that much longer than the \
             exchange's duration shows"
        );
        for i in 1..=3 {
            assert_eq!(slow.note_at(held, "POST /b", start + i), None);
        }
        let later = start + REPORT_EVERY.as_micros() as i64;
        let next = slow.note_at(held, "POST /c", later).unwrap();
        assert!(next.starts_with("recording POST /c took 0.31 s"), "{next}");
        assert!(
            next.ends_with(" (3 more held back since the last report)"),
            "{next}"
        );
    }
}
