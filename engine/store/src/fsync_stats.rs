//! How long the log's fsyncs take: a histogram its owner reads for metrics,
//! and a warning for each one slower than [`SLOW_FSYNC`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram's buckets, in seconds (a last bucket takes
/// everything slower).
pub const FSYNC_BUCKETS_SECONDS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// An fsync at least this slow is logged at WARN.
pub const SLOW_FSYNC: Duration = Duration::from_secs(1);

/// Counts of the log's fsyncs by duration. Updated by the log's sync thread,
/// read from anywhere; all counters are relaxed atomics.
#[derive(Debug, Default)]
pub struct FsyncStats {
    /// Per bucket of [`FSYNC_BUCKETS_SECONDS`], then the overflow bucket.
    buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// One reading of [`FsyncStats`].
#[derive(Debug, Clone, PartialEq)]
pub struct FsyncSnapshot {
    /// Fsyncs done.
    pub count: u64,
    /// Their total duration in seconds.
    pub sum_seconds: f64,
    /// `(upper bound in seconds, fsyncs at or under it)`, cumulative, one per
    /// bound of [`FSYNC_BUCKETS_SECONDS`].
    pub buckets: Vec<(f64, u64)>,
}

impl FsyncStats {
    /// Counts one fsync that took `d`.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = FSYNC_BUCKETS_SECONDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(FSYNC_BUCKETS_SECONDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> FsyncSnapshot {
        let mut total = 0;
        let buckets = FSYNC_BUCKETS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(&b, n)| {
                total += n.load(Ordering::Relaxed);
                (b, total)
            })
            .collect();
        FsyncSnapshot {
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_slowest_only_count() {
        let s = FsyncStats::default();
        s.record(Duration::from_micros(300));
        s.record(Duration::from_millis(3));
        s.record(Duration::from_millis(3));
        s.record(Duration::from_secs(5));
        let r = s.snapshot();
        assert_eq!(r.count, 4);
        assert!((r.sum_seconds - 5.0063).abs() < 1e-9, "{r:?}");
        let at = |le: f64| r.buckets.iter().find(|(b, _)| *b == le).map(|(_, n)| *n);
        assert_eq!(at(0.000_5), Some(1));
        assert_eq!(at(0.002), Some(1));
        assert_eq!(at(0.005), Some(3));
        assert_eq!(at(2.5), Some(3), "5 s is only in the count");
    }
}
