//! Commits that held an answer back. The sender is answered only after its exchange is
//! committed, so a store that stalls (another process holding its write lock, a slow disk)
//! makes callbacks wait, and an exchange's `duration_ms` does not count that wait. A stall
//! holds back every exchange waiting at the time, so it is reported once, by the first of
//! them, and stalls are reported at most every [`REPORT_EVERY`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A commit that holds its answer back this long is worth saying (one normally takes well
/// under a millisecond).
pub const SLOW_COMMIT: Duration = Duration::from_millis(200);

/// How often held-back commits are reported, at most.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct SlowCommits {
    /// When the last report went out.
    reported_at: Mutex<Option<Instant>>,
}

impl SlowCommits {
    /// Notes that recording `what` (`POST /cb`, made only if it is said) held its answer back
    /// `held`; the message to report, if it is long enough and the last report is old enough.
    pub fn note(&self, held: Duration, what: impl FnOnce() -> String) -> Option<String> {
        self.note_at(held, what, Instant::now())
    }

    fn note_at(
        &self,
        held: Duration,
        what: impl FnOnce() -> String,
        now: Instant,
    ) -> Option<String> {
        if held < SLOW_COMMIT {
            return None;
        }
        let mut reported_at = self.reported_at.lock().unwrap_or_else(|e| e.into_inner());
        if reported_at.is_some_and(|at| now.saturating_duration_since(at) < REPORT_EVERY) {
            return None;
        }
        *reported_at = Some(now);
        Some(format!(
            "recording {} took {:.2} s: the store was slow (another process holding its \
             lock, or a slow disk), and the sender waited that much longer than the \
             exchange's duration shows",
            what(),
            held.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_reported_once_and_stalls_at_most_every_ten_seconds() {
        let slow = SlowCommits::default();
        let held = Duration::from_millis(310);
        let start = Instant::now();
        assert_eq!(
            slow.note_at(Duration::from_millis(2), || "POST /a".into(), start),
            None
        );
        let first = slow.note_at(held, || "POST /a".into(), start).unwrap();
        assert_eq!(
            first,
            "recording POST /a took 0.31 s: the store was slow (another process holding its \
             lock, or a slow disk), and the sender waited that much longer than the \
             exchange's duration shows"
        );
        // The others the same stall held back.
        for i in 1..=3 {
            let now = start + Duration::from_millis(i);
            assert_eq!(slow.note_at(held, || "POST /b".into(), now), None);
        }
        let next = slow
            .note_at(held, || "POST /c".into(), start + REPORT_EVERY)
            .unwrap();
        assert!(next.starts_with("recording POST /c took 0.31 s"), "{next}");
    }
}
