//! Latency histograms: log-linear buckets of atomic counters, written by one thread and read
//! by any (the same single-writer rule as [`crate::stats`]).
//!
//! Why not the hdrhistogram crate: its `Histogram` is not `Sync`, so recording from an engine
//! thread while `stats()` reads on the JS thread would take a lock per recorded message, or a
//! periodic merge of thousands of buckets. Here a record is one bucket index (a leading-zeros
//! count) and one relaxed load+store; a reader walks ~1000 counters, which is cheap for a
//! `stats()` call. Precision is that of an HDR histogram with 32 sub-buckets per power of two:
//! a reported percentile is at most ~3% above the true value, never below it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::counter::bump;

/// log2 of the sub-buckets per power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values from 2^MAX_EXP µs (≈ 19 hours) up are counted in the last bucket.
const MAX_EXP: u32 = 36;
const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize + 1;

/// Microseconds, one writer thread.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

/// What `stats()` reports per histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    /// The fields by their JS names, in the order they are shown.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("count", self.count),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p999", self.p999),
            ("max", self.max),
        ]
    }
}

fn index_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP {
        return BUCKETS - 1;
    }
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The highest value that lands in bucket `i`.
fn highest_in(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    ((SUB + sub) << shift) + (1 << shift) - 1
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Only ever called from the histogram's one writer thread.
    #[inline]
    pub fn record(&self, micros: u64) {
        bump(&self.buckets[index_of(micros)], 1);
        bump(&self.count, 1);
        if micros > self.max.load(Relaxed) {
            self.max.store(micros, Relaxed);
        }
    }

    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Percentiles as of now. A record racing with this read may be half-seen (its bucket but
    /// not yet the count): the quantiles are then off by that one record, which is harmless.
    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let max = self.max.load(Relaxed);
        if count == 0 {
            return Summary::default();
        }
        let quantile = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    // The last bucket is open-ended: the max is the only bound known for it.
                    return if i == BUCKETS - 1 {
                        max
                    } else {
                        highest_in(i).min(max)
                    };
                }
            }
            max
        };
        Summary {
            count,
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_within_three_percent() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, (1 << 35) + 12_345, u64::MAX]) {
            let i = index_of(v);
            assert!(i < BUCKETS);
            assert!(i >= last, "monotonic at {v}");
            last = i;
            if v < 1 << MAX_EXP {
                let hi = highest_in(i);
                assert!(hi >= v, "{v} reported as {hi}");
                assert!(
                    (hi - v) as f64 <= v as f64 / SUB as f64,
                    "{v} reported as {hi}"
                );
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        assert_eq!(h.summary(), Summary::default());
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, 1000);
        for (got, want) in [(s.p50, 500), (s.p90, 900), (s.p99, 990), (s.p999, 999)] {
            assert!(got >= want && got <= want + want / 32, "{got} for {want}");
        }
    }

    #[test]
    fn outliers_land_in_the_last_bucket_and_max_stays_exact() {
        let h = Histogram::default();
        h.record(3);
        h.record_duration(Duration::from_secs(100_000));
        let s = h.summary();
        assert_eq!(s.p50, 3);
        assert_eq!(s.max, 100_000_000_000);
        assert_eq!(s.p999, s.max);
    }
}
