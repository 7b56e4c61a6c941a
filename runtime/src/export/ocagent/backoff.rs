//! Reconnection delays: from the configured `reconnection`, growing by half after each failure up to four
//! times it, with jitter so that a fleet of gateways does not reconnect to a restarted agent in lockstep.
//!
//! Why the growth is gentle and capped low: spans queue (bounded) while the agent is away, so every second
//! spent waiting after the agent is back costs spans at high traffic. The soak showed doubling delays
//! (2, 4, 8 s) keep the exporter away for up to 8 s after a 6 s outage; a connection attempt every few
//! seconds costs an agent nothing. KrakenD's Go exporter retries at the fixed `reconnection` period.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The longest wait between two attempts, unless `reconnection` itself is longer.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How far the delay may grow over the configured `reconnection`.
const MAX_GROWTH: u32 = 4;

/// The delays of one stream's reconnection attempts.
#[derive(Debug)]
pub(super) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `base` (the config's `reconnection`; zero is taken as 1 ms so that a failing agent is
    /// never hammered in a loop).
    pub(super) fn new(base: Duration) -> Backoff {
        let base = base.max(Duration::from_millis(1));
        Backoff { base, cap: base.saturating_mul(MAX_GROWTH).min(MAX_BACKOFF).max(base), failures: 0 }
    }

    /// The wait before the next attempt, counting one more failure: `base * 1.5^(failures-1)` up to the cap,
    /// then scaled by a random factor in 0.8..1.2 (and still capped).
    pub(super) fn next_delay(&mut self) -> Duration {
        // 1.5^4 > MAX_GROWTH already: more steps would only compute the cap again.
        let steps = self.failures.min(4);
        self.failures = self.failures.saturating_add(1);
        let delay = self.base.mul_f64(1.5f64.powi(steps.cast_signed())).min(self.cap);
        delay.mul_f64(0.8 + 0.4 * unit_random()).min(self.cap)
    }

    /// Consecutive failures so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// A stream delivered: the next failure waits `base` again.
    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A number in `0.0..1.0`, different on every call. Jitter needs spread, not quality: std's `RandomState`
/// is seeded from the OS once per thread and bumped on every `new`, so each call hashes under other keys.
fn unit_random() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_from_the_base_with_jitter_up_to_four_times_it() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        for nominal_ms in [100u64, 150, 225, 337, 400, 400, 400] {
            let delay = backoff.next_delay();
            let nominal = Duration::from_millis(nominal_ms);
            let cap = Duration::from_millis(400);
            assert!(delay >= nominal.mul_f64(0.8).min(cap.mul_f64(0.8)) && delay <= cap, "{delay:?}");
        }
        assert_eq!(backoff.failures(), 7);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn a_base_over_the_cap_is_kept_and_zero_is_not_a_busy_loop() {
        let mut long = Backoff::new(Duration::from_secs(60));
        assert!(long.next_delay() >= Duration::from_secs(48));
        let mut slow = Backoff::new(Duration::from_secs(10));
        let delays: Vec<Duration> = (0..8).map(|_| slow.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF), "{delays:?}");
        let mut zero = Backoff::new(Duration::ZERO);
        assert!(zero.next_delay() > Duration::ZERO);
    }

    #[test]
    fn jitter_spreads() {
        let draws: Vec<f64> = (0..64).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|d| d.to_bits()).collect();
        assert!(distinct.len() > 32, "{distinct:?}");
    }
}
