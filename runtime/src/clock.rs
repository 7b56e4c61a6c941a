//! The request path's clock: a monotonic [`Instant`] that costs one `rdtsc` where the kernel itself trusts
//! the TSC, and `std::time::Instant` elsewhere.
//!
//! Why not `std::time::Instant`: on Linux it is `clock_gettime(CLOCK_MONOTONIC)` through the vDSO, about
//! 18 ns a read on the VMs this runs on, and a sampled span reads the clock twice (start and end); the raw
//! TSC read is a few nanoseconds. The TSC is used only when the kernel's current clocksource is `tsc`: the
//! kernel then has checked that the counter is invariant (constant rate, runs in deep sleep) and synchronised
//! across CPUs, which is what makes readings from two cores comparable. Otherwise (another clocksource,
//! another architecture or OS) readings are `std::time::Instant`'s nanoseconds since the first use.
//!
//! Ticks become nanoseconds through a ratio measured once, against `std::time::Instant`, over
//! [`CALIBRATION_WINDOW`] at the first use of the clock ([`calibrate`] takes that cost at `init`, not on the
//! first request). The source is chosen at that moment and never changes, so two readings are always
//! comparable.
//!
//! What the span model needs from it (DESIGN.md: wall clock at start plus a monotonic duration, never
//! negative): [`Instant::duration_since`] saturates at zero, so a reading taken on a core whose counter is a
//! few cycles behind gives a zero duration rather than a negative one, and [`WallClock`] turns readings into
//! wall-clock times against one `SystemTime`/[`Instant`] pair, off the request path.
//!
//! Shared by the span and the layers' latency measure: a layer reads [`Instant::now`] once at the start and
//! once at the end of a call and gives the same readings to its span
//! ([`SpanBuilder::start_at`](crate::trace::SpanBuilder), `Span::end_at`) and to its latency, so the
//! two agree and the clock is read twice per call, not four times. The latency goes to the measures as
//! [`Instant::millis_since`]: the ticks times a calibrated milliseconds-per-tick factor, where a [`Duration`]
//! between would cost two divisions (ticks to nanoseconds to seconds and nanoseconds, then to milliseconds).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// How long the first use of the clock compares the TSC with `std::time::Instant`. The reading error is
/// tens of nanoseconds at each end, so 2 ms gives the ratio to about 2e-5: 20 µs on a one-second span.
const CALIBRATION_WINDOW: Duration = Duration::from_millis(2);

/// A reading of the monotonic clock, in ticks of its source. Only meaningful against another reading:
/// [`Instant::duration_since`], or [`WallClock::at`] for a wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instant(u64);

/// The chosen source and its ratio to nanoseconds.
struct Calibration {
    /// Whether readings are TSC ticks (else nanoseconds since `base`).
    tsc: bool,
    /// Nanoseconds per tick, as a 32.32 fixed-point number.
    nanos_per_tick: u64,
    /// Milliseconds per tick, for the layers' latency measures: one multiply, where going through a
    /// [`Duration`] costs a division by 10^9 (to split seconds from nanoseconds) and one by 10^6.
    millis_per_tick: f64,
    /// The origin of fallback readings.
    base: std::time::Instant,
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

/// Chooses the clock's source and measures its rate now, if that was not done yet: the first use of the
/// clock takes [`CALIBRATION_WINDOW`], so `init` calls this rather than leave it to the first request.
pub(crate) fn calibrate() {
    calibration();
}

#[inline]
fn calibration() -> &'static Calibration {
    CALIBRATION.get_or_init(Calibration::measure)
}

impl Calibration {
    #[cold]
    fn measure() -> Calibration {
        let base = std::time::Instant::now();
        let fallback = Calibration { tsc: false, nanos_per_tick: 1 << 32, millis_per_tick: 1e-6, base };
        if !tsc::trusted_by_kernel() {
            return fallback;
        }
        let (start, start_ticks) = tsc::paired_reading();
        let (end, end_ticks) = loop {
            let (now, ticks) = tsc::paired_reading();
            if now.duration_since(start) >= CALIBRATION_WINDOW {
                break (now, ticks);
            }
            std::hint::spin_loop();
        };
        let nanos = end.duration_since(start).as_nanos();
        let ticks = u128::from(end_ticks.saturating_sub(start_ticks));
        // A counter that did not move, or a ratio that does not fit, means the TSC is not what the kernel
        // said: keep the system clock rather than produce nonsense durations.
        match (nanos << 32).checked_div(ticks).map(u64::try_from) {
            Some(Ok(nanos_per_tick)) if nanos_per_tick > 0 => {
                // From the same fixed-point ratio as `nanos`, so a span's duration and its latency measure
                // agree to the last representable digit of the latency.
                let millis_per_tick = nanos_per_tick as f64 / (1u64 << 32) as f64 / 1e6;
                Calibration { tsc: true, nanos_per_tick, millis_per_tick, base }
            }
            _ => fallback,
        }
    }

    #[inline]
    fn read(&self) -> u64 {
        if self.tsc {
            tsc::read()
        } else {
            // u64 nanoseconds last 584 years.
            u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }

    #[inline]
    fn millis(&self, ticks: u64) -> f64 {
        // Through i64, which converts in one instruction (u64 takes several on x86_64); 2^63 ticks is
        // decades at any TSC rate.
        i64::try_from(ticks).unwrap_or(i64::MAX) as f64 * self.millis_per_tick
    }

    #[inline]
    fn nanos(&self, ticks: u64) -> u64 {
        let nanos = (u128::from(ticks) * u128::from(self.nanos_per_tick)) >> 32;
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

impl Instant {
    /// Now.
    #[inline]
    pub(crate) fn now() -> Instant {
        Instant(calibration().read())
    }

    /// Nanoseconds from `earlier` to `self`; 0 if `earlier` is later.
    #[inline]
    pub(crate) fn nanos_since(self, earlier: Instant) -> u64 {
        calibration().nanos(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds from `earlier` to `self`, as the layers' latency measures record them; 0 if `earlier`
    /// is later.
    #[inline]
    pub(crate) fn millis_since(self, earlier: Instant) -> f64 {
        calibration().millis(self.0.saturating_sub(earlier.0))
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    #[inline]
    pub(crate) fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }
}

/// Turns [`Instant`]s into wall-clock times, against one reading of both clocks. Read once per batch of
/// spans: a wall-clock read per timestamp would cost the request path a second clock.
pub(crate) struct WallClock {
    wall: SystemTime,
    monotonic: Instant,
}

impl WallClock {
    /// Reads both clocks now.
    pub(crate) fn now() -> WallClock {
        WallClock { wall: SystemTime::now(), monotonic: Instant::now() }
    }

    /// The wall-clock time of `at`.
    pub(crate) fn at(&self, at: Instant) -> SystemTime {
        let moved = if at <= self.monotonic {
            self.wall.checked_sub(self.monotonic.duration_since(at))
        } else {
            self.wall.checked_add(at.duration_since(self.monotonic))
        };
        // Out of SystemTime's range only for absurd clocks: keep the reading rather than panic.
        moved.unwrap_or(self.wall)
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod tsc {
    /// Whether the kernel keeps time with the TSC, i.e. found it invariant and synchronised across CPUs.
    pub(super) fn trusted_by_kernel() -> bool {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|source| source.trim() == "tsc")
    }

    #[inline]
    pub(super) fn read() -> u64 {
        // Not serialising (no `rdtscp`/fence): a span's timestamps may move by the few instructions the
        // CPU reorders around it, far below what a span measures, and a fence would cost more than the read.
        // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the counter.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }

    /// A system-clock reading and the TSC at the same moment: of a few tries, the one whose two system
    /// reads were closest, so an interrupt between them does not skew the calibration.
    pub(super) fn paired_reading() -> (std::time::Instant, u64) {
        let mut best: Option<(std::time::Duration, std::time::Instant, u64)> = None;
        for _ in 0..5 {
            let before = std::time::Instant::now();
            let ticks = read();
            let after = std::time::Instant::now();
            let spread = after.duration_since(before);
            if best.is_none_or(|(best_spread, ..)| spread < best_spread) {
                best = Some((spread, before + spread / 2, ticks));
            }
        }
        let (_, at, ticks) = best.expect("five tries were made");
        (at, ticks)
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod tsc {
    pub(super) fn trusted_by_kernel() -> bool {
        false
    }

    pub(super) fn read() -> u64 {
        unreachable!("the TSC is used only where trusted_by_kernel() is true")
    }

    pub(super) fn paired_reading() -> (std::time::Instant, u64) {
        unreachable!("the TSC is used only where trusted_by_kernel() is true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_interval_is_bracketed_by_the_system_clock() {
        // Our reading of an interval lies between the system clock's readings of an interval just inside
        // and one just outside it, up to the calibration error (well below 0.1 %).
        let outer_start = std::time::Instant::now();
        let start = Instant::now();
        let inner_start = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let inner = inner_start.elapsed();
        let end = Instant::now();
        let outer = outer_start.elapsed();
        let measured = end.duration_since(start);
        let slack = Duration::from_micros(20) + outer / 1000;
        assert!(measured + slack >= inner, "{measured:?} < {inner:?}");
        assert!(measured <= outer + slack, "{measured:?} > {outer:?}");
    }

    #[test]
    fn durations_never_go_negative() {
        let earlier = Instant::now();
        let later = Instant::now();
        assert!(later >= earlier);
        assert_eq!(earlier.duration_since(later), Duration::ZERO);
        assert_eq!(earlier.nanos_since(earlier), 0);
    }

    #[test]
    fn wall_clock_places_readings_around_its_anchor() {
        let before = SystemTime::now();
        let at = Instant::now();
        let after = SystemTime::now();
        let clock = WallClock::now();
        let wall = clock.at(at);
        let slack = Duration::from_micros(50);
        assert!(wall + slack >= before && wall <= after + slack, "{wall:?} not in {before:?}..{after:?}");
        // A reading after the anchor moves forward by the measured amount.
        let later = Instant(at.0.max(clock.monotonic.0) + 1_000_000);
        let ahead = clock.at(later).duration_since(clock.wall).expect("after the anchor");
        assert_eq!(ahead, later.duration_since(clock.monotonic));
    }

    #[test]
    fn milliseconds_agree_with_the_duration() {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(3));
        let end = Instant::now();
        let millis = end.millis_since(start);
        let from_duration = end.duration_since(start).as_secs_f64() * 1e3;
        // The same ratio, one rounded to whole nanoseconds: they differ by less than a nanosecond.
        assert!((millis - from_duration).abs() < 1e-6, "{millis} ms vs {from_duration} ms");
        assert!(millis >= 3.0 - 1e-3, "{millis} ms for a 3 ms sleep");
        assert_eq!(start.millis_since(end), 0.0, "never negative");
        assert_eq!(start.millis_since(start), 0.0);
        // Both sources: the fallback counts nanoseconds.
        let fallback = Calibration {
            tsc: false,
            nanos_per_tick: 1 << 32,
            millis_per_tick: 1e-6,
            base: std::time::Instant::now(),
        };
        assert_eq!(fallback.millis(2_500_000), 2.5);
        assert_eq!(fallback.nanos(2_500_000), 2_500_000);
        assert_eq!(fallback.millis(u64::MAX), i64::MAX as f64 * 1e-6, "saturates, never negative");
    }

    #[test]
    fn the_source_follows_the_kernel() {
        assert_eq!(calibration().tsc, tsc::trusted_by_kernel());
        assert!(calibration().nanos_per_tick > 0);
    }
}
