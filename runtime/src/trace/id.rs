//! Trace and span ids.

use std::fmt;

/// A 16-byte trace id. The all-zero id is invalid and never generated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id. The all-zero id is invalid and never generated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// The invalid all-zero id.
    pub const INVALID: TraceId = TraceId([0; 16]);

    /// Whether this id is not all zero.
    pub fn is_valid(&self) -> bool {
        *self != Self::INVALID
    }
}

impl SpanId {
    /// The invalid all-zero id.
    pub const INVALID: SpanId = SpanId([0; 8]);

    /// Whether this id is not all zero.
    pub fn is_valid(&self) -> bool {
        *self != Self::INVALID
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl fmt::Display for TraceId {
    /// Lower-case hex, as `traceparent` and B3 write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    /// Lower-case hex, as `traceparent` and B3 write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl TraceId {
    /// A new random, valid trace id from the calling thread's generator (no lock, no syscall).
    #[inline]
    pub fn random() -> TraceId {
        new_root_ids().0
    }

    fn from_u64s(high: u64, low: u64) -> TraceId {
        TraceId(((u128::from(high) << 64) | u128::from(low)).to_be_bytes())
    }

    /// Parses exactly 32 lower-case hex digits. Upper case, other lengths and the all-zero id give `None`:
    /// propagation treats them all as "no parent".
    pub fn from_hex(hex: &str) -> Option<TraceId> {
        let mut bytes = [0; 16];
        decode_lower_hex(hex, &mut bytes)?;
        let id = TraceId(bytes);
        id.is_valid().then_some(id)
    }

    /// The first 8 bytes as a big-endian integer: what probability sampling compares against its
    /// threshold, as opencensus-go does, so that every service of a trace reaches the same decision.
    #[inline]
    pub(crate) fn high_u64(&self) -> u64 {
        let mut high = [0; 8];
        high.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(high)
    }
}

impl SpanId {
    /// A new random, valid span id from the calling thread's generator (no lock, no syscall).
    #[inline]
    pub fn random() -> SpanId {
        let [value] = rng::next::<1>();
        if value != 0 { SpanId(value.to_be_bytes()) } else { SpanId::random_slow() }
    }

    #[cold]
    fn random_slow() -> SpanId {
        loop {
            let [value] = rng::next::<1>();
            if value != 0 {
                return SpanId(value.to_be_bytes());
            }
        }
    }

    /// Parses exactly 16 lower-case hex digits; anything else, and the all-zero id, gives `None`.
    pub fn from_hex(hex: &str) -> Option<SpanId> {
        let mut bytes = [0; 8];
        decode_lower_hex(hex, &mut bytes)?;
        let id = SpanId(bytes);
        id.is_valid().then_some(id)
    }
}

/// The ids of a new trace's root span, drawn together: one visit to the generator instead of three.
#[inline(always)]
pub(crate) fn new_root_ids() -> (TraceId, SpanId) {
    let [high, low, span] = rng::next::<3>();
    if (high | low) != 0 && span != 0 {
        (TraceId::from_u64s(high, low), SpanId(span.to_be_bytes()))
    } else {
        new_root_ids_slow()
    }
}

/// All-zero draws happen once in 2^64: draw again.
#[cold]
fn new_root_ids_slow() -> (TraceId, SpanId) {
    loop {
        let [high, low, span] = rng::next::<3>();
        if (high | low) != 0 && span != 0 {
            return (TraceId::from_u64s(high, low), SpanId(span.to_be_bytes()));
        }
    }
}

/// Decodes `hex` into `out`, which it must fill exactly. Only lower-case digits are accepted: W3C trace
/// context and B3 both specify lower-case hex, and accepting more would let one id have two spellings.
fn decode_lower_hex(hex: &str, out: &mut [u8]) -> Option<()> {
    let digits = hex.as_bytes();
    if digits.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (lower_hex_value(pair[0])? << 4) | lower_hex_value(pair[1])?;
    }
    Some(())
}

fn lower_hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// A per-thread wyrand generator. Ids need to be unique, not secret: wyrand passes BigCrush, costs about a
/// nanosecond, and being per thread it never contends. Each thread seeds itself once from std's
/// `RandomState` (OS randomness, drawn once per thread) mixed with the thread's id.
mod rng {
    use std::cell::Cell;
    use std::hash::BuildHasher;

    thread_local! {
        // 0 means "not seeded yet": a const initialiser keeps every access a plain thread-local load.
        static STATE: Cell<u64> = const { Cell::new(0) };
    }

    const INCREMENT: u64 = 0xa076_1d64_78bd_642f;

    /// The next `N` outputs. wyrand's state only advances by a constant, so the `N` outputs are computed
    /// independently (the multiplications overlap) and the state is read and written once.
    #[inline(always)]
    pub(super) fn next<const N: usize>() -> [u64; N] {
        STATE
            .try_with(|state| {
                let mut current = state.get();
                if current == 0 {
                    current = seed();
                }
                state.set(current.wrapping_add(INCREMENT.wrapping_mul(N as u64)));
                draw(current)
            })
            // The thread is being torn down and its locals are gone: draw from a fresh seed instead.
            .unwrap_or_else(|_| draw(seed()))
    }

    #[inline]
    fn draw<const N: usize>(state: u64) -> [u64; N] {
        std::array::from_fn(|i| mix(state.wrapping_add(INCREMENT.wrapping_mul(i as u64 + 1))))
    }

    #[inline]
    fn mix(state: u64) -> u64 {
        let product = u128::from(state).wrapping_mul(u128::from(state ^ 0xe703_7ed1_a0b4_28db));
        ((product >> 64) as u64) ^ (product as u64)
    }

    #[cold]
    fn seed() -> u64 {
        let keys = std::collections::hash_map::RandomState::new();
        // Never 0, which would read as "not seeded" on the next call.
        keys.hash_one(std::thread::current().id()) | 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let traces: std::collections::HashSet<TraceId> = (0..1000).map(|_| TraceId::random()).collect();
        let spans: std::collections::HashSet<SpanId> = (0..1000).map(|_| SpanId::random()).collect();
        assert_eq!(traces.len(), 1000);
        assert_eq!(spans.len(), 1000);
        assert!(traces.iter().all(TraceId::is_valid) && spans.iter().all(SpanId::is_valid));
    }

    #[test]
    fn threads_draw_different_ids() {
        let here = SpanId::random();
        let there = std::thread::spawn(SpanId::random).join().expect("thread panicked");
        assert_ne!(here, there);
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_spellings() {
        let trace = TraceId::random();
        assert_eq!(TraceId::from_hex(&trace.to_string()), Some(trace));
        let span = SpanId::random();
        assert_eq!(SpanId::from_hex(&span.to_string()), Some(span));

        assert_eq!(TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").map(|t| t.0[0]), Some(0x0a));
        assert_eq!(TraceId::from_hex("0AF7651916CD43DD8448EB211C80319C"), None, "upper case");
        assert_eq!(TraceId::from_hex("0af7651916cd43dd8448eb211c80319"), None, "short");
        assert_eq!(TraceId::from_hex(&"0".repeat(32)), None, "all zero");
        assert_eq!(SpanId::from_hex("b7ad6b71692033g0"), None, "not hex");
        assert_eq!(SpanId::from_hex("b7ad6b716920333"), None, "short");
        assert_eq!(SpanId::from_hex("0000000000000000"), None, "all zero");
        assert_eq!(SpanId::from_hex("ééééééé"), None, "multi-byte");
    }
}
