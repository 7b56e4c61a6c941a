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
    let seeds = IdSeeds::root();
    (seeds.trace_id(), seeds.span_id())
}

/// Where the ids of a span started in this process come from: two states of the thread's generator, of
/// which the ids are a pure function (wyrand's outputs are `mix(state + k * INCREMENT)`, each independent
/// of the others). An unsampled span keeps these 16 bytes instead of its ids and turns them into ids only
/// when someone asks (propagation, a sampled child, `Debug`): most unsampled spans are never asked, and
/// drawing three ids is three 128-bit multiplications. Every copy derives the same ids, so clones and
/// children agree on them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct IdSeeds {
    /// The trace id is outputs 1 and 2 from this state.
    trace: u64,
    /// The span id is output 1 from this state.
    span: u64,
}

impl IdSeeds {
    /// The seeds of a new trace's root span: three outputs of the thread's generator, reserved at once.
    #[inline(always)]
    pub(crate) fn root() -> IdSeeds {
        let state = rng::reserve::<3>();
        // The span id is the third output: output 1 of the state two steps on.
        IdSeeds { trace: state, span: rng::step(state, 2) }
    }

    /// The seeds of a new span in the same trace: one more output of the thread's generator.
    #[inline(always)]
    pub(crate) fn child(self) -> IdSeeds {
        IdSeeds { trace: self.trace, span: rng::reserve::<1>() }
    }

    /// The trace id's first 8 bytes as a big-endian integer, all the probability sampler reads: one
    /// multiplication instead of two.
    #[inline]
    pub(crate) fn trace_high(self) -> u64 {
        rng::output(self.trace, 1)
    }

    /// The trace id. An all-zero draw (once in 2^128) becomes ...01, so that the id is valid and every copy
    /// of the seeds still agrees on it.
    #[inline]
    pub(crate) fn trace_id(self) -> TraceId {
        let (high, low) = nonzero_pair(rng::output(self.trace, 1), rng::output(self.trace, 2));
        TraceId::from_u64s(high, low)
    }

    /// The span id. An all-zero draw (once in 2^64) becomes ...01, deterministically as for the trace id.
    #[inline]
    pub(crate) fn span_id(self) -> SpanId {
        SpanId(rng::output(self.span, 1).max(1).to_be_bytes())
    }
}

/// `(high, low)` unless both are 0, then `(0, 1)`: the high half stays as drawn, so the probability
/// sampler's decision (taken on the high half alone) holds for the id.
#[inline]
fn nonzero_pair(high: u64, low: u64) -> (u64, u64) {
    if (high | low) == 0 { (0, 1) } else { (high, low) }
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
        draw(reserve::<N>())
    }

    /// Reserves the next `N` outputs: returns the state they are computed from ([`output`] 1 to `N`).
    #[inline(always)]
    pub(super) fn reserve<const N: usize>() -> u64 {
        STATE
            .try_with(|state| {
                let mut current = state.get();
                if current == 0 {
                    current = seed();
                }
                state.set(step(current, N as u64));
                current
            })
            // The thread is being torn down and its locals are gone: draw from a fresh seed instead.
            .unwrap_or_else(|_| seed())
    }

    /// The state `steps` outputs after `state`.
    #[inline(always)]
    pub(super) fn step(state: u64, steps: u64) -> u64 {
        state.wrapping_add(INCREMENT.wrapping_mul(steps))
    }

    /// Output `k` (from 1) of `state`: what the `k`-th call to the generator from that state returns.
    #[inline(always)]
    pub(super) fn output(state: u64, k: u64) -> u64 {
        mix(step(state, k))
    }

    #[inline]
    fn draw<const N: usize>(state: u64) -> [u64; N] {
        std::array::from_fn(|i| output(state, i as u64 + 1))
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
    fn seeds_give_the_ids_the_generator_would_have_drawn() {
        // A root reserves three outputs and a child one, the outputs eager drawing would have used, so
        // deferring the derivation changes no id; the next draw continues right after them.
        let root = IdSeeds::root();
        let child = root.child();
        let [next] = rng::next::<1>();
        assert_eq!(rng::output(child.span, 2), next);
        assert_eq!(root.span, rng::step(root.trace, 2), "the root's span id is its third output");
        assert_eq!(root.trace_high(), root.trace_id().high_u64());
        assert_eq!(child.trace_id(), root.trace_id(), "a child stays in its parent's trace");
        assert_ne!(child.span_id(), root.span_id());
        let copy = root;
        assert_eq!((copy.trace_id(), copy.span_id()), (root.trace_id(), root.span_id()), "copies agree");
        assert!(root.trace_id().is_valid() && root.span_id().is_valid());
    }

    #[test]
    fn all_zero_draws_become_valid_ids_deterministically() {
        // `mix(0)` is 0, so a span state one step before 0 draws the all-zero span id.
        let zero_state = 0u64.wrapping_sub(rng::step(0, 1));
        assert_eq!(rng::output(zero_state, 1), 0);
        let seeds = IdSeeds { trace: zero_state, span: zero_state };
        assert_eq!(seeds.span_id(), SpanId([0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(seeds.trace_id().is_valid());
        assert_eq!(seeds.trace_id().high_u64(), 0, "the high half stays as drawn");
        assert_eq!(nonzero_pair(0, 0), (0, 1));
        assert_eq!(nonzero_pair(0, 5), (0, 5));
        assert_eq!(nonzero_pair(7, 0), (7, 0));
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
