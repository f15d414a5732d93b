//! Callback health, kept up to date as exchanges arrive: counts by status class and by
//! signature verdict, and per path the latency distribution and failures. The Vobiz docs tell
//! users to monitor callback health; this is that monitor.

use std::collections::HashMap;

use crate::store::{ExchangeSummary, Tally};

/// Latencies kept per path for percentiles (the most recent ones).
const SAMPLES_PER_PATH: usize = 1000;

/// Statistics of one path.
#[derive(Clone, Debug, Default)]
pub struct PathStats {
    pub count: u64,
    /// Answers of 4xx/5xx, or no answer at all.
    pub failures: u64,
    pub slow: u64,
    durations_ms: Vec<f64>,
    next: usize,
}

impl PathStats {
    fn add(&mut self, summary: &ExchangeSummary) {
        self.count += 1;
        if summary.status.is_none_or(|s| s >= 400) {
            self.failures += 1;
        }
        if let Some(ms) = summary.duration_ms {
            if ms > crate::exchange::SLOW_AFTER_MS {
                self.slow += 1;
            }
            if self.durations_ms.len() < SAMPLES_PER_PATH {
                self.durations_ms.push(ms);
            } else {
                self.durations_ms[self.next] = ms;
                self.next = (self.next + 1) % SAMPLES_PER_PATH;
            }
        }
    }

    /// Percentile `p` (0–100) of the recent latencies, in ms (nearest-rank definition).
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.durations_ms.is_empty() {
            return None;
        }
        let mut sorted = self.durations_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
    }
}

/// Health of everything seen.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Index 0: no status; 1–5: 1xx–5xx.
    pub by_class: [u64; 6],
    /// valid, invalid, unsigned, unchecked.
    pub by_verdict: [u64; 4],
    pub paths: HashMap<String, PathStats>,
}

impl Health {
    pub fn add(&mut self, summary: &ExchangeSummary) {
        self.count(
            Tally::class_index(summary.status),
            Tally::verdict_index(summary.signature),
        );
        self.add_path(summary);
    }

    /// One more exchange in the counts, by the indexes of [`Tally`].
    pub fn count(&mut self, class: usize, verdict: usize) {
        self.by_class[class] += 1;
        self.by_verdict[verdict] += 1;
    }

    /// One more exchange in its path's latency and failure figures, not in the counts.
    pub fn add_path(&mut self, summary: &ExchangeSummary) {
        self.paths
            .entry(summary.path.clone())
            .or_default()
            .add(summary);
    }

    /// Paths by descending p95 latency (the slowest first).
    pub fn slowest(&self) -> Vec<(&str, &PathStats)> {
        let mut paths: Vec<_> = self.paths.iter().map(|(p, s)| (p.as_str(), s)).collect();
        paths.sort_by(|a, b| {
            let pa = a.1.percentile(95.0).unwrap_or(0.0);
            let pb = b.1.percentile(95.0).unwrap_or(0.0);
            pb.total_cmp(&pa).then(a.0.cmp(b.0))
        });
        paths
    }

    /// The store's own counts replace those of the rows seen so far; the per-path statistics
    /// stay those of the rows seen (the loaded page and every arrival).
    pub fn set_counts(&mut self, tally: &Tally) {
        self.by_class = tally.by_class;
        self.by_verdict = tally.by_verdict;
    }

    pub fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Outcome;
    use crate::signature::VerdictStatus;

    fn summary(path: &str, status: Option<u16>, ms: f64) -> ExchangeSummary {
        ExchangeSummary {
            id: Some(1),
            received_at_us: 0,
            method: "POST".into(),
            path: path.into(),
            target: path.into(),
            status,
            duration_ms: Some(ms),
            signature: VerdictStatus::Valid,
            signature_scheme: None,
            event: None,
            call_uuid: None,
            outcome: Outcome::Forwarded,
            flags: Vec::new(),
            replay_of: None,
            error: None,
            findings: Vec::new(),
        }
    }

    #[test]
    fn percentiles_failures_and_ordering() {
        let mut health = Health::default();
        for ms in 1..=100 {
            health.add(&summary("/fast", Some(200), ms as f64 / 10.0));
        }
        health.add(&summary("/slow", Some(502), 4000.0));
        health.add(&summary("/slow", None, 10.0));
        let fast = &health.paths["/fast"];
        assert_eq!(fast.percentile(50.0), Some(5.0));
        assert_eq!(fast.percentile(95.0), Some(9.5));
        let slow = &health.paths["/slow"];
        assert_eq!((slow.count, slow.failures, slow.slow), (2, 2, 1));
        assert_eq!(health.slowest()[0].0, "/slow");
        assert_eq!(health.by_class[2], 100);
        assert_eq!(health.by_class[5], 1);
        assert_eq!(health.by_class[0], 1);
        assert_eq!(health.total(), 102);
    }
}
