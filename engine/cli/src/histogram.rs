//! A log-linear latency histogram: fixed memory, about 1.6% relative error,
//! O(1) record. Each worker keeps its own and they are merged at the end, so
//! recording never contends.

use std::time::Duration;

/// Sub-buckets per power of two (2^6 = 64: relative error under 1/64).
const SUB_BITS: u32 = 6;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Values are nanoseconds; 64 powers of two cover every `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB_COUNT;

/// Counts of latencies in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUB_COUNT as u64 {
        return ns as usize;
    }
    let magnitude = 63 - ns.leading_zeros(); // >= SUB_BITS
    let shift = magnitude - SUB_BITS;
    let sub = (ns >> shift) as usize & (SUB_COUNT - 1);
    ((shift as usize + 1) << SUB_BITS) + sub
}

/// The largest value that falls in `bucket` (a conservative percentile).
fn upper_bound_of(bucket: usize) -> u64 {
    if bucket < SUB_COUNT {
        return bucket as u64;
    }
    let shift = (bucket >> SUB_BITS) as u32 - 1;
    let sub = (bucket & (SUB_COUNT - 1)) as u64;
    let low = (SUB_COUNT as u64 + sub) << shift;
    low + ((1u64 << shift) - 1)
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(ns)] += 1;
        self.total += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The mean, or zero when empty.
    pub fn mean(&self) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            u64::try_from(self.sum_ns / u128::from(self.total)).unwrap_or(u64::MAX),
        )
    }

    /// The largest recorded value.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The value at quantile `q` (0.0..=1.0), rounded up to its bucket's bound.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(upper_bound_of(bucket).min(self.max_ns));
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in (0..10_000_000u64)
            .step_by(997)
            .chain([u64::MAX / 3, u64::MAX])
        {
            let b = bucket_of(ns);
            assert!(b >= last, "bucket of {ns} went backwards");
            assert!(b < BUCKETS);
            let upper = upper_bound_of(b);
            assert!(upper >= ns, "upper bound {upper} below {ns}");
            assert!(
                (upper - ns) as f64 <= ns as f64 / 60.0 + 1.0,
                "{ns} -> {upper} too loose"
            );
            last = b;
        }
    }

    #[test]
    fn quantiles_of_a_uniform_sample() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros();
        let p99 = h.quantile(0.99).as_micros();
        assert!((495..=510).contains(&p50), "p50 {p50}");
        assert!((985..=1000).contains(&p99), "p99 {p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(h.quantile(1.0), Duration::from_micros(1000));
        let mut other = Histogram::default();
        other.record(Duration::from_millis(5));
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert_eq!(h.max(), Duration::from_millis(5));
    }
}
