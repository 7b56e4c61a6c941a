//! The aggregation cells measurements land in, and the accumulators the reporter merges them into.
//!
//! A cell belongs to one view row *and one thread*: only that thread writes it, so a write is a few plain
//! (relaxed) loads and stores, with no read-modify-write and no cache line shared with another recording
//! thread. The reporter reads every thread's cell of a row and merges them. `LastValue` is the exception: "the
//! last value" is only meaningful across threads, so its rows share one cell whose writes race harmlessly
//! (the last store wins, which is the definition).
//!
//! Distribution cells are updated under a sequence lock (written by the single writer, retried by the
//! reader), so a report never sees a count that disagrees with its buckets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering, fence};

use super::measure::Value;
use super::view_data::{AggregationData, DistributionData, MeasureKind};

/// What a view's cells aggregate, resolved once at registration.
#[derive(Clone, Debug)]
pub(crate) enum CellKind {
    Count,
    Sum(MeasureKind),
    Distribution(Arc<BucketIndex>),
    LastValue(MeasureKind),
}

impl CellKind {
    /// Whether all threads share one cell per row.
    pub(crate) fn shared_per_row(&self) -> bool {
        matches!(self, CellKind::LastValue(_))
    }

    pub(crate) fn new_cell(&self) -> Cell {
        match self {
            CellKind::Count => Cell::Count(AtomicU64::new(0)),
            CellKind::Sum(MeasureKind::Int64) => Cell::SumInt(AtomicI64::new(0)),
            CellKind::Sum(MeasureKind::Float64) => Cell::SumFloat(AtomicU64::new(0f64.to_bits())),
            CellKind::Distribution(index) => Cell::Distribution(DistributionCell::new(Arc::clone(index))),
            CellKind::LastValue(_) => {
                Cell::LastValue { bits: AtomicU64::new(0), set: AtomicBool::new(false) }
            }
        }
    }
}

/// One thread's (or, for last values, every thread's) aggregate of one view row.
#[derive(Debug)]
pub(crate) enum Cell {
    Count(AtomicU64),
    SumInt(AtomicI64),
    /// `f64` bits.
    SumFloat(AtomicU64),
    Distribution(DistributionCell),
    /// `i64` or `f64` bits, as the view's measure says; `set` once a value was stored.
    LastValue {
        bits: AtomicU64,
        set: AtomicBool,
    },
}

impl Cell {
    /// Adds one measurement. Only the owning thread calls this (except for `LastValue`, see the module docs).
    ///
    /// Out of line: with the distribution's update inlined into it, inlining it as well into the general
    /// record path made that path longer (439 -> 487 instructions a count + distribution record). The
    /// layers' shortcut inlines the common kinds itself ([`record_inline`](Self::record_inline)).
    #[inline(never)]
    pub(crate) fn record(&self, value: Value) {
        match self {
            Cell::Count(n) => n.store(n.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed),
            Cell::SumInt(sum) => {
                sum.store(sum.load(Ordering::Relaxed).wrapping_add(value.as_i64()), Ordering::Relaxed)
            }
            Cell::SumFloat(bits) => {
                let sum = f64::from_bits(bits.load(Ordering::Relaxed)) + value.as_f64();
                bits.store(sum.to_bits(), Ordering::Relaxed);
            }
            Cell::Distribution(d) => d.record(value.as_f64()),
            Cell::LastValue { bits, set } => {
                let raw = match value {
                    Value::Int(v) => v as u64,
                    Value::Float(v) => v.to_bits(),
                };
                bits.store(raw, Ordering::Relaxed);
                // Release pairs with the reporter's Acquire: once it sees `set`, it sees a value.
                set.store(true, Ordering::Release);
            }
        }
    }

    /// [`record`](Self::record) with a count's and a distribution's update inlined where it is called: the
    /// layers' shortcut, where a call and a jump on the kind cost as much as a count. `float` is `value` as
    /// a float, read by the caller beforehand (see `record_shortcut`).
    #[inline(always)]
    pub(crate) fn record_inline(&self, value: &Value, float: f64) {
        match self {
            Cell::Count(n) => n.store(n.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed),
            Cell::Distribution(d) => d.record(float),
            other => other.record(*value),
        }
    }

    /// Reads the cell into an accumulator; `None` for a last value never set.
    pub(crate) fn read(&self, kind: &CellKind) -> Option<Accumulator> {
        Some(match self {
            Cell::Count(n) => Accumulator::Count(n.load(Ordering::Relaxed)),
            Cell::SumInt(sum) => Accumulator::SumInt(sum.load(Ordering::Relaxed)),
            Cell::SumFloat(bits) => Accumulator::SumFloat(f64::from_bits(bits.load(Ordering::Relaxed))),
            Cell::Distribution(d) => Accumulator::Distribution(d.read()),
            Cell::LastValue { bits, set } => {
                if !set.load(Ordering::Acquire) {
                    return None;
                }
                let raw = bits.load(Ordering::Relaxed);
                match kind {
                    CellKind::LastValue(MeasureKind::Int64) => Accumulator::LastInt(raw as i64),
                    _ => Accumulator::LastFloat(f64::from_bits(raw)),
                }
            }
        })
    }
}

/// A histogram written by one thread under a sequence lock.
///
/// Values are kept as sums shifted by the cell's first value (`s1 = Σ(v-k)`, `s2 = Σ(v-k)²`): the variance
/// comes out as accurate as Welford's method without a division on every record.
#[derive(Debug)]
pub(crate) struct DistributionCell {
    /// Odd while the writer is mid-update.
    seq: AtomicU64,
    count: AtomicU64,
    shift: AtomicU64,
    s1: AtomicU64,
    s2: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    index: Arc<BucketIndex>,
    buckets: Box<[AtomicU64]>,
}

/// Bucket bounds, with what finds a value's bucket in a few instructions.
///
/// A value's bucket is the number of bounds `<= v` (bounds strictly increase). Counting over all bounds
/// is branch-free but costs one comparison per bound (34 for the latency bounds); a binary search makes each
/// step wait on the previous one. When every bound is positive, the value's binary exponent (a shift of its
/// bits) says which power-of-two octave it lies in; that octave's entry holds the number of bounds below it
/// and the next [`OCTAVE_WIDTH`] bounds from there (infinity past the last), so one load brings all that is
/// left to compare. The usual bounds (ochttp's latency and size bounds, powers of two, 1-2-5 series) have at
/// most four bounds per octave.
#[derive(Debug)]
pub(crate) struct BucketIndex {
    bounds: Arc<[f64]>,
    search: Search,
}

/// The most bounds one octave may hold for the octave search.
const OCTAVE_WIDTH: usize = 4;

/// A table longer than this (bounds spanning more than 64 octaves) is not worth its cache lines.
const MAX_OCTAVES: usize = 64;

#[derive(Debug)]
enum Search {
    /// Entry `i` is the octave whose biased exponent is `first_exponent + i`. The first entry also serves
    /// smaller values, zero and negatives (no bound is below them); the last also serves larger values
    /// (every bound is below them).
    /// `last` is the table's last index (the table has at least two entries).
    Octave { octaves: Box<[Octave]>, first_exponent: i64, last: i64 },
    /// Few bounds: count over all of them (vectorized, no dependent loads).
    Count,
    /// Many bounds spread widely: binary search.
    Binary,
}

#[derive(Debug)]
struct Octave {
    /// The number of bounds below the octave.
    below: usize,
    /// The bounds from there: the octave's own, then greater ones or infinity, which no value in the
    /// octave reaches.
    next: [f64; OCTAVE_WIDTH],
}

/// The biased binary exponent of a positive `v` (0 for subnormals), negative for negative values and -0.0.
#[inline]
fn exponent(v: f64) -> i64 {
    (v.to_bits() as i64) >> 52
}

impl BucketIndex {
    /// The index of `bounds`, which the view checked: finite and strictly increasing.
    pub(crate) fn new(bounds: Arc<[f64]>) -> BucketIndex {
        let search = Self::octave_search(&bounds).unwrap_or(if bounds.len() <= 64 {
            Search::Count
        } else {
            Search::Binary
        });
        BucketIndex { bounds, search }
    }

    fn octave_search(bounds: &[f64]) -> Option<Search> {
        let (&lowest, &highest) = (bounds.first()?, bounds.last()?);
        if lowest <= 0.0 {
            return None;
        }
        let first_exponent = exponent(lowest);
        // One entry per octave holding a bound, and one past the last for every larger value.
        let count = usize::try_from(exponent(highest) - first_exponent).ok()? + 2;
        if count > MAX_OCTAVES {
            return None;
        }
        let mut octaves = Vec::with_capacity(count);
        for e in (first_exponent..).take(count) {
            let below = bounds.partition_point(|&b| exponent(b) < e);
            let end = bounds.partition_point(|&b| exponent(b) <= e);
            if end - below > OCTAVE_WIDTH {
                return None;
            }
            let mut next = [f64::INFINITY; OCTAVE_WIDTH];
            for (slot, &bound) in next.iter_mut().zip(&bounds[below..]) {
                *slot = bound;
            }
            octaves.push(Octave { below, next });
        }
        let last = i64::try_from(octaves.len()).ok()? - 1;
        Some(Search::Octave { octaves: octaves.into(), first_exponent, last })
    }

    /// The bucket of a finite `v`: the number of bounds `<= v`.
    #[inline(always)]
    pub(crate) fn bucket(&self, v: f64) -> usize {
        // The octave search first and alone, with its clamp's bounds precomputed (`clamp` checks them on
        // every call): the latency and size bounds all take it, inlined into the layers' records.
        if let Search::Octave { octaves, first_exponent, last } = &self.search {
            let i = (exponent(v) - first_exponent).max(0).min(*last) as usize;
            // Always there: `i` was clamped to the table.
            return octaves
                .get(i)
                .map_or(0, |o| o.below + o.next.iter().map(|&b| usize::from(b <= v)).sum::<usize>());
        }
        self.bucket_without_octaves(v)
    }

    /// [`bucket`](Self::bucket) for bounds the octave search does not take.
    #[inline(never)]
    fn bucket_without_octaves(&self, v: f64) -> usize {
        match &self.search {
            Search::Count => self.bounds.iter().map(|&b| usize::from(b <= v)).sum(),
            // The octave search does not come here; a binary search is right for it too.
            Search::Binary | Search::Octave { .. } => self.bounds.partition_point(|&b| b <= v),
        }
    }
}

fn load_f64(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

fn store_f64(a: &AtomicU64, v: f64) {
    a.store(v.to_bits(), Ordering::Relaxed)
}

impl DistributionCell {
    fn new(index: Arc<BucketIndex>) -> Self {
        let buckets = (0..=index.bounds.len()).map(|_| AtomicU64::new(0)).collect();
        DistributionCell {
            seq: AtomicU64::new(0),
            count: AtomicU64::new(0),
            shift: AtomicU64::new(0),
            s1: AtomicU64::new(0),
            s2: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            index,
            buckets,
        }
    }

    /// `v` is finite (the recorder drops NaN and infinities before they get here).
    #[inline(always)]
    fn record(&self, v: f64) {
        // Bucket i holds bounds[i-1] <= v < bounds[i]: the number of bounds <= v. A value equal to a bound
        // goes up; anything below the first bound, negatives included, lands in bucket 0.
        let bucket = self.index.bucket(v);

        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd sequence number before the data stores, for a reader that sees any of them.
        fence(Ordering::Release);

        let n = self.count.load(Ordering::Relaxed);
        let k = if n == 0 {
            store_f64(&self.shift, v);
            v
        } else {
            load_f64(&self.shift)
        };
        let d = v - k;
        store_f64(&self.s1, load_f64(&self.s1) + d);
        store_f64(&self.s2, load_f64(&self.s2) + d * d);
        store_f64(&self.sum, load_f64(&self.sum) + v);
        if v < load_f64(&self.min) {
            store_f64(&self.min, v);
        }
        if v > load_f64(&self.max) {
            store_f64(&self.max, v);
        }
        let b = &self.buckets[bucket];
        b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.count.store(n + 1, Ordering::Relaxed);

        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    fn read(&self) -> DistributionAccumulator {
        let mut buckets = vec![0u64; self.buckets.len()];
        let mut spins = 0u32;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                let count = self.count.load(Ordering::Relaxed);
                let s1 = load_f64(&self.s1);
                let s2 = load_f64(&self.s2);
                let sum = load_f64(&self.sum);
                let min = load_f64(&self.min);
                let max = load_f64(&self.max);
                for (out, b) in buckets.iter_mut().zip(self.buckets.iter()) {
                    *out = b.load(Ordering::Relaxed);
                }
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    let (mean, m2) = if count == 0 {
                        (0.0, 0.0)
                    } else {
                        let n = count as f64;
                        (sum / n, (s2 - s1 * s1 / n).max(0.0))
                    };
                    return DistributionAccumulator { count, sum, mean, m2, min, max, buckets };
                }
            }
            // The writer is mid-update: a few instructions away, unless it was preempted.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// The merged aggregate of one row while a report is built.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Accumulator {
    Count(u64),
    SumInt(i64),
    SumFloat(f64),
    Distribution(DistributionAccumulator),
    LastInt(i64),
    LastFloat(f64),
}

/// Count, mean and sum of squared deviations (`m2`) in the form that merges exactly (Chan et al.).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DistributionAccumulator {
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) mean: f64,
    pub(crate) m2: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) buckets: Vec<u64>,
}

impl Accumulator {
    /// Folds `other` (a later or concurrent part of the same row) into `self`.
    pub(crate) fn merge(&mut self, other: Accumulator) {
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a = a.wrapping_add(b),
            (Accumulator::SumInt(a), Accumulator::SumInt(b)) => *a = a.wrapping_add(b),
            (Accumulator::SumFloat(a), Accumulator::SumFloat(b)) => *a += b,
            (Accumulator::Distribution(a), Accumulator::Distribution(b)) => a.merge(b),
            // Last values live in one shared cell per row, so there is nothing to merge: keep the newer.
            (last @ (Accumulator::LastInt(_) | Accumulator::LastFloat(_)), other) => *last = other,
            // Cells of one row all come from the row's CellKind, so kinds never differ.
            (_, _) => {}
        }
    }

    pub(crate) fn into_data(self) -> AggregationData {
        match self {
            Accumulator::Count(n) => AggregationData::Count(i64::try_from(n).unwrap_or(i64::MAX)),
            Accumulator::SumInt(s) => AggregationData::SumInt64(s),
            Accumulator::SumFloat(s) => AggregationData::SumFloat64(s),
            Accumulator::Distribution(d) => AggregationData::Distribution(DistributionData {
                count: i64::try_from(d.count).unwrap_or(i64::MAX),
                sum: d.sum,
                sum_of_squared_deviation: d.m2,
                min: d.min,
                max: d.max,
                bucket_counts: d.buckets.into_iter().map(|c| i64::try_from(c).unwrap_or(i64::MAX)).collect(),
            }),
            Accumulator::LastInt(v) => AggregationData::LastValueInt64(v),
            Accumulator::LastFloat(v) => AggregationData::LastValueFloat64(v),
        }
    }
}

impl DistributionAccumulator {
    fn merge(&mut self, b: DistributionAccumulator) {
        if b.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = b;
            return;
        }
        let (na, nb) = (self.count as f64, b.count as f64);
        let n = na + nb;
        let delta = b.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += b.m2 + delta * delta * na * nb / n;
        self.count += b.count;
        self.sum += b.sum;
        self.min = self.min.min(b.min);
        self.max = self.max.max(b.max);
        for (a, b) in self.buckets.iter_mut().zip(b.buckets) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(bounds: &[f64], values: &[f64]) -> DistributionAccumulator {
        let kind = CellKind::Distribution(Arc::new(BucketIndex::new(bounds.into())));
        let cell = kind.new_cell();
        for &v in values {
            cell.record(Value::Float(v));
        }
        match cell.read(&kind) {
            Some(Accumulator::Distribution(d)) => d,
            other => panic!("expected a distribution, got {other:?}"),
        }
    }

    #[test]
    fn value_equal_to_a_bound_goes_to_the_upper_bucket() {
        let d = dist(&[1.0, 2.0, 4.0], &[0.5, 1.0, 1.5, 2.0, 3.999, 4.0, 100.0]);
        assert_eq!(d.buckets, vec![1, 2, 2, 2]);
        assert_eq!(d.count, 7);
    }

    #[test]
    fn negative_values_land_in_the_first_bucket() {
        let d = dist(&[0.0, 10.0], &[-5.0, -0.0001, 0.0, 10.0]);
        assert_eq!(d.buckets, vec![2, 1, 1]);
        assert_eq!(d.min, -5.0);
        assert_eq!(d.max, 10.0);
        // Positive bounds take the octave search, which reads the exponent bits: signs must not fool it.
        let d = dist(&[1.0, 2.0], &[-5.0, -0.0, 0.0, -1e300, f64::MIN_POSITIVE, 5e-324]);
        assert_eq!(d.buckets, vec![6, 0, 0]);
    }

    fn is_octave(index: &BucketIndex) -> bool {
        matches!(index.search, Search::Octave { .. })
    }

    #[test]
    fn every_search_agrees_with_a_binary_search() {
        use crate::layer::{LATENCY_BOUNDS_MS, SIZE_BOUNDS_BYTES};
        let linear: Vec<f64> = (0..100).map(|i| f64::from(i) * 1.5 - 10.0).collect();
        let powers: Vec<f64> = (-20..40).map(|e| 2f64.powi(e)).collect();
        let tiny = [5e-324, 1e-320, f64::MIN_POSITIVE, 1e-300];
        let huge = [1.0, 1e300, f64::MAX];
        let dense: Vec<f64> = (1..=40).map(f64::from).collect();
        let cases: [(&[f64], bool); 10] = [
            (&LATENCY_BOUNDS_MS, true),
            (&SIZE_BOUNDS_BYTES, true),
            (&powers, true),
            (&tiny, true),
            (&[0.5], true),
            (&huge, false),
            (&dense, false),
            (&linear, false),
            (&linear[..34], false),
            (&[], false),
        ];
        for (bounds, octave) in cases {
            let index = BucketIndex::new(bounds.into());
            assert_eq!(is_octave(&index), octave, "search chosen for {bounds:?}");
            let mut values = vec![-1e308, -100.0, -1.0, -0.0, 0.0, 5e-324, 1e-310, 1e-300, 1e300, f64::MAX];
            for &b in bounds {
                values.extend([b, b.next_down(), b.next_up(), b * 0.75, b * 1.5, b * 2.0]);
            }
            for v in values.into_iter().filter(|v| v.is_finite()) {
                assert_eq!(index.bucket(v), bounds.partition_point(|&b| b <= v), "{v:e} in {bounds:?}");
            }
        }
    }

    #[test]
    fn no_bounds_is_one_bucket() {
        let d = dist(&[], &[-1.0, 0.0, 1e12]);
        assert_eq!(d.buckets, vec![3]);
    }

    #[test]
    fn mean_and_squared_deviation_match_the_textbook() {
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let d = dist(&[5.0], &values);
        assert_eq!(d.sum, 40.0);
        assert_eq!(d.mean, 5.0);
        // Σ(v-5)² = 9+1+1+1+0+0+4+16.
        assert!((d.m2 - 32.0).abs() < 1e-9, "m2 = {}", d.m2);
    }

    #[test]
    fn merging_partials_equals_recording_everything_in_one_cell() {
        let all = [1e6 + 1.0, 1e6 + 2.0, 1e6 + 3.0, 1e6 + 10.0, 1e6 - 4.0];
        let whole = dist(&[1e6], &all);
        let mut merged = Accumulator::Distribution(dist(&[1e6], &all[..2]));
        merged.merge(Accumulator::Distribution(dist(&[1e6], &all[2..])));
        merged.merge(Accumulator::Distribution(dist(&[1e6], &[])));
        let Accumulator::Distribution(merged) = merged else { unreachable!("merge keeps the kind") };
        assert_eq!(merged.count, whole.count);
        assert_eq!(merged.buckets, whole.buckets);
        assert_eq!(merged.sum, whole.sum);
        assert!((merged.m2 - whole.m2).abs() < 1e-6, "{} vs {}", merged.m2, whole.m2);
        assert_eq!((merged.min, merged.max), (1e6 - 4.0, 1e6 + 10.0));
    }

    #[test]
    fn last_value_is_absent_until_set_and_keeps_the_sign_of_ints() {
        let kind = CellKind::LastValue(MeasureKind::Int64);
        let cell = kind.new_cell();
        assert_eq!(cell.read(&kind), None);
        cell.record(Value::Int(-3));
        assert_eq!(cell.read(&kind), Some(Accumulator::LastInt(-3)));
    }
}
