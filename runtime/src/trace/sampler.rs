//! Sampling: which traces are recorded and exported.
//!
//! The decision is taken once per trace, at its root, by the process-wide [`Sampler`]. Children started
//! from a span of this process follow their parent's decision. A child of a remote parent (one extracted
//! from request headers) is sampled when the parent says so, as opencensus-go does; when the parent says
//! "not sampled" (or B3 leaves the decision to us) the sampler decides as for a root.
//!
//! The sampler can be swapped at run time ([`set_sampler`]): `init` sets it from `sample_rate`, and the
//! ocagent exporter applies what the agent pushes. Reading it is one relaxed atomic load: the active sampler
//! is encoded into a single `u64`, so the hot path never takes a lock nor touches a reference count.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::TraceId;

/// Which traces to record. The set that opencensus-proto's `trace_config.proto` can push.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// No trace: only spans whose per-span sampler says otherwise.
    AlwaysOff,
    /// This fraction of traces, 0.0..=1.0. The decision is a function of the trace id, so every service
    /// using the same probability agrees on the same traces. Out-of-range values are clamped, NaN is 0.
    Probability(f64),
    /// At most this many new traces per second, with bursts of up to one second's worth. Values below
    /// zero or NaN sample nothing. The budget is process-wide: a per-span rate-limiting sampler
    /// ([`SpanBuilder::sampler`](super::SpanBuilder::sampler)) draws from the same one.
    RateLimiting(f64),
    /// Follow the remote parent's flag; a root is not sampled (`ALWAYS_PARENT` in `trace_config.proto`:
    /// "off if no parent").
    AlwaysParent,
}

impl Sampler {
    /// The sampler for KrakenD's `sample_rate` percent: 0 never, 100 always, in between by probability.
    pub fn from_sample_rate(percent: u8) -> Sampler {
        match percent {
            0 => Sampler::AlwaysOff,
            100.. => Sampler::AlwaysOn,
            p => Sampler::Probability(f64::from(p) / 100.0),
        }
    }

    /// Decides for one span, as the global sampler would. `remote_parent_sampled` is the flag of a parent
    /// extracted from headers, `None` for a root.
    pub fn should_sample(&self, trace_id: &TraceId, remote_parent_sampled: Option<bool>) -> bool {
        decide(encode(*self), || trace_id.high_u64(), remote_parent_sampled)
    }

    /// [`Sampler::should_sample`] given how to get the trace id's high half ([`TraceId::high_u64`]), which
    /// only the probability sampler reads: a span whose ids are not drawn yet derives only that.
    #[inline]
    pub(crate) fn should_sample_high(
        &self,
        trace_high: impl FnOnce() -> u64,
        remote_parent_sampled: Option<bool>,
    ) -> bool {
        decide(encode(*self), trace_high, remote_parent_sampled)
    }
}

impl Default for Sampler {
    /// Off: nothing is recorded until `init` (or the user) chooses.
    fn default() -> Self {
        Sampler::AlwaysOff
    }
}

// The encoding: the kind in the top 3 bits, a parameter in the other 61.
const KIND_SHIFT: u32 = 61;
const PARAM_MASK: u64 = (1 << KIND_SHIFT) - 1;
const KIND_OFF: u64 = 0;
const KIND_ON: u64 = 1;
/// Parameter: the threshold the top 61 bits of the trace id must stay below.
const KIND_PROBABILITY: u64 = 2;
/// Parameter: nanoseconds between two admitted traces.
const KIND_RATE: u64 = 3;
const KIND_PARENT: u64 = 4;

fn encode(sampler: Sampler) -> u64 {
    let (kind, param) = match sampler {
        Sampler::AlwaysOn => (KIND_ON, 0),
        Sampler::AlwaysOff => (KIND_OFF, 0),
        Sampler::AlwaysParent => (KIND_PARENT, 0),
        Sampler::Probability(p) if p.is_nan() || p <= 0.0 => (KIND_OFF, 0),
        Sampler::Probability(p) if p >= 1.0 => (KIND_ON, 0),
        // p < 1, so the product stays below 2^61 and the cast is exact enough (53 bits of p).
        Sampler::Probability(p) => (KIND_PROBABILITY, (p * (1u64 << KIND_SHIFT) as f64) as u64),
        Sampler::RateLimiting(per_second) if per_second.is_nan() || per_second <= 0.0 => (KIND_OFF, 0),
        Sampler::RateLimiting(per_second) => {
            // At least 1 ns apart: faster than a billion a second is "always" anyway. The cast saturates.
            let interval = ((1e9 / per_second) as u64).clamp(1, PARAM_MASK);
            (KIND_RATE, interval)
        }
    };
    (kind << KIND_SHIFT) | param
}

/// The active sampler, encoded. Starts off: nothing is recorded before `init`.
static ACTIVE: AtomicU64 = AtomicU64::new(KIND_OFF << KIND_SHIFT);
/// The sampler as it was set, for [`sampler()`]: the encoding rounds probabilities.
static AS_SET: Mutex<Sampler> = Mutex::new(Sampler::AlwaysOff);
/// The budget of the rate-limiting sampler, shared by every thread. On cache lines of its own: each trace
/// it admits writes it, and the sampler beside it is read by every span start, sampled or not.
static RATE_LIMITER: CachePadded<RateLimiter> = CachePadded::new(RateLimiter::new());

/// Replaces the process-wide sampler. Spans already started keep their decision.
pub fn set_sampler(sampler: Sampler) {
    let mut as_set = AS_SET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A new rate starts with a full budget, not with the debt of the previous one.
    RATE_LIMITER.reset();
    ACTIVE.store(encode(sampler), Ordering::Relaxed);
    *as_set = sampler;
}

/// The process-wide sampler, as last set.
pub fn sampler() -> Sampler {
    *AS_SET.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The global sampler's decision for a new trace or a child of a remote parent. `trace_high` gives the
/// trace id's high half ([`TraceId::high_u64`]); it is called only by the probability sampler.
#[inline]
pub(crate) fn sample_with_global(
    trace_high: impl FnOnce() -> u64,
    remote_parent_sampled: Option<bool>,
) -> bool {
    decide(ACTIVE.load(Ordering::Relaxed), trace_high, remote_parent_sampled)
}

#[inline]
fn decide(encoded: u64, trace_high: impl FnOnce() -> u64, remote_parent_sampled: Option<bool>) -> bool {
    let param = encoded & PARAM_MASK;
    match encoded >> KIND_SHIFT {
        KIND_OFF => false,
        KIND_ON => true,
        KIND_PROBABILITY => remote_parent_sampled == Some(true) || (trace_high() >> 3) < param,
        KIND_RATE => remote_parent_sampled == Some(true) || RATE_LIMITER.admit(monotonic_nanos(), param),
        _ => remote_parent_sampled == Some(true),
    }
}

/// Nanoseconds since the first call in this process: a clock the rate limiter can keep in an atomic.
fn monotonic_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    // A u64 of nanoseconds lasts 584 years.
    base.elapsed().as_nanos() as u64
}

/// A lock-free token bucket, kept as GCRA ("generic cell rate algorithm"): one atomic holds the time at
/// which the bucket will be empty of debt; admitting a trace pushes it forward by one interval, and a trace
/// is refused when that time is more than a second (the burst) ahead of now.
struct RateLimiter {
    /// Theoretical arrival time of the next trace, in [`monotonic_nanos`].
    next_free: AtomicU64,
}

impl RateLimiter {
    const fn new() -> RateLimiter {
        RateLimiter { next_free: AtomicU64::new(0) }
    }

    fn reset(&self) {
        self.next_free.store(0, Ordering::Relaxed);
    }

    /// Whether a trace starting at `now` fits in the budget of one per `interval` nanoseconds.
    fn admit(&self, now: u64, interval: u64) -> bool {
        // A second's worth of traces may come at once, and at least one.
        let burst = interval.max(1_000_000_000);
        let mut next_free = self.next_free.load(Ordering::Relaxed);
        loop {
            let start = next_free.max(now);
            let advanced = start.saturating_add(interval);
            if advanced - now > burst {
                return false;
            }
            match self.next_free.compare_exchange_weak(
                next_free,
                advanced,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => next_free = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_with_high(high: u64) -> TraceId {
        let mut bytes = [1; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        TraceId(bytes)
    }

    #[test]
    fn sample_rate_percent_maps_to_samplers() {
        assert_eq!(Sampler::from_sample_rate(0), Sampler::AlwaysOff);
        assert_eq!(Sampler::from_sample_rate(100), Sampler::AlwaysOn);
        assert_eq!(Sampler::from_sample_rate(25), Sampler::Probability(0.25));
    }

    #[test]
    fn constant_samplers_and_parents() {
        let id = TraceId::random();
        for parent in [None, Some(true), Some(false)] {
            assert!(Sampler::AlwaysOn.should_sample(&id, parent));
            assert!(!Sampler::AlwaysOff.should_sample(&id, parent), "sample_rate 0 means never");
        }
        assert!(!Sampler::AlwaysParent.should_sample(&id, None), "a root is off");
        assert!(Sampler::AlwaysParent.should_sample(&id, Some(true)));
        assert!(!Sampler::AlwaysParent.should_sample(&id, Some(false)));
    }

    #[test]
    fn probability_compares_the_trace_id() {
        let half = Sampler::Probability(0.5);
        assert!(half.should_sample(&trace_with_high(0), None));
        assert!(half.should_sample(&trace_with_high((1 << 63) - 1), None));
        assert!(!half.should_sample(&trace_with_high(1 << 63), None));
        assert!(!half.should_sample(&trace_with_high(u64::MAX), None));
        assert!(half.should_sample(&trace_with_high(u64::MAX), Some(true)), "a sampled remote parent wins");

        // Out of range, NaN: clamped rather than refused, since a pushed config must not break tracing.
        assert!(Sampler::Probability(2.0).should_sample(&trace_with_high(u64::MAX), None));
        assert!(!Sampler::Probability(-1.0).should_sample(&trace_with_high(0), None));
        assert!(!Sampler::Probability(f64::NAN).should_sample(&trace_with_high(0), None));
    }

    #[test]
    fn probability_samples_about_that_fraction_of_random_ids() {
        let sampler = Sampler::Probability(0.1);
        let sampled = (0..100_000).filter(|_| sampler.should_sample(&TraceId::random(), None)).count();
        // Binomial(100000, 0.1): the standard deviation is ~95, so this range is more than 10 sigma wide.
        assert!((9_000..11_000).contains(&sampled), "{sampled} of 100000");
    }

    #[test]
    fn rate_limiter_admits_a_burst_then_one_per_interval() {
        let limiter = RateLimiter::new();
        let interval = 100_000_000; // 10 per second
        let now = 5_000_000_000;
        let burst = (0..100).filter(|_| limiter.admit(now, interval)).count();
        assert_eq!(burst, 10, "one second's worth at once");
        assert!(!limiter.admit(now + interval / 2, interval), "half an interval later the budget is spent");
        assert!(limiter.admit(now + interval, interval), "one interval later there is room for one");
        assert!(!limiter.admit(now + interval, interval));
        let after_idle = (0..100).filter(|_| limiter.admit(now + 60_000_000_000, interval)).count();
        assert_eq!(after_idle, 10, "idle time refills up to the burst, not beyond");
    }

    #[test]
    fn slow_rates_admit_one_at_a_time() {
        let limiter = RateLimiter::new();
        let interval = 10_000_000_000; // one every 10 s
        assert!(limiter.admit(1, interval));
        assert!(!limiter.admit(2, interval));
        assert!(limiter.admit(1 + interval, interval));
    }

    #[test]
    fn nonpositive_rates_sample_nothing() {
        let id = TraceId::random();
        assert!(!Sampler::RateLimiting(0.0).should_sample(&id, None));
        assert!(!Sampler::RateLimiting(f64::NAN).should_sample(&id, None));
        assert!(!Sampler::RateLimiting(0.0).should_sample(&id, Some(true)));
    }
}
