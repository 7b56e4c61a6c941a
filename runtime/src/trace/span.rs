//! The live span: what a handler records into while it runs.
//!
//! A [`Span`] is a cheap handle. For an unsampled span it is just what its ids come from (for a span of a
//! trace started here, two generator states the ids are derived from when asked; else the ids and
//! tracestate it was given) and every recording method returns at once: starting and ending one allocates
//! nothing, takes no lock and reads no clock. A sampled span shares one heap allocation among its handles;
//! ending it stamps the end time and moves what it recorded ([`Finished`]) into the ending thread's ring of
//! the span pipeline, whose thread turns it into [`SpanData`] for the exporters. The allocation itself
//! never leaves the threads that use the span: when its last handle goes, it returns to that thread's pool
//! for the next sampled span, so its cache lines stay in this core's cache instead of travelling to the
//! pipeline's core and back for every span.
//!
//! Time is read from the monotonic clock only ([`crate::clock`], a TSC read where the kernel trusts it),
//! once when a sampled span starts and once when it ends; the pipeline converts those instants to
//! wall-clock time when it hands the span over, against one wall-clock/monotonic pair read per batch.
//! Durations therefore never go negative, and the request path pays one clock read per timestamp instead of
//! two.
//!
//! A span ends at the first of: [`Span::end`], the completion (or cancellation) of the future it
//! [instruments](super::FutureExt::instrument), or the drop of its last handle. Recording into an ended span
//! does nothing.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use smallvec::SmallVec;

use crate::clock::{Instant, WallClock};

use super::id::IdSeeds;
use super::limits::{self, MAX_ANNOTATIONS, MAX_ATTRIBUTES, MAX_LINKS, MAX_MESSAGE_EVENTS};
use super::spin::{SpinGuard, SpinLock};
use super::{
    AttributeValue, Attributes, Link, MessageEventKind, Sampler, SpanContext, SpanData, SpanId, SpanKind,
    Status, StatusCode, TimeEvent, TimeEventKind, TraceId, TraceState, context, pipeline, running, sampler,
};

/// A handle to a span that is running. Cloning it is cheap and every clone refers to the same span.
///
/// Recording methods take `&self` and do nothing when the span is not sampled or has ended, so code can
/// record without checking [`Span::is_sampled`] first; check it only to skip computing an expensive value.
///
/// A handle is `Send` but not `Sync`: it moves between threads (into a spawned task, say), but to record
/// into one span from two threads at once, give each its own clone. That is what lets the only handle of
/// a span record with plain stores instead of a lock.
///
/// ```
/// use oclayer_runtime::trace::{Parent, Sampler, SpanBuilder};
/// let span = SpanBuilder::new("fan-out").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
/// let worker = span.clone();
/// std::thread::spawn(move || worker.set_attribute("shard", 3)).join().unwrap();
/// span.set_attribute("shards", 4);
/// span.end();
/// ```
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<oclayer_runtime::trace::Span>();
/// ```
pub struct Span {
    /// Dropped by hand ([`Span`]'s `Drop`), so that the last handle moves its allocation out to the pool
    /// without leaving a value behind to be dropped again.
    repr: ManuallyDrop<Repr>,
    /// Not `Sync`: a handle is used by one thread at a time, so a handle that is a sampled span's only
    /// one records with no lock (see [`Span::sampled`]). To share a span between threads, clone the handle.
    _not_sync: PhantomData<Cell<()>>,
}

// A `u64` tag: with the tag in a whole word and no variant holding padding, a span moves as whole words;
// with `SpanContext` inside and the tag in its `sampled` byte, every move copied the seven bytes of padding
// after it in 4-, 2- and 1-byte pieces.
#[derive(Clone)]
#[repr(u64)]
enum Repr {
    /// Not recorded, in a trace started in this process: the ids are derived from these seeds when asked,
    /// so a span nobody asks about never computes them. Children and outgoing requests stay in the trace.
    Derived(IdSeeds),
    /// Not recorded, ids given (a remote parent's trace, a tracestate, or [`Span::NONE`]): only the context
    /// travels, so children and outgoing requests stay in the trace.
    Unsampled(GivenIds),
    Sampled(Arc<SpanInner>),
}

/// The context of an unsampled span whose ids were given, not derived: [`SpanContext`] without the
/// `sampled` flag (always false here) and so without padding.
#[derive(Clone)]
struct GivenIds {
    trace_id: TraceId,
    span_id: SpanId,
    tracestate: TraceState,
}

impl GivenIds {
    const INVALID: GivenIds =
        GivenIds { trace_id: TraceId::INVALID, span_id: SpanId::INVALID, tracestate: TraceState::EMPTY };

    /// `context`'s ids; its `sampled` flag is dropped, the caller knows it is false.
    #[inline]
    fn of(context: SpanContext) -> GivenIds {
        GivenIds { trace_id: context.trace_id, span_id: context.span_id, tracestate: context.tracestate }
    }

    #[inline]
    fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }

    #[inline]
    fn context(&self) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: false,
            tracestate: self.tracestate.clone(),
        }
    }
}

/// The shared state of a sampled span.
pub(crate) struct SpanInner {
    context: SpanContext,
    parent_span_id: Option<SpanId>,
    kind: SpanKind,
    same_process_as_parent_span: Option<bool>,
    start: Instant,
    /// While the span runs, [`RUNNING`] | the slot counting it among the running spans of its name
    /// ([`running::NO_SLOT`] if none); once ended, 1 + its duration in nanoseconds (below [`RUNNING`]). One
    /// atomic word, so that the store that ends the span also takes the slot out. Written only under the
    /// record's lock (or with the span held exclusively): ending takes the lock anyway, to move the
    /// recording out, so the end is a plain store under it rather than a compare-exchange of its own.
    /// Read without the lock, to skip recording into an ended span.
    end: AtomicU64,
    child_span_count: AtomicU32,
    record: SpinLock<Record>,
}

/// The bit of [`SpanInner::end`] set while the span runs.
const RUNNING: u64 = 1 << 63;

/// [`SpanInner::end`] of a running span counted in `slot`.
#[inline]
fn running_state(slot: u32) -> u64 {
    RUNNING | u64::from(slot)
}

/// [`SpanInner::end`] of a span that ran for `nanos` (the longest it can record is 2^63 - 2 ns, 292 years).
#[inline]
fn ended_state(nanos: u64) -> u64 {
    nanos.min(RUNNING - 2) + 1
}

/// The running-count slot of a running span's [`SpanInner::end`].
#[inline]
fn slot_of(state: u64) -> u32 {
    // The low 32 bits hold the slot, by `running_state`.
    state as u32
}

/// A span's slot as [`running`] sees it: kept in the end word.
struct RunningSlot<'a>(&'a AtomicU64);

impl running::SlotHolder for RunningSlot<'_> {
    fn slot(&self) -> u32 {
        let state = self.0.load(Ordering::Acquire);
        if state & RUNNING != 0 { slot_of(state) } else { running::NO_SLOT }
    }

    fn exchange(&self, old: u32, new: u32) -> bool {
        let (old, new) = (running_state(old), running_state(new));
        self.0.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

type Attribute = (Cow<'static, str>, AttributeValue);

const INLINE_ATTRIBUTES: usize = 8;
// `SpanInner::set_attribute`'s inline path relies on it: a key that fits inline is below the limit.
const _: () = assert!(INLINE_ATTRIBUTES <= MAX_ATTRIBUTES);

/// What the span accumulates while it runs.
#[derive(Default)]
struct Record {
    name: Cow<'static, str>,
    /// Kept inline: a layer sets about six attributes, and a separate allocation for them would cost as
    /// much as the span's own. Exporters get a `Vec`, made off the request path.
    attributes: SmallVec<[Attribute; INLINE_ATTRIBUTES]>,
    dropped_attributes: u32,
    /// Annotations and message events, stamped with the monotonic clock.
    time_events: Vec<(Instant, TimeEventKind)>,
    annotations: usize,
    dropped_annotations: u32,
    message_events: usize,
    dropped_message_events: u32,
    links: Vec<Link>,
    dropped_links: u32,
    status: Status,
    /// Whether everything above is as a new span's (moved out by [`SpanInner::write_finished`], or reset by
    /// [`clear`]), so that pooling the allocation has nothing to reset.
    clean: bool,
}

impl Span {
    #[inline(always)]
    const fn of(repr: Repr) -> Span {
        Span { repr: ManuallyDrop::new(repr), _not_sync: PhantomData }
    }

    /// The shared state of a sampled span, and whether this handle is its only one. When it is, nothing
    /// else can reach the span until this handle is cloned, which takes this thread (the handle is not
    /// `Sync`): the span is recorded into and ended with plain loads and stores, no lock.
    #[inline(always)]
    fn sampled(&self) -> Option<(&SpanInner, bool)> {
        match &*self.repr {
            Repr::Sampled(inner) => Some((inner, only_handle(inner))),
            _ => None,
        }
    }

    /// No span: invalid ids, not sampled. What [`Span::current`] returns outside any span; entering it runs
    /// code with no current span.
    pub const NONE: Span = Span::of(Repr::Unsampled(GivenIds::INVALID));

    /// A handle to the span current on this thread (or in this instrumented future), or [`Span::NONE`]: a
    /// clone, to keep or to move elsewhere. To record into the current span in place, use
    /// [`current_span`](super::current_span), which clones nothing.
    #[inline]
    pub fn current() -> Span {
        context::with_current(Span::clone)
    }

    /// The ids, sampled flag and tracestate: what propagation sends downstream.
    #[inline]
    pub fn span_context(&self) -> SpanContext {
        match &*self.repr {
            Repr::Derived(seeds) => derived_context(*seeds, false),
            Repr::Unsampled(ids) => ids.context(),
            Repr::Sampled(inner) => inner.context.clone(),
        }
    }

    /// Whether this span is recorded and exported. Unsampled spans ignore everything recorded into them.
    #[inline]
    pub fn is_sampled(&self) -> bool {
        matches!(*self.repr, Repr::Sampled(_))
    }

    /// Whether this is a real span (valid ids), not [`Span::NONE`].
    #[inline]
    pub fn is_valid(&self) -> bool {
        match &*self.repr {
            // Derived ids are valid by construction.
            Repr::Derived(_) => true,
            Repr::Unsampled(ids) => ids.is_valid(),
            Repr::Sampled(inner) => inner.context.is_valid(),
        }
    }

    /// Sets an attribute; a key set twice keeps the last value. Beyond
    /// [`MAX_ATTRIBUTES`](super::limits::MAX_ATTRIBUTES) distinct keys, new keys are dropped and counted
    /// (the first ones are kept: the layers set theirs first). String values are cut to
    /// [`MAX_STRING_BYTES`](super::limits::MAX_STRING_BYTES).
    #[inline]
    pub fn set_attribute(&self, key: impl Into<Cow<'static, str>>, value: impl Into<AttributeValue>) {
        if let Some((inner, alone)) = self.sampled() {
            // Converted before locking: conversions are user code, which must not run under the lock.
            inner.set_attribute(key.into(), value.into(), alone);
        }
    }

    /// Adds an annotation: a timestamped note. Beyond
    /// [`MAX_ANNOTATIONS`](super::limits::MAX_ANNOTATIONS) they are dropped and counted. The description
    /// is cut to [`MAX_STRING_BYTES`](super::limits::MAX_STRING_BYTES).
    #[inline]
    pub fn add_annotation(&self, description: impl Into<Cow<'static, str>>) {
        if let Some((inner, alone)) = self.sampled() {
            inner.add_annotation(description.into(), Attributes::default(), alone);
        }
    }

    /// Adds an annotation with attributes of its own (limited as the span's are).
    pub fn add_annotation_with_attributes<K, V>(
        &self,
        description: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = (K, V)>,
    ) where
        K: Into<Cow<'static, str>>,
        V: Into<AttributeValue>,
    {
        if let Some((inner, alone)) = self.sampled() {
            // Collected before locking: the iterator is user code, which must not run under the lock.
            let mut entries = SmallVec::<[Attribute; 0]>::new();
            let mut dropped = 0;
            for (key, value) in attributes {
                insert_attribute(&mut entries, &mut dropped, key.into(), limit_value(value.into()));
            }
            inner.add_annotation(
                description.into(),
                Attributes { entries: entries.into_vec(), dropped },
                alone,
            );
        }
    }

    /// Records a message sent or received by this span (`id` numbers the messages within the span; sizes
    /// in bytes, `compressed_size` 0 when not compressed). Beyond
    /// [`MAX_MESSAGE_EVENTS`](super::limits::MAX_MESSAGE_EVENTS) they are dropped and counted.
    #[inline]
    pub fn add_message_event(
        &self,
        kind: MessageEventKind,
        id: u64,
        uncompressed_size: u64,
        compressed_size: u64,
    ) {
        if let Some((inner, alone)) = self.sampled() {
            let event = TimeEventKind::MessageEvent { kind, id, uncompressed_size, compressed_size };
            inner.add_time_event(event, alone);
        }
    }

    /// Links this span to another one. Beyond [`MAX_LINKS`](super::limits::MAX_LINKS) they are dropped and
    /// counted; the link's attributes are limited as the span's are.
    pub fn add_link(&self, mut link: Link) {
        let Some((inner, alone)) = self.sampled() else { return };
        if link.attributes.entries.len() > MAX_ATTRIBUTES {
            let over = link.attributes.entries.len() - MAX_ATTRIBUTES;
            link.attributes.entries.truncate(MAX_ATTRIBUTES);
            link.attributes.dropped = link.attributes.dropped.saturating_add(saturating_u32(over));
        }
        let Some(mut record) = inner.recording(alone) else { return };
        if record.links.len() >= MAX_LINKS {
            record.dropped_links = record.dropped_links.saturating_add(1);
        } else {
            record.links.push(link);
        }
    }

    /// Sets the outcome. The last call wins; a span whose status is never set ends `Ok`.
    #[inline]
    pub fn set_status(&self, code: StatusCode, message: impl Into<Cow<'static, str>>) {
        if let Some((inner, alone)) = self.sampled() {
            let status = Status { code, message: message.into() };
            if let Some(mut record) = inner.recording(alone) {
                record.status = status;
            }
        }
    }

    /// Renames the span, e.g. once the router knows which route matched.
    #[inline]
    pub fn update_name(&self, name: impl Into<Cow<'static, str>>) {
        if let Some((inner, alone)) = self.sampled() {
            inner.update_name(name.into(), alone);
        }
    }

    /// Ends the span now and hands it to the span pipeline. Ending twice, or ending an unsampled span, does
    /// nothing.
    #[inline]
    pub fn end(&self) {
        if let Some((inner, alone)) = self.sampled() {
            end_sampled(inner, Instant::now(), alone);
        }
    }

    /// [`Span::end`] with an end time read by the caller: a layer that also measures the call's latency
    /// reads the clock once for both. Takes the handle: when it is the last one, the span is ended with no
    /// lock and no atomic read-modify-write, and its allocation goes straight back to the pool.
    #[inline]
    pub(crate) fn end_at(self, at: Instant) {
        if let Some(inner) = self.into_sampled() {
            end_owned(inner, at);
        }
    }

    /// A sampled span's state, moved out of the handle; an unsampled handle is dropped. The state is looked
    /// at in place, not moved out whole: that move loaded the 48 bytes in 16-byte pieces right after the
    /// caller had stored them in 8-byte ones, which the store buffer cannot forward, so the load waited
    /// for those stores to reach the cache.
    #[inline]
    fn into_sampled(self) -> Option<Arc<SpanInner>> {
        let mut this = ManuallyDrop::new(self);
        match &*this.repr {
            Repr::Derived(_) => None,
            // SAFETY: moved out once, and `this` is never dropped (`ManuallyDrop`), so neither is `inner`.
            Repr::Sampled(inner) => Some(unsafe { std::ptr::read(inner) }),
            Repr::Unsampled(_) => {
                // SAFETY: dropped once, and `this` is never dropped (`ManuallyDrop`).
                unsafe { drop_held(&mut this.repr) };
                None
            }
        }
    }

    /// Makes this span the current one on this thread until the returned guard is dropped. Spans started
    /// meanwhile with [`Parent::Current`] become its children. The guard must be dropped on the thread that
    /// made it (it is not `Send`); for async code use [`FutureExt`](super::FutureExt) instead, since a guard
    /// held across an `.await` would leak the span into whatever the thread polls next.
    #[inline]
    pub fn enter(&self) -> context::Entered {
        context::Entered::new(self.clone())
    }

    /// Runs `f` with this span current.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.enter();
        f()
    }
}

impl Clone for Span {
    #[inline]
    fn clone(&self) -> Self {
        Span::of(Repr::clone(&self.repr))
    }
}

impl Default for Span {
    fn default() -> Self {
        Span::NONE
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        // The variant is read in place, as in `into_sampled`, for the same reason.
        if !matches!(&*self.repr, Repr::Derived(_)) {
            // SAFETY: dropped once, here, and the handle is not used afterwards.
            unsafe { drop_held(&mut self.repr) }
        }
    }
}

// The drops above skip `Repr::Derived`, which must therefore own nothing.
const _: () = assert!(!std::mem::needs_drop::<IdSeeds>());

/// Drops a handle's state that holds something: a sampled span, whose last handle ends it, or given ids
/// with a tracestate. Out of line, so that the drop of a handle stays a test and a call, small enough to
/// inline into the drop of whatever holds one (an annotated async fn's future, `SpanBuilder`'s parent).
///
/// # Safety
/// As [`ManuallyDrop::drop`]: `repr` is not used again.
#[inline(never)]
unsafe fn drop_held(repr: &mut ManuallyDrop<Repr>) {
    // The last handle ends the span, so a span is never lost because nobody called `end`, and gives the
    // allocation back to this thread's pool instead of freeing it (no decrement, no free). With the handle
    // held exclusively, a count of 1 means no other handle exists and none can appear. (Two last handles
    // dropped at once on two threads may both see 2: the allocation is then freed, and `SpanInner`'s own
    // drop ends the span if it still runs.)
    if let Repr::Sampled(inner) = &**repr
        && only_handle(inner)
    {
        // SAFETY: moved out once, here, and per the contract `repr` is not used again.
        let inner = unsafe { std::ptr::read(inner) };
        end_last(Unique(inner), None);
    } else {
        // SAFETY: per the contract.
        unsafe { ManuallyDrop::drop(repr) }
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = self.span_context();
        f.debug_struct("Span")
            .field("trace_id", &context.trace_id)
            .field("span_id", &context.span_id)
            .field("sampled", &context.sampled)
            .finish_non_exhaustive()
    }
}

/// Whether the handle holding `inner` is the span's only one. The caller holds that handle, which is not
/// `Sync`, so a count of 1 cannot grow behind its back: it may then use the span without the lock.
#[inline(always)]
fn only_handle(inner: &Arc<SpanInner>) -> bool {
    let only = Arc::strong_count(inner) == 1;
    // Acquire: what other handles wrote before their (release) decrements happens before what this one
    // does next, unlocked. Taken either way: on x86 it is no instruction, and no branch is needed for it.
    fence(Ordering::Acquire);
    only
}

/// Ends a sampled span that other handles may share, and queues what it recorded. Out of line, so that
/// the unsampled path inlines to a branch.
#[inline(never)]
fn end_sampled(inner: &SpanInner, at: Instant, alone: bool) {
    // Another thread may hold a handle and record meanwhile (it records first, or finds the span ended):
    // the span is ended and its recording moved out under the lock, unless this handle is the only one.
    // SAFETY: `alone` is `Span::sampled`'s: no other handle exists, so nothing else can reach the record.
    let mut record = unsafe { inner.record.lock_unless_exclusive(alone) };
    if let Some(duration) = inner.finish(&mut record, at) {
        pipeline::submit(|slot| inner.write_finished(&mut record, duration, slot));
    }
}

/// [`end_sampled`] with a handle given up by its owner: when it is the last, no lock is needed and the
/// allocation goes back to the pool.
#[inline(never)]
fn end_owned(inner: Arc<SpanInner>, at: Instant) {
    if only_handle(&inner) {
        end_last(Unique(inner), Some(at));
    } else {
        end_sampled(&inner, at, false);
    }
}

/// Ends the span whose last handle this was, if it still runs (at `at`, or now), and pools its allocation.
/// Nothing else can reach the span, so the end is plain stores: no compare-exchange, no lock.
#[inline(never)]
fn end_last(mut span: Unique, at: Option<Instant>) {
    let inner = span.get_mut();
    let state = *inner.end.get_mut();
    if state & RUNNING != 0 {
        let ended = ended_state(at.unwrap_or_else(Instant::now).nanos_since(inner.start));
        *inner.end.get_mut() = ended;
        running::ended_slot(slot_of(state));
        let inner = &*inner;
        pipeline::submit(|slot| {
            // SAFETY: `span` is the only reference to the allocation (`Unique`), so nothing else can
            // hold or take the lock.
            let record = unsafe { inner.record.get_exclusive() };
            inner.write_finished(record, ended - 1, slot);
        });
    }
    pool(span);
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `value` with a string cut to [`MAX_STRING_BYTES`](limits::MAX_STRING_BYTES).
#[inline]
fn limit_value(value: AttributeValue) -> AttributeValue {
    match value {
        AttributeValue::String(s) => AttributeValue::String(limits::truncate(s)),
        other => other,
    }
}

/// Sets `key` in `entries`: replaces a value in place, appends below the limit, counts a drop above it.
/// `value` must have been through [`limit_value`] (done before locking, to keep the lock short).
#[inline]
fn insert_attribute<const N: usize>(
    entries: &mut SmallVec<[Attribute; N]>,
    dropped: &mut u32,
    key: Cow<'static, str>,
    value: AttributeValue,
) {
    if let Some(entry) = entries.iter_mut().find(|(k, _)| *k == key) {
        entry.1 = value;
    } else if entries.len() < MAX_ATTRIBUTES {
        entries.push((key, value));
    } else {
        *dropped = dropped.saturating_add(1);
    }
}

impl SpanInner {
    #[inline]
    fn is_ended(&self) -> bool {
        self.end.load(Ordering::Acquire) & RUNNING == 0
    }

    /// The recording, locked unless this handle is the span's only one (`alone`, from [`Span::sampled`]),
    /// unless the span has ended.
    #[inline]
    fn recording(&self, alone: bool) -> Option<SpinGuard<'_, Record>> {
        if self.is_ended() {
            return None;
        }
        // SAFETY: `alone` is `Span::sampled`'s: no other handle exists, so nothing else can reach the record.
        Some(unsafe { self.record.lock_unless_exclusive(alone) })
    }

    #[inline(never)]
    fn update_name(&self, name: Cow<'static, str>, alone: bool) {
        if let Some(mut record) = self.recording(alone) {
            // Under the record lock, so that the running count follows the name the span ends with.
            running::renamed(&RunningSlot(&self.end), &name);
            record.name = name;
        }
    }

    /// Sets an attribute. The common case is inline: this handle alone, a new key, room in the inline
    /// buffer, a value that needs no cut; anything else goes out of line.
    #[inline]
    fn set_attribute(&self, key: Cow<'static, str>, value: AttributeValue, alone: bool) {
        if alone && !self.is_ended() {
            // SAFETY: `alone` is `Span::sampled`'s: no other handle exists, so nothing else can reach the
            // record.
            let attributes = unsafe { &mut self.record.get_exclusive().attributes };
            let len = attributes.len();
            let room = !attributes.spilled() && len < INLINE_ATTRIBUTES;
            let whole = !matches!(&value, AttributeValue::String(s) if s.len() > limits::MAX_STRING_BYTES);
            if room && whole && !attributes.iter().any(|(k, _)| *k == key) {
                // SAFETY: not spilled and below the inline capacity (itself below `MAX_ATTRIBUTES`), so
                // entry `len` is inside the buffer and uninitialised; the length then covers it.
                unsafe {
                    attributes.as_mut_ptr().add(len).write((key, value));
                    attributes.set_len(len + 1);
                }
                return;
            }
        }
        // The pair is made here, on the slow path, not passed as two values: a value passed to the
        // out-of-line call must be in memory, so LLVM built it there before the test, and the fast path
        // above then copied it with a load that the store buffer cannot forward (three 8-byte stores read
        // back as a 16-byte and an 8-byte load).
        self.set_attribute_general((key, value), alone);
    }

    #[inline(never)]
    fn set_attribute_general(&self, (key, value): Attribute, alone: bool) {
        let value = limit_value(value);
        if let Some(mut record) = self.recording(alone) {
            let record = &mut *record;
            insert_attribute(&mut record.attributes, &mut record.dropped_attributes, key, value);
        }
    }

    #[inline(never)]
    fn add_annotation(&self, description: Cow<'static, str>, attributes: Attributes, alone: bool) {
        let description = limits::truncate(description);
        self.add_time_event(TimeEventKind::Annotation { description, attributes }, alone);
    }

    #[inline(never)]
    fn add_time_event(&self, event: TimeEventKind, alone: bool) {
        let at = Instant::now();
        let Some(mut record) = self.recording(alone) else { return };
        let record = &mut *record;
        let (count, limit, dropped) = match event {
            TimeEventKind::Annotation { .. } => {
                (&mut record.annotations, MAX_ANNOTATIONS, &mut record.dropped_annotations)
            }
            TimeEventKind::MessageEvent { .. } => {
                (&mut record.message_events, MAX_MESSAGE_EVENTS, &mut record.dropped_message_events)
            }
        };
        if *count >= limit {
            *dropped = dropped.saturating_add(1);
            return;
        }
        *count += 1;
        record.time_events.push((at, event));
    }

    /// Stamps the end time `at`; the span's duration in nanoseconds for the one caller that ended it. The
    /// record's guard proves the lock is held: every write of the end word happens under it (or with the
    /// span held exclusively), so a load and a store suffice.
    fn finish(&self, _locked: &mut SpinGuard<'_, Record>, at: Instant) -> Option<u64> {
        let state = self.end.load(Ordering::Relaxed);
        if state & RUNNING == 0 {
            return None;
        }
        let ended = ended_state(at.nanos_since(self.start));
        // Release: a thread that reads the span as ended without the lock sees it whole.
        self.end.store(ended, Ordering::Release);
        running::ended_slot(slot_of(state));
        Some(ended - 1)
    }

    /// Moves the ended span's recording into `slot` (uninitialised), leaving `record` as a new span's in
    /// place for the allocation's next span (so that pooling it has nothing to reset). Only what the span
    /// set is copied: the attributes set, not the whole inline buffer, and [`Rare`] only when it has any
    /// of it. The slot's lines come from the batcher's core: each one written costs.
    #[inline]
    fn write_finished(&self, record: &mut Record, duration: u64, slot: *mut Finished) {
        let attributes = &mut record.attributes;
        let (len, spilled) = (attributes.len(), attributes.spilled());
        // Every rare field is at its new span's value unless one of these says otherwise: the per-kind
        // event counts grow only with `time_events`, and a drop is counted only at a full list.
        let rare = spilled
            || !record.time_events.is_empty()
            || !record.links.is_empty()
            || (record.dropped_attributes
                | record.dropped_annotations
                | record.dropped_message_events
                | record.dropped_links)
                != 0
            || self.context.tracestate.0.is_some()
            || record.status.code != StatusCode::Ok
            || !record.status.message.is_empty();
        debug_assert!(rare || (record.annotations == 0 && record.message_events == 0));
        // SAFETY: `slot` is valid for writes of a `Finished` (the ring's contract); every field is written
        // once (`rare` only when `has_rare` says so), through raw pointers so that the uninitialised slot is
        // never read or dropped. The inline attributes: the `len` initialised entries of `attributes`'
        // inline buffer (unless they were moved into `rare`'s vector) are copied into the slot's, which
        // does not overlap it, and `attributes` forgets them (length 0), so each is owned by the slot
        // alone; nothing in between can panic.
        unsafe {
            (&raw mut (*slot).trace_id).write(self.context.trace_id);
            (&raw mut (*slot).span_id).write(self.context.span_id);
            (&raw mut (*slot).parent_span_id).write(self.parent_span_id);
            (&raw mut (*slot).start).write(self.start);
            (&raw mut (*slot).duration).write(duration);
            (&raw mut (*slot).name).write(std::mem::take(&mut record.name));
            (&raw mut (*slot).kind).write(self.kind);
            (&raw mut (*slot).same_process_as_parent_span).write(self.same_process_as_parent_span);
            (&raw mut (*slot).has_rare).write(rare);
            (&raw mut (*slot).child_span_count).write(self.child_span_count.load(Ordering::Relaxed));
            if rare {
                let spilled = if spilled { std::mem::take(attributes).into_vec() } else { Vec::new() };
                (&raw mut (*slot).rare).cast::<Rare>().write(Rare {
                    dropped_attributes: std::mem::take(&mut record.dropped_attributes),
                    dropped_annotations: std::mem::take(&mut record.dropped_annotations),
                    dropped_message_events: std::mem::take(&mut record.dropped_message_events),
                    dropped_links: std::mem::take(&mut record.dropped_links),
                    status: std::mem::take(&mut record.status),
                    // Kept by the span too (a handle may still be asked for its context): a clone.
                    tracestate: self.context.tracestate.clone(),
                    time_events: std::mem::take(&mut record.time_events),
                    links: std::mem::take(&mut record.links),
                    spilled_attributes: spilled,
                });
                record.annotations = 0;
                record.message_events = 0;
            }
            // At most `INLINE_ATTRIBUTES` unless spilled.
            let len = if spilled { 0 } else { len as u8 };
            attributes.set_len(0);
            std::ptr::copy_nonoverlapping(
                attributes.as_ptr(),
                (&raw mut (*slot).inline_attributes).cast::<Attribute>(),
                usize::from(len),
            );
            (&raw mut (*slot).inline_len).write(len);
        }
        // Every field was moved out or reset above: `clear` has nothing left to do.
        record.clean = true;
    }

    /// The finished span for exporters, its instants turned into wall-clock times by `clock`, as the
    /// pipeline would make it. Takes the recording out, so call it once, after the span ended.
    #[cfg(test)]
    pub(crate) fn take_span_data(&self, clock: &WallClock) -> SpanData {
        let duration = self.end.load(Ordering::Acquire).saturating_sub(1);
        let mut finished = MaybeUninit::<Finished>::uninit();
        self.write_finished(&mut self.record.lock(), duration, finished.as_mut_ptr());
        // SAFETY: `write_finished` initialised it; `take_finished` moves it out, once.
        unsafe { take_finished(finished.as_mut_ptr(), clock) }
    }
}

impl Drop for SpanInner {
    fn drop(&mut self) {
        // Reached unended only when the last two handles were dropped at once (see `Span`'s drop). The
        // allocation is going away, so move its contents into a new one for the pipeline.
        let state = *self.end.get_mut();
        if state & RUNNING == 0 {
            return;
        }
        running::ended_slot(slot_of(state));
        let ended = ended_state(Instant::now().nanos_since(self.start));
        let inner = &*self;
        pipeline::submit(|slot| {
            // SAFETY: `drop` has the span to itself (`&mut self`, reborrowed shared only here).
            let record = unsafe { inner.record.get_exclusive() };
            inner.write_finished(record, ended - 1, slot);
        });
    }
}

/// An ended sampled span as the pipeline's rings hold it: what it recorded, moved out of its allocation
/// by the thread that ended it, so that the pipeline's thread never touches the allocation (see the
/// module docs). `repr(C)`, in this order: the fields every span writes come first, then the attributes,
/// then what few spans have ([`Rare`]), so that a span with a few attributes writes (and the batcher
/// reads) the first few cache lines of its slot only: three with two attributes, the ring's stamp included
/// (a test keeps that true).
#[repr(C)]
pub(crate) struct Finished {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    kind: SpanKind,
    same_process_as_parent_span: Option<bool>,
    /// Whether `rare` is initialised; when not, each of its fields is empty, 0 or `Ok`.
    has_rare: bool,
    /// How many of `inline_attributes` are initialised (0 when `rare` holds them, spilled). A byte, so
    /// that it shares a word with the fields above: with the header at 88 bytes, a span with two
    /// attributes writes three cache lines, stamp included.
    inline_len: u8,
    child_span_count: u32,
    start: Instant,
    /// Nanoseconds.
    duration: u64,
    name: Cow<'static, str>,
    inline_attributes: [MaybeUninit<Attribute>; INLINE_ATTRIBUTES],
    rare: MaybeUninit<Rare>,
}

/// What a [`Finished`] span holds only if it recorded it: time events, links, dropped counts, a
/// tracestate, a status other than `Ok`, more attributes than fit inline. A span with none of it (most: a
/// layer sets a few attributes, and a status only when the call failed) writes none of these lines.
struct Rare {
    dropped_attributes: u32,
    dropped_annotations: u32,
    dropped_message_events: u32,
    dropped_links: u32,
    status: Status,
    tracestate: TraceState,
    time_events: Vec<(Instant, TimeEventKind)>,
    links: Vec<Link>,
    /// The attributes when there were more than fit inline (the span's buffer, moved); else empty.
    spilled_attributes: Vec<Attribute>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        // The inline entries and `rare` need a hand: the other fields drop themselves.
        for attribute in &mut self.inline_attributes[..usize::from(self.inline_len)] {
            // SAFETY: the first `inline_len` entries are initialised and owned by this value.
            unsafe { attribute.assume_init_drop() };
        }
        if self.has_rare {
            // SAFETY: `has_rare` says it is initialised, and it is owned by this value.
            unsafe { self.rare.assume_init_drop() };
        }
    }
}

/// Moves the finished span out of `slot` as exporters receive it, its instants turned into wall-clock
/// times by `clock`.
///
/// # Safety
/// `slot` must hold an initialised [`Finished`] that nothing else reads or writes meanwhile; it is left
/// uninitialised (moved out, nothing to drop).
pub(crate) unsafe fn take_finished(slot: *mut Finished, clock: &WallClock) -> SpanData {
    // SAFETY: per the contract, every field is initialised (`rare` when `has_rare` says so) and read (moved
    // out) exactly once; the first `inline_len` inline attributes are initialised and are copied once into `entries`' own buffer, which
    // has room for them and does not overlap the slot.
    unsafe {
        let inline_len = usize::from((&raw const (*slot).inline_len).read());
        let rare = if (&raw const (*slot).has_rare).read() {
            (&raw const (*slot).rare).cast::<Rare>().read()
        } else {
            Rare {
                dropped_attributes: 0,
                dropped_annotations: 0,
                dropped_message_events: 0,
                dropped_links: 0,
                status: Status::default(),
                tracestate: TraceState::EMPTY,
                time_events: Vec::new(),
                links: Vec::new(),
                spilled_attributes: Vec::new(),
            }
        };
        let mut entries = rare.spilled_attributes;
        if inline_len > 0 {
            entries = Vec::with_capacity(inline_len);
            std::ptr::copy_nonoverlapping(
                (&raw const (*slot).inline_attributes).cast::<Attribute>(),
                entries.as_mut_ptr(),
                inline_len,
            );
            entries.set_len(inline_len);
        }
        let start = (&raw const (*slot).start).read();
        let start_time = clock.at(start);
        let duration = Duration::from_nanos((&raw const (*slot).duration).read());
        // Most spans have none: skip the iterator's set-up and drop.
        let time_events = if rare.time_events.is_empty() {
            Vec::new()
        } else {
            rare.time_events.into_iter().map(|(at, kind)| TimeEvent { time: clock.at(at), kind }).collect()
        };
        SpanData {
            context: SpanContext {
                trace_id: (&raw const (*slot).trace_id).read(),
                span_id: (&raw const (*slot).span_id).read(),
                sampled: true,
                tracestate: rare.tracestate,
            },
            parent_span_id: (&raw const (*slot).parent_span_id).read(),
            name: (&raw const (*slot).name).read(),
            kind: (&raw const (*slot).kind).read(),
            start_time,
            end_time: start_time.checked_add(duration).unwrap_or(start_time),
            attributes: Attributes { entries, dropped: rare.dropped_attributes },
            time_events,
            dropped_annotations: rare.dropped_annotations,
            dropped_message_events: rare.dropped_message_events,
            links: rare.links,
            dropped_links: rare.dropped_links,
            status: rare.status,
            same_process_as_parent_span: (&raw const (*slot).same_process_as_parent_span).read(),
            child_span_count: (&raw const (*slot).child_span_count).read(),
        }
    }
}

/// Where a new span attaches.
#[derive(Clone, Debug, Default)]
pub enum Parent {
    /// The current span of this thread or instrumented future; a root when there is none.
    #[default]
    Current,
    /// A span of this process, given explicitly (e.g. carried into a spawned task).
    Local(Span),
    /// A span of another process, extracted from request headers. Its sampled flag is honoured; an
    /// invalid context (all-zero ids) gives a root.
    Remote(SpanContext),
    /// No parent: a new trace.
    Root,
}

/// Starts a span with options. [`start_span`] covers the common case.
///
/// ```
/// use oclayer_runtime::trace::{Parent, SpanBuilder, SpanKind};
/// let span = SpanBuilder::new("backend-/users/{id}").kind(SpanKind::Client).parent(Parent::Current).start();
/// span.set_attribute("http.method", "GET");
/// span.end();
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct SpanBuilder {
    name: Cow<'static, str>,
    kind: SpanKind,
    parent: Parent,
    sampler: Option<Sampler>,
}

impl SpanBuilder {
    /// A span named `name`, of kind [`SpanKind::Unspecified`], child of the current span.
    #[inline]
    pub fn new(name: impl Into<Cow<'static, str>>) -> SpanBuilder {
        SpanBuilder { name: name.into(), kind: SpanKind::Unspecified, parent: Parent::Current, sampler: None }
    }

    /// Server, client or unspecified.
    #[inline]
    pub fn kind(mut self, kind: SpanKind) -> SpanBuilder {
        self.kind = kind;
        self
    }

    /// Where the span attaches; [`Parent::Current`] by default.
    #[inline]
    pub fn parent(mut self, parent: Parent) -> SpanBuilder {
        self.parent = parent;
        self
    }

    /// Decides this span's sampling with `sampler` instead of the process-wide one, even when the parent is
    /// local (e.g. [`Sampler::AlwaysOn`] to trace one endpoint always). Without it, a child of a local
    /// span follows its parent.
    #[inline]
    pub fn sampler(mut self, sampler: Sampler) -> SpanBuilder {
        self.sampler = Some(sampler);
        self
    }

    /// Starts the span: picks ids, takes the sampling decision, and for a sampled span reads the clock and
    /// allocates its recording. It does not become current: enter it or instrument a future with it.
    // Always inlined: the parent is usually a constant at the call site, so only one arm remains, and the
    // unsampled path then compiles to a few instructions with no call.
    #[inline(always)]
    pub fn start(self) -> Span {
        self.start_with(None)
    }

    /// [`SpanBuilder::start`] with a start time read by the caller: a layer that also measures the call's
    /// latency reads the clock once for both. Used only if the span is sampled.
    #[inline(always)]
    pub(crate) fn start_at(self, at: Instant) -> Span {
        self.start_with(Some(at))
    }

    #[inline(always)]
    fn start_with(self, at: Option<Instant>) -> Span {
        let SpanBuilder { name, kind, parent, sampler } = self;
        // A local parent is looked at before the start is put together, so that the start's fields can stay
        // where they are across the look: put together first, they were copied to the stack around it,
        // in 16-byte loads of the 8-byte stores just made, which the store buffer cannot forward.
        let parent = match parent {
            // The slot is borrowed only to copy the parent's context out; the child is built after.
            Parent::Current => context::with_current(LocalParent::of),
            Parent::Local(parent) => LocalParent::of(&parent),
            Parent::Remote(remote) => return Start { name, kind, sampler, at }.child_of_remote(remote),
            Parent::Root => return Start { name, kind, sampler, at }.root(),
        };
        Start { name, kind, sampler, at }.child_of(parent)
    }
}

/// Starts a span named `name` of kind `kind`, child of the current span (a root when there is none).
#[inline]
pub fn start_span(name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
    SpanBuilder::new(name).kind(kind).start()
}

/// What a child takes from a parent span of this process.
enum LocalParent {
    /// No (valid) parent: the child is a root.
    None,
    /// An unsampled parent whose ids are derived: the child derives its own from the same trace seed.
    Derived(IdSeeds),
    Context(SpanContext),
}

impl LocalParent {
    /// Copies the context out of `parent` and counts the child being started on it.
    #[inline(always)]
    fn of(parent: &Span) -> LocalParent {
        match &*parent.repr {
            Repr::Derived(seeds) => LocalParent::Derived(*seeds),
            Repr::Unsampled(ids) if ids.is_valid() => LocalParent::Context(ids.context()),
            Repr::Unsampled(_) => LocalParent::None,
            Repr::Sampled(inner) => {
                let count = &inner.child_span_count;
                if only_handle(inner) {
                    // No other thread can count at the same time.
                    count.store(count.load(Ordering::Relaxed).saturating_add(1), Ordering::Relaxed);
                } else {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                LocalParent::Context(inner.context.clone())
            }
        }
    }
}

/// The context of a span whose ids are derived from `seeds`.
#[inline]
fn derived_context(seeds: IdSeeds, sampled: bool) -> SpanContext {
    SpanContext {
        trace_id: seeds.trace_id(),
        span_id: seeds.span_id(),
        sampled,
        tracestate: TraceState::EMPTY,
    }
}

struct Start {
    name: Cow<'static, str>,
    kind: SpanKind,
    sampler: Option<Sampler>,
    /// The start time if the caller read it; else the clock is read once the span is known to be sampled.
    at: Option<Instant>,
}

impl Start {
    /// The sampling decision; `trace_high` (the trace id's high half) is asked for only by the probability
    /// sampler.
    #[inline(always)]
    fn decide(&self, trace_high: impl FnOnce() -> u64, parent_sampled: Option<bool>) -> bool {
        match &self.sampler {
            Some(sampler) => sampler.should_sample_high(trace_high, parent_sampled),
            None => sampler::sample_with_global(trace_high, parent_sampled),
        }
    }

    /// A new trace: its ids stay seeds unless the span is sampled.
    #[inline(always)]
    fn root(self) -> Span {
        let seeds = IdSeeds::root();
        if self.decide(|| seeds.trace_high(), None) {
            Span::of(Repr::Sampled(self.into_sampled(derived_context(seeds, true), None, None)))
        } else {
            Span::of(Repr::Derived(seeds))
        }
    }

    fn child_of_remote(self, parent: SpanContext) -> Span {
        if !parent.is_valid() {
            return self.root();
        }
        let sampled = self.decide(|| parent.trace_id.high_u64(), Some(parent.sampled));
        let context = SpanContext {
            trace_id: parent.trace_id,
            span_id: SpanId::random(),
            sampled,
            tracestate: parent.tracestate,
        };
        self.into_span(context, Some(parent.span_id), Some(false))
    }

    #[inline(always)]
    fn child_of(self, parent: LocalParent) -> Span {
        let parent = match parent {
            LocalParent::None => return self.root(),
            LocalParent::Derived(parent) => return self.child_of_derived(parent),
            LocalParent::Context(parent) => parent,
        };
        let sampled = match &self.sampler {
            Some(sampler) => sampler.should_sample(&parent.trace_id, Some(parent.sampled)),
            None => parent.sampled,
        };
        let parent_span_id = parent.span_id;
        let context = SpanContext { span_id: SpanId::random(), sampled, ..parent };
        self.into_span(context, Some(parent_span_id), Some(true))
    }

    /// A child of an unsampled span whose ids are derived: it derives its own from the same trace, and is
    /// unsampled too unless its own sampler says otherwise.
    #[inline(always)]
    fn child_of_derived(self, parent: IdSeeds) -> Span {
        let seeds = parent.child();
        let sampled = match &self.sampler {
            Some(sampler) => sampler.should_sample_high(|| seeds.trace_high(), Some(false)),
            None => false,
        };
        if sampled {
            Span::of(Repr::Sampled(self.into_sampled(
                derived_context(seeds, true),
                Some(parent.span_id()),
                Some(true),
            )))
        } else {
            Span::of(Repr::Derived(seeds))
        }
    }

    #[inline(always)]
    fn into_span(
        self,
        context: SpanContext,
        parent_span_id: Option<SpanId>,
        same_process_as_parent_span: Option<bool>,
    ) -> Span {
        if context.sampled {
            Span::of(Repr::Sampled(self.into_sampled(context, parent_span_id, same_process_as_parent_span)))
        } else {
            Span::of(Repr::Unsampled(GivenIds::of(context)))
        }
    }

    /// Out of line: allocating and reading the clock dwarf a call, and the unsampled path stays small.
    /// Returns the allocation, one word in a register, not a handle: a returned handle goes through
    /// memory, and the unsampled branches then built theirs in the same stack temporary, copied out in
    /// 16-byte loads of their 8-byte stores (a store-forwarding stall in every unsampled annotated call).
    #[inline(never)]
    fn into_sampled(
        self,
        context: SpanContext,
        parent_span_id: Option<SpanId>,
        same_process_as_parent_span: Option<bool>,
    ) -> Arc<SpanInner> {
        let running = running::started(&self.name);
        let start = self.at.unwrap_or_else(Instant::now);
        if let Some(mut reused) = pooled() {
            let fields = Fields { context, parent_span_id, same_process_as_parent_span, start, running };
            self.reuse(reused.get_mut(), fields);
            return reused.0;
        }
        // Written straight into the allocation: `Arc::new` built the ~650-byte value on the stack and
        // copied it, a tenth of the sampled path.
        let inner = Arc::<SpanInner>::new_uninit();
        // Not through `Arc::get_mut`, whose uniqueness check is a compare-exchange on the weak count: one
        // more atomic per span for what is known here.
        // SAFETY: the `Arc` was made just above and has not been cloned, so nothing else can reach the
        // value, and `Arc::as_ptr` points into the allocation with write permission (as
        // `Arc::get_mut_unchecked` does); writing a `MaybeUninit` needs no initialised contents.
        let slot = unsafe { &mut *Arc::as_ptr(&inner).cast_mut() };
        slot.write(SpanInner {
            context,
            parent_span_id,
            kind: self.kind,
            same_process_as_parent_span,
            start,
            end: AtomicU64::new(running_state(running)),
            child_span_count: AtomicU32::new(0),
            record: SpinLock::new(Record { name: self.name, ..Record::default() }),
        });
        // SAFETY: initialised just above.
        unsafe { inner.assume_init() }
    }
}

/// What differs between two sampled spans besides the name and kind, for [`Start::reuse`].
struct Fields {
    context: SpanContext,
    parent_span_id: Option<SpanId>,
    same_process_as_parent_span: Option<bool>,
    start: Instant,
    running: u32,
}

impl Start {
    /// Makes a recycled allocation this span. Everything else was reset by [`clear`], so only what differs
    /// between spans is written, not the whole 650 bytes.
    fn reuse(self, inner: &mut SpanInner, fields: Fields) {
        inner.context = fields.context;
        inner.parent_span_id = fields.parent_span_id;
        inner.kind = self.kind;
        inner.same_process_as_parent_span = fields.same_process_as_parent_span;
        inner.start = fields.start;
        *inner.end.get_mut() = running_state(fields.running);
        let record = inner.record.get_mut();
        record.name = self.name;
        record.clean = false;
    }
}

/// A thread keeps up to this many span allocations for its next sampled spans; beyond, they move to the
/// shared pool a chunk at a time, so the pool costs a span no atomic read-modify-write. A span's last
/// handle usually goes on the thread that started it, so a thread mostly reuses its own; a thread that
/// drops more spans than it starts (spans carried to it) passes the surplus on to the others. Small,
/// because an idle thread keeps its chunk (about 20 KiB) until it exits.
pub(super) const CHUNK: usize = 32;

/// How many chunks wait in the shared pool: with [`CHUNK`], 512 spans.
const SHARED_CHUNKS: usize = 16;

/// Chunks of span allocations that threads had no room for, for other threads to reuse. A span allocated
/// on one thread and freed on another is a trip to the allocator's shared arena with memory cold in this
/// core's cache; reuse makes it a pop from a pool.
static SHARED: LazyLock<ArrayQueue<Vec<Unique>>> = LazyLock::new(|| ArrayQueue::new(SHARED_CHUNKS));

thread_local! {
    /// This thread's span allocations, at most [`CHUNK`]: taken by `into_sampled`, filled by [`pool`] when
    /// a span's last handle goes on this thread. A const initialiser with no lazy state, so that reaching
    /// it is a plain thread-local access.
    static LOCAL: RefCell<Vec<Unique>> = const { RefCell::new(Vec::new()) };
}

/// A span allocation from this thread's pool, which takes a chunk from the shared pool when it is empty.
/// `None` when both are empty (the caller allocates).
#[inline]
fn pooled() -> Option<Unique> {
    LOCAL
        .try_with(|local| {
            // Busy only if a span started inside this function (it does not); then allocate.
            let mut local = local.try_borrow_mut().ok()?;
            if let Some(span) = local.pop() {
                return Some(span);
            }
            // `is_empty` first: an empty `pop` ends in a full fence, which would tax every span of a
            // process that does not export (nothing is recycled there).
            if SHARED.is_empty() {
                return None;
            }
            let mut chunk = SHARED.pop()?;
            let span = chunk.pop();
            // The chunk's buffer becomes this thread's pool; the empty one it replaces is freed.
            *local = chunk;
            span
        })
        .ok()
        .flatten()
}

/// A span allocation nothing else refers to: the pool's entries, and a span whose last handle is going.
/// Its `get_mut` is `Arc::get_mut` without the check, which is an atomic compare-exchange on the weak
/// count (a fifth of the atomics of a sampled span once the others were gone).
///
/// Made only from an `Arc` whose strong count was seen to be 1 (after an acquire fence) while held
/// exclusively: no other `Arc` exists then and none can be made, and no `Weak` is ever made of a span.
struct Unique(Arc<SpanInner>);

impl Unique {
    #[inline]
    fn get_mut(&mut self) -> &mut SpanInner {
        // SAFETY: the `Arc` is the only one and no `Weak` exists (the type's invariant); it has stayed
        // inside this `Unique` since, so nothing else can reach the value, and `Arc::as_ptr` points into
        // the allocation with write permission (as `Arc::get_mut_unchecked` does).
        unsafe { &mut *Arc::as_ptr(&self.0).cast_mut() }
    }
}

/// Keeps an ended span's allocation for reuse by this thread's next sampled span; its recording was moved
/// to the pipeline (or, with no pipeline, is dropped here). A full pool first hands its chunk to the shared
/// one (or frees it, when the shared pool is full too).
#[inline]
fn pool(mut span: Unique) {
    clear(span.get_mut());
    // Freed outside the pool's borrow. Dropping pooled spans exports nothing: they read as ended.
    let _rejected = LOCAL.try_with(|local| {
        // Busy only if dropping a span pooled one (it does not: dropping a pooled chunk frees ended spans
        // with no handle); then free.
        let mut local = local.try_borrow_mut().ok()?;
        let mut rejected = None;
        if local.len() >= CHUNK {
            let full = std::mem::replace(&mut *local, Vec::with_capacity(CHUNK));
            rejected = SHARED.push(full).err();
        }
        local.push(span);
        rejected
    });
}

/// How many allocations this thread's pool holds.
#[cfg(test)]
pub(crate) fn pooled_here_for_test() -> usize {
    LOCAL.with(|local| local.borrow().len())
}

/// The address of a sampled span's allocation, to tell whether a later span reuses it.
#[cfg(test)]
pub(crate) fn address_for_test(span: &Span) -> Option<*const ()> {
    match &*span.repr {
        Repr::Sampled(inner) => Some(Arc::as_ptr(inner).cast()),
        _ => None,
    }
}

/// Puts back a new span's state in what `into_sampled` does not overwrite when it reuses an allocation.
/// The tracestate's entries are freed now rather than kept alive by the pool. The end time stays: a pooled
/// span must read as ended, or dropping it (pool full) would export it again.
fn clear(inner: &mut SpanInner) {
    inner.context.tracestate = TraceState::EMPTY;
    *inner.child_span_count.get_mut() = 0;
    if inner.record.get_mut().clean {
        // Moved out to the pipeline, which left it as a new span's.
        return;
    }
    // Field by field, not a whole default record written over the old one: resetting the fields in place
    // is a few stores instead of a 600-byte copy.
    // No `..` in the pattern: a field added to `Record` must be reset here too.
    let Record {
        name,
        attributes,
        dropped_attributes,
        time_events,
        annotations,
        dropped_annotations,
        message_events,
        dropped_message_events,
        links,
        dropped_links,
        status,
        clean,
    } = inner.record.get_mut();
    *name = Cow::Borrowed("");
    if attributes.spilled() {
        // More attributes than fit inline: free the heap buffer rather than keep it in the pool.
        *attributes = SmallVec::new();
    } else {
        attributes.clear();
    }
    *dropped_attributes = 0;
    *time_events = Vec::new();
    *annotations = 0;
    *dropped_annotations = 0;
    *message_events = 0;
    *dropped_message_events = 0;
    *links = Vec::new();
    *dropped_links = 0;
    *status = Status::default();
    *clean = true;
}

/// Cancellation as the layers record it: `CANCELLED`, with the code's name as the message.
pub(crate) fn cancel(span: &Span) {
    span.set_status(StatusCode::Cancelled, StatusCode::Cancelled.name());
    span.end();
}

#[cfg(test)]
impl Span {
    /// What the exporters would receive for this span; takes the recording, so call it once, last.
    pub(crate) fn take_data_for_test(&self) -> Option<SpanData> {
        match &*self.repr {
            Repr::Sampled(inner) => Some(inner.take_span_data(&WallClock::now())),
            Repr::Derived(_) | Repr::Unsampled(_) => None,
        }
    }

    /// Whether the span has ended.
    pub(crate) fn is_ended_for_test(&self) -> bool {
        matches!(&*self.repr, Repr::Sampled(inner) if inner.is_ended())
    }
}

/// An ended sampled span as the pipeline's rings hold it: a [`Finished`] written as a span's end writes it.
#[cfg(test)]
pub(crate) fn finished_for_test(name: &'static str, slot: *mut Finished) {
    let span = SpanBuilder::new(name).parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
    let Repr::Sampled(inner) = &*span.repr else { unreachable!("sampled by AlwaysOn") };
    let mut record = inner.record.lock();
    let duration = inner.finish(&mut record, Instant::now()).expect("it was running");
    inner.write_finished(&mut record, duration, slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spans_allocation_returns_to_the_pool_of_the_thread_that_drops_its_last_handle() {
        // Threads of their own: the pools are per thread.
        let carried = std::thread::spawn(|| {
            let span = SpanBuilder::new("pool-first").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
            let address = address_for_test(&span).expect("sampled");
            let held = pooled_here_for_test();
            span.end();
            assert_eq!(pooled_here_for_test(), held, "ended, but a handle remains");
            drop(span);
            assert_eq!(pooled_here_for_test(), held + 1, "the last handle pools it: no free");
            let next = SpanBuilder::new("pool-next").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
            assert_eq!(address_for_test(&next), Some(address), "the next sampled span reuses it");
            assert_eq!(pooled_here_for_test(), held);
            // Ended here, last handle carried to another thread.
            next.end();
            next
        })
        .join()
        .expect("the first thread");
        std::thread::spawn(move || {
            let held = pooled_here_for_test();
            let address = address_for_test(&carried);
            drop(carried);
            assert_eq!(pooled_here_for_test(), held + 1, "pooled where the last handle went");
            let span = SpanBuilder::new("pool-there").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
            assert_eq!(address_for_test(&span), address);
        })
        .join()
        .expect("the second thread");
    }

    #[test]
    fn a_finished_span_with_two_attributes_takes_three_cache_lines_of_its_slot() {
        // The ring's stamp (8 bytes) comes before the entry, at the start of a 64-byte-aligned slot.
        let written =
            8 + std::mem::offset_of!(Finished, inline_attributes) + 2 * std::mem::size_of::<Attribute>();
        assert!(written <= 3 * 64, "{written} bytes");
    }

    #[test]
    fn a_full_pool_hands_its_chunk_to_the_shared_pool_and_starts_another() {
        // A thread of its own: the pool is per thread (other tests' threads may take chunks from the shared
        // pool meanwhile, so only this thread's pool is checked).
        std::thread::spawn(|| {
            let spans: Vec<_> = (0..=CHUNK)
                .map(|_| {
                    SpanBuilder::new("pool-many").parent(Parent::Root).sampler(Sampler::AlwaysOn).start()
                })
                .collect();
            let mut handed_over = 0;
            for span in spans {
                let before = pooled_here_for_test();
                drop(span);
                let after = pooled_here_for_test();
                if before == CHUNK {
                    assert_eq!(after, 1, "a full pool hands its chunk over and starts a new one");
                    handed_over += 1;
                } else {
                    assert_eq!(after, before + 1);
                }
            }
            assert!(handed_over >= 1, "{} spans pooled into a pool of {CHUNK}", CHUNK + 1);
        })
        .join()
        .expect("the pool test's thread");
    }

    /// A span that overran every limit, ended with its recording moved out as the pipeline does
    /// (`moved_out`) or left in place (no pipeline).
    fn used_span(moved_out: bool) -> *const () {
        let used = SpanBuilder::new("reuse-before")
            .parent(Parent::Remote(SpanContext {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                sampled: true,
                tracestate: TraceState::from_entries(vec![("vendor".into(), "x".into())]),
            }))
            .sampler(Sampler::AlwaysOn)
            .start();
        let _child = SpanBuilder::new("child").parent(Parent::Local(used.clone())).start();
        for i in 0..=MAX_ATTRIBUTES {
            used.set_attribute(format!("key-{i}"), i64::try_from(i).unwrap_or(0));
        }
        for _ in 0..=MAX_ANNOTATIONS {
            used.add_annotation("note");
        }
        for id in 0..=MAX_MESSAGE_EVENTS {
            used.add_message_event(MessageEventKind::Sent, id as u64, 1, 1);
        }
        for _ in 0..=MAX_LINKS {
            used.add_link(Link {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                kind: super::super::LinkKind::Unspecified,
                attributes: Attributes::default(),
            });
        }
        used.set_status(StatusCode::Internal, "failed");
        used.end();
        if moved_out {
            let before = used.take_data_for_test().expect("sampled");
            assert!(before.attributes.dropped > 0 && before.dropped_annotations > 0);
            assert!(before.dropped_message_events > 0 && before.dropped_links > 0);
            assert!(!before.context.tracestate.is_empty() && before.child_span_count == 1);
        }
        address_for_test(&used).expect("sampled")
    }

    #[test]
    fn a_reused_allocation_carries_nothing_of_the_span_before_it() {
        for moved_out in [true, false] {
            // On a thread of its own, so that the next span takes the allocation just pooled (a thread's
            // pool hands out the last one in).
            std::thread::spawn(move || {
                let address = used_span(moved_out);
                let next =
                    SpanBuilder::new("reuse-after").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
                assert_eq!(address_for_test(&next), Some(address), "the allocation was reused");
                // The per-kind counts were reset too: a full set of events fits again.
                for id in 0..MAX_ANNOTATIONS.max(MAX_MESSAGE_EVENTS) {
                    if id < MAX_ANNOTATIONS {
                        next.add_annotation("note");
                    }
                    next.add_message_event(MessageEventKind::Received, id as u64, 1, 1);
                }
                next.end();
                let after = next.take_data_for_test().expect("sampled");
                assert_eq!(after.name, "reuse-after");
                assert_eq!(after.attributes, Attributes::default());
                assert_eq!(after.time_events.len(), MAX_ANNOTATIONS + MAX_MESSAGE_EVENTS);
                assert!(after.links.is_empty());
                assert_eq!(
                    (after.dropped_annotations, after.dropped_message_events, after.dropped_links),
                    (0, 0, 0)
                );
                assert_eq!(after.status, Status::default());
                assert_eq!(after.child_span_count, 0);
                assert!(after.context.tracestate.is_empty() && after.parent_span_id.is_none());
            })
            .join()
            .expect("the reuse test's thread");
        }
    }

    #[test]
    fn a_recycled_allocation_starts_clean() {
        // A span that recorded everything, ended and exported, then cleared for the pool...
        let used = SpanBuilder::new("recycle-before").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
        let _child = SpanBuilder::new("child").parent(Parent::Local(used.clone())).start();
        used.set_attribute("k", "v");
        used.add_annotation("note");
        used.add_link(Link {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            kind: super::super::LinkKind::Unspecified,
            attributes: Attributes::default(),
        });
        used.set_status(StatusCode::Internal, "failed");
        used.end();
        let Repr::Sampled(mut inner) = Repr::clone(&used.repr) else { panic!("sampled") };
        drop(used);
        let _exported = inner.take_span_data(&WallClock::now());
        drop(_child);
        let slot = Arc::get_mut(&mut inner).expect("no other handle");
        slot.context.tracestate = TraceState::from_entries(vec![("vendor".into(), "x".into())]);
        clear(slot);
        assert!(inner.is_ended(), "a pooled span reads as ended, so dropping it exports nothing");

        // ...holds nothing of its past once `into_sampled` has written a new span's fields.
        let slot = Arc::get_mut(&mut inner).expect("no other handle");
        let start = Start { name: "recycle-after".into(), kind: SpanKind::Client, sampler: None, at: None };
        let context =
            SpanContext { trace_id: TraceId::random(), span_id: SpanId::random(), ..SpanContext::INVALID };
        let fields = Fields {
            context: SpanContext { sampled: true, ..context.clone() },
            parent_span_id: None,
            same_process_as_parent_span: None,
            start: Instant::now(),
            running: running::NO_SLOT,
        };
        start.reuse(slot, fields);
        let reused = Span::of(Repr::Sampled(inner));
        assert!(!reused.is_ended_for_test(), "it runs again");
        reused.end();
        let data = reused.take_data_for_test().expect("sampled");
        assert_eq!((data.name.as_ref(), data.kind), ("recycle-after", SpanKind::Client));
        assert_eq!(data.context.span_id, context.span_id);
        assert_eq!(data.attributes, Attributes::default());
        assert!(data.time_events.is_empty() && data.links.is_empty());
        assert_eq!(data.status, Status::default());
        assert_eq!(data.child_span_count, 0);
        assert!(data.context.tracestate.is_empty());
    }
}
