//! A fixed-size log2 histogram for metrics: bucket `i` counts values `v` with
//! `2^(i-1) < v <= 2^i` (bucket 0: `v <= 1`). Recording is two adds and a leading-zeros count,
//! cheap enough for every flush and every request; the buckets map directly onto a Prometheus
//! histogram's cumulative `le` buckets. For exact percentiles the benchmarks use HDR histograms
//! on the client side; this one answers "where is the time going" on a live server.

/// Buckets: values up to 2^39 (≈ 6 days in µs, 512 GiB in bytes); larger ones land in the last.
pub const LOG2_BUCKETS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log2Histogram {
    pub counts: [u64; LOG2_BUCKETS],
    pub count: u64,
    pub sum: u64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Self { counts: [0; LOG2_BUCKETS], count: 0, sum: 0 }
    }
}

impl Log2Histogram {
    /// The bucket of `v`: the smallest `i` with `v <= 2^i`.
    pub fn bucket_of(v: u64) -> usize {
        let i = if v <= 1 { 0 } else { (64 - (v - 1).leading_zeros()) as usize };
        i.min(LOG2_BUCKETS - 1)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::bucket_of(v)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
    }

    pub fn merge(&mut self, other: &Log2Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// (upper bound 2^i, cumulative count) for buckets `0..=last`, where `last` is the highest
    /// non-empty bucket (at least `min_last`); what a Prometheus histogram lists before `+Inf`.
    pub fn cumulative(&self, min_last: usize) -> Vec<(u64, u64)> {
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0).max(min_last).min(LOG2_BUCKETS - 1);
        let mut total = 0;
        (0..=last)
            .map(|i| {
                total += self.counts[i];
                (1u64 << i, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        assert_eq!(Log2Histogram::bucket_of(0), 0);
        assert_eq!(Log2Histogram::bucket_of(1), 0);
        assert_eq!(Log2Histogram::bucket_of(2), 1);
        assert_eq!(Log2Histogram::bucket_of(3), 2);
        assert_eq!(Log2Histogram::bucket_of(4), 2);
        assert_eq!(Log2Histogram::bucket_of(5), 3);
        assert_eq!(Log2Histogram::bucket_of(1 << 20), 20);
        assert_eq!(Log2Histogram::bucket_of((1 << 20) + 1), 21);
        assert_eq!(Log2Histogram::bucket_of(u64::MAX), LOG2_BUCKETS - 1);
        for v in [0u64, 1, 2, 3, 7, 8, 9, 1000, 123_456_789] {
            let i = Log2Histogram::bucket_of(v);
            assert!(v <= 1 << i);
            assert!(i == 0 || v > 1 << (i - 1));
        }
    }

    #[test]
    fn cumulative_counts() {
        let mut h = Log2Histogram::default();
        for v in [1, 3, 4, 100] {
            h.record(v);
        }
        let c = h.cumulative(0);
        assert_eq!(c.len(), 8);
        assert_eq!(c[0], (1, 1));
        assert_eq!(c[2], (4, 3));
        assert_eq!(c[7], (128, 4));
        assert_eq!((h.count, h.sum), (4, 108));
        let mut m = h;
        m.merge(&h);
        assert_eq!((m.count, m.cumulative(0)[7].1), (8, 8));
    }
}
