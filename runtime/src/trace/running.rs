//! Counts of running sampled spans per name, for `/debug/tracez` (as OpenCensus zPages show them).
//!
//! Each span name gets a slot: a counter in a fixed table, found through a sharded name → slot map. A
//! sampled span looks its slot up when it starts (a read lock on one shard and a hash lookup; a lock and an
//! allocation only the first time a name is seen), increments it, and keeps the slot in its shared state
//! (a [`SlotHolder`]: the span keeps it in the same atomic word as its end time, so that the one atomic
//! operation that ends it also takes the slot), so ending is one decrement, and a rename moves the count to
//! the new name's slot.
//! Unsampled spans never come here.
//!
//! Starts and ends count into a table of the thread's own (registered with the registry, summed by the
//! reader, added into the shared table when the thread exits): only that thread writes it, so a count is a
//! plain load and store instead of a locked read-modify-write on a line other cores write too. A span that
//! starts on one thread and ends on another leaves +1 on the first and -1 on the second, which the sum
//! balances. A thread's table costs [`MAX_RUNNING_SPAN_NAMES`] + 1 counters while the thread lives.
//!
//! Most names are `&'static str` (the layers' names are fixed per annotated fn), and a static string's
//! address and length identify its text for the life of the process: each thread keeps a small cache from
//! address to slot, so a sampled span of such a name finds its slot with no lock and no hashing.
//!
//! The table holds [`MAX_RUNNING_SPAN_NAMES`] names; spans of names seen after it filled are counted under
//! [`OTHER_SPAN_NAMES`], so names made from request data cannot grow memory without bound. Names are never
//! removed: a name's count returns to 0 but it keeps its slot.

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// How many distinct span names are counted separately; spans of further names are counted together
/// under [`OTHER_SPAN_NAMES`].
pub const MAX_RUNNING_SPAN_NAMES: usize = 1000;

/// The name [`running_spans`] reports for spans whose names came after [`MAX_RUNNING_SPAN_NAMES`] others.
pub const OTHER_SPAN_NAMES: &str = "(other span names)";

/// What a span holds when it counts under no slot: unsampled, ended, or not yet counted.
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// Shards of the name map: spans of different names starting at once on different cores mostly read
/// different locks.
const SHARDS: usize = 8;

/// The registry of the process; span starts and ends go to it.
static RUNNING: LazyLock<Registry> = LazyLock::new(|| Registry::new(MAX_RUNNING_SPAN_NAMES));

/// Entries of each thread's cache of static names' slots: a handful covers the spans of one request.
const STATIC_NAME_CACHE: usize = 16;

thread_local! {
    /// `(address, length, slot)` of static names this thread has looked up, direct-mapped by address. Slots
    /// are never reassigned, so an entry never goes stale; [`NO_SLOT`] marks an empty entry.
    static STATIC_NAMES: [Cell<(usize, usize, u32)>; STATIC_NAME_CACHE] =
        const { [const { Cell::new((0, 0, NO_SLOT)) }; STATIC_NAME_CACHE] };
}

thread_local! {
    /// This thread's counts for the process registry, made on its first sampled span.
    static THREAD_COUNTS: ThreadCounts = ThreadCounts::register(&RUNNING);
}

/// A thread's table of counts, registered with a registry until the thread exits.
struct ThreadCounts {
    registry: &'static Registry,
    counts: Arc<[AtomicI64]>,
}

impl ThreadCounts {
    fn register(registry: &'static Registry) -> ThreadCounts {
        let counts: Arc<[AtomicI64]> = (0..registry.counts.len()).map(|_| AtomicI64::new(0)).collect();
        registry.threads.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&counts));
        ThreadCounts { registry, counts }
    }
}

impl Drop for ThreadCounts {
    fn drop(&mut self) {
        // Under the lock readers sum with, so that a reader sees these counts once: here or in the table.
        let mut threads = self.registry.threads.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, count) in self.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count != 0 {
                self.registry.counts[slot].fetch_add(count, Ordering::Relaxed);
            }
        }
        threads.retain(|counts| !Arc::ptr_eq(counts, &self.counts));
    }
}

/// Adds `delta` to `slot`'s count of the process registry, in this thread's table.
#[inline]
fn count_here(slot: u32, delta: i64) {
    let counted = THREAD_COUNTS.try_with(|local| {
        // Slots come from `Registry::slot`, so they index the table; only this thread writes it.
        let count = &local.counts[slot as usize];
        count.store(count.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    });
    // The thread's locals are being torn down (its table is already added in): count in the shared table.
    if counted.is_err() {
        RUNNING.counter(slot).fetch_add(delta, Ordering::Relaxed);
    }
}

/// The slot of `name` in the process registry, from this thread's cache when the name is static.
// A `Cow`, not a `&str`: whether the name is a static borrow is what the cache needs.
#[allow(clippy::ptr_arg)]
#[inline]
fn global_slot(name: &Cow<'static, str>) -> u32 {
    match name {
        Cow::Borrowed(name) => cached_slot(name),
        Cow::Owned(name) => RUNNING.slot(name),
    }
}

#[inline]
fn cached_slot(name: &'static str) -> u32 {
    let key = (name.as_ptr() as usize, name.len());
    // Names are laid out at least a few bytes apart: the low bits alone would leave entries unused.
    let index = ((key.0 >> 3) ^ (key.0 >> 9) ^ key.1) % STATIC_NAME_CACHE;
    STATIC_NAMES
        .try_with(|cache| {
            let entry = &cache[index];
            let (address, len, slot) = entry.get();
            if (address, len) == key && slot != NO_SLOT {
                return slot;
            }
            let slot = RUNNING.slot(name);
            entry.set((key.0, key.1, slot));
            slot
        })
        // The thread's locals are being torn down: look the name up without the cache.
        .unwrap_or_else(|_| RUNNING.slot(name))
}

/// The span names with running (started, not yet ended) sampled spans in this process, each with its
/// count; names with no running span are left out. Spans whose names came after
/// [`MAX_RUNNING_SPAN_NAMES`] others are counted together under [`OTHER_SPAN_NAMES`]. A renamed span
/// ([`Span::update_name`](super::Span::update_name)) counts under its new name.
///
/// Each count is read on its own, so a span ending meanwhile may or may not be counted. Unsampled spans
/// are not recorded and so are never counted.
///
/// ```
/// use oclayer_runtime::trace::{self, Parent, Sampler, SpanBuilder};
/// let span = SpanBuilder::new("doc-running-spans").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
/// assert!(trace::running_spans().contains(&("doc-running-spans".to_owned(), 1)));
/// span.end();
/// assert!(!trace::running_spans().iter().any(|(name, _)| name == "doc-running-spans"));
/// ```
pub fn running_spans() -> Vec<(String, u64)> {
    RUNNING.counts()
}

/// Where a running span keeps the slot it counts under, and gives it up when it ends.
pub(crate) trait SlotHolder {
    /// The slot the span counts under; [`NO_SLOT`] once it has ended.
    fn slot(&self) -> u32;

    /// Moves the span from slot `old` to slot `new`; false (and no change) if it no longer holds `old`
    /// because it ended meanwhile.
    fn exchange(&self, old: u32, new: u32) -> bool;
}

/// A slot alone in an atomic, as the tests keep it.
#[cfg(test)]
impl SlotHolder for AtomicU32 {
    fn slot(&self) -> u32 {
        self.load(Ordering::Acquire)
    }

    fn exchange(&self, old: u32, new: u32) -> bool {
        self.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// Counts a sampled span named `name` as running; returns the slot the span keeps for [`ended_slot`].
// A `Cow`, not a `&str`: whether the name is a static borrow is what the cache needs.
#[allow(clippy::ptr_arg)]
#[inline]
pub(crate) fn started(name: &Cow<'static, str>) -> u32 {
    let slot = global_slot(name);
    count_here(slot, 1);
    slot
}

/// Moves the count of a running span to `name`. Call it under the span's record lock, so that renames of
/// one span are ordered like the names they set; it only races with [`ended`], which it tolerates.
// A `Cow`, not a `&str`: whether the name is a static borrow is what the cache needs.
#[allow(clippy::ptr_arg)]
#[inline]
pub(crate) fn renamed(held: &impl SlotHolder, name: &Cow<'static, str>) {
    if held.slot() != NO_SLOT {
        RUNNING.moved(held, global_slot(name));
    }
}

/// Stops counting a span that held `slot` and has just given it up (the holder now reads [`NO_SLOT`]):
/// exactly once per span, by whoever took the slot out.
#[inline]
pub(crate) fn ended_slot(slot: u32) {
    if slot != NO_SLOT {
        count_here(slot, -1);
    }
}

/// Stops counting the span that holds `slot`; later calls do nothing.
#[cfg(test)]
pub(crate) fn ended(slot: &AtomicU32) {
    ended_slot(slot.swap(NO_SLOT, Ordering::AcqRel));
}

/// Names to slots, and a counter per slot.
pub(crate) struct Registry {
    shards: [RwLock<HashMap<Box<str>, u32, FixedState>>; SHARDS],
    /// One counter per name slot, then the overflow counter at index `capacity`. Signed, so that a bug
    /// would show as a missing name rather than as a count near 2^64. Threads count in tables of their own
    /// ([`ThreadCounts`]); this one has renames, the counts of threads that exited, and tests' counts.
    counts: Box<[AtomicI64]>,
    /// The tables of live threads, summed with `counts` by the reader.
    threads: Mutex<Vec<Arc<[AtomicI64]>>>,
    /// Slots handed out so far; never above `capacity`.
    assigned: AtomicU32,
    capacity: u32,
}

impl Registry {
    /// A registry counting up to `capacity` names separately.
    pub(crate) fn new(capacity: usize) -> Registry {
        // Bounded well below NO_SLOT, which marks "no slot".
        let capacity = u32::try_from(capacity).unwrap_or(NO_SLOT - 1).min(NO_SLOT - 1);
        Registry {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::with_hasher(FixedState::default()))),
            counts: (0..=capacity).map(|_| AtomicI64::new(0)).collect(),
            threads: Mutex::new(Vec::new()),
            assigned: AtomicU32::new(0),
            capacity,
        }
    }

    fn shard(&self, name: &str) -> &RwLock<HashMap<Box<str>, u32, FixedState>> {
        // A different seed than the maps' own, so the shard does not pick the same hash bits they do.
        let hash = FixedState::with_seed(0x7275_6e6e_696e_6721).hash_one(name);
        &self.shards[(hash >> 59) as usize % SHARDS]
    }

    /// The slot of `name`, assigning one on first sight while there are free slots.
    fn slot(&self, name: &str) -> u32 {
        let shard = self.shard(name);
        // A poisoned lock only means a panic elsewhere mid-insert; the map itself is still consistent.
        if let Some(&slot) = shard.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return slot;
        }
        // Once full, unknown names go to the overflow slot without taking the write lock.
        if self.assigned.load(Ordering::Relaxed) >= self.capacity {
            return self.capacity;
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&slot) = map.get(name) {
            return slot;
        }
        let capacity = self.capacity;
        match self
            .assigned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < capacity).then_some(n + 1))
        {
            Ok(slot) => {
                map.insert(name.into(), slot);
                slot
            }
            Err(_) => capacity,
        }
    }

    fn counter(&self, slot: u32) -> &AtomicI64 {
        // Slots come from `slot`, so they index `counts`; NO_SLOT never reaches here.
        &self.counts[slot as usize]
    }

    /// By name, without the static-name cache: for tests of one registry.
    #[cfg(test)]
    pub(crate) fn started(&self, name: &str) -> u32 {
        self.started_in(self.slot(name))
    }

    /// Counts a span in `slot` (from [`Registry::slot`]) in the shared table; returns `slot`.
    #[cfg(test)]
    fn started_in(&self, slot: u32) -> u32 {
        self.counter(slot).fetch_add(1, Ordering::Relaxed);
        slot
    }

    /// By name, without the static-name cache: for tests of one registry.
    #[cfg(test)]
    pub(crate) fn renamed(&self, held: &AtomicU32, name: &str) {
        if held.slot() != NO_SLOT {
            self.moved(held, self.slot(name));
        }
    }

    /// Moves the count of the span holding `held` to slot `new`, unless it has ended. Renames of one span
    /// must not run at once (the span's record lock orders them); an end may race with it.
    fn moved(&self, held: &impl SlotHolder, new: u32) {
        let old = held.slot();
        if old == NO_SLOT || new == old {
            return;
        }
        // Counted under the new name before the span holds it, so that an end racing with the exchange
        // below never decrements a count it was not added to.
        self.counter(new).fetch_add(1, Ordering::Relaxed);
        if held.exchange(old, new) {
            self.counter(old).fetch_sub(1, Ordering::Relaxed);
        } else {
            // The span ended meanwhile and its end took `old`: take back the count just added.
            self.counter(new).fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stops counting the span holding `held`, in the shared table; later calls do nothing.
    #[cfg(test)]
    pub(crate) fn ended(&self, held: &AtomicU32) {
        let slot = held.swap(NO_SLOT, Ordering::AcqRel);
        if slot != NO_SLOT {
            self.counter(slot).fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn counts(&self) -> Vec<(String, u64)> {
        // Both tables read under the lock an exiting thread adds its counts under: seen once, not 0 or 2 times.
        let threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut totals: Vec<i64> = self.counts.iter().map(|count| count.load(Ordering::Relaxed)).collect();
        for counts in threads.iter() {
            for (total, count) in totals.iter_mut().zip(counts.iter()) {
                *total += count.load(Ordering::Relaxed);
            }
        }
        drop(threads);
        let positive = |slot: u32| u64::try_from(totals[slot as usize]).ok().filter(|&n| n > 0);
        let mut out = Vec::new();
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            out.extend(map.iter().filter_map(|(name, &slot)| Some((name.to_string(), positive(slot)?))));
        }
        if let Some(count) = positive(self.capacity) {
            out.push((OTHER_SPAN_NAMES.to_owned(), count));
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{Pin, pin};
    use std::task::{Context, Waker};

    use super::*;
    use crate::trace::{FutureExt, Instrumented, Parent, Sampler, Span, SpanBuilder};

    fn count(registry: &Registry, name: &str) -> u64 {
        registry.counts().into_iter().find(|(n, _)| n == name).map_or(0, |(_, c)| c)
    }

    /// A panic while one of the registry's locks is held (a bug, an allocation failure) leaves the maps
    /// consistent: later spans take the locks through the poison and the counts stay exact.
    #[test]
    fn poisoned_locks_keep_the_counts_exact() {
        let registry = Registry::new(10);
        let first = AtomicU32::new(registry.started("known"));
        std::thread::scope(|scope| {
            let poisoner = scope.spawn(|| {
                let _threads = registry.threads.lock().unwrap();
                let _shards: Vec<_> = registry.shards.iter().map(|shard| shard.write().unwrap()).collect();
                panic!("a bug while holding the running-span locks");
            });
            assert!(poisoner.join().is_err());
        });
        assert!(registry.threads.is_poisoned() && registry.shards.iter().all(RwLock::is_poisoned));

        let second = AtomicU32::new(registry.started("known"));
        let new = AtomicU32::new(registry.started("new"));
        let elsewhere = std::thread::scope(|scope| scope.spawn(|| registry.started("new")).join().unwrap());
        assert_eq!((count(&registry, "known"), count(&registry, "new")), (2, 2));
        for slot in [first, second, new, AtomicU32::new(elsewhere)] {
            registry.ended(&slot);
        }
        assert_eq!(registry.counts(), vec![]);
    }

    #[test]
    fn start_and_end_count_once() {
        let registry = Registry::new(10);
        let a = AtomicU32::new(registry.started("a"));
        let b = AtomicU32::new(registry.started("a"));
        assert_eq!(registry.counts(), vec![("a".to_owned(), 2)]);
        registry.ended(&a);
        registry.ended(&a);
        assert_eq!(count(&registry, "a"), 1, "a second end of the same span changes nothing");
        registry.ended(&b);
        assert_eq!(registry.counts(), vec![], "names with no running span are left out");
    }

    #[test]
    fn a_rename_moves_the_count_and_an_ended_span_is_not_renamed() {
        let registry = Registry::new(10);
        let slot = AtomicU32::new(registry.started("before"));
        registry.renamed(&slot, "after");
        assert_eq!(registry.counts(), vec![("after".to_owned(), 1)]);
        registry.renamed(&slot, "after");
        assert_eq!(registry.counts(), vec![("after".to_owned(), 1)], "renaming to the same name");
        registry.ended(&slot);
        registry.renamed(&slot, "late");
        assert_eq!(registry.counts(), vec![]);
    }

    #[test]
    fn names_beyond_the_bound_count_together() {
        let registry = Registry::new(2);
        let slots: Vec<AtomicU32> =
            ["a", "b", "c", "d", "a"].iter().map(|name| AtomicU32::new(registry.started(name))).collect();
        assert_eq!(
            registry.counts(),
            vec![(OTHER_SPAN_NAMES.to_owned(), 2), ("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
        // A rename into an unknown name once full goes to the overflow entry too.
        registry.renamed(&slots[1], "e");
        assert_eq!(count(&registry, OTHER_SPAN_NAMES), 3);
        assert_eq!(count(&registry, "b"), 0);
        for slot in &slots {
            registry.ended(slot);
        }
        assert_eq!(registry.counts(), vec![]);
        assert_eq!(registry.assigned.load(Ordering::Relaxed), 2, "no slot beyond the bound was handed out");
    }

    /// The process-wide count of `name`; each test below uses names of its own.
    fn running(name: &str) -> u64 {
        running_spans().into_iter().find(|(n, _)| n == name).map_or(0, |(_, c)| c)
    }

    fn sampled(name: &'static str) -> Span {
        SpanBuilder::new(name).parent(Parent::Root).sampler(Sampler::AlwaysOn).start()
    }

    #[test]
    fn a_sampled_span_counts_from_start_to_end() {
        let span = sampled("running-end");
        let clone = span.clone();
        assert_eq!(running("running-end"), 1);
        clone.end();
        span.end();
        assert_eq!(running("running-end"), 0);
        drop(span);
        drop(clone);
        assert_eq!(running("running-end"), 0, "dropping an ended span does not count it again");
    }

    #[test]
    fn unsampled_spans_are_not_counted() {
        let span =
            SpanBuilder::new("running-unsampled").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
        assert!(!running_spans().iter().any(|(name, _)| name == "running-unsampled"));
        span.end();
    }

    #[test]
    fn dropping_the_last_handle_ends_the_count() {
        let span = sampled("running-drop");
        let clone = span.clone();
        drop(span);
        assert_eq!(running("running-drop"), 1, "a handle is left");
        drop(clone);
        assert_eq!(running("running-drop"), 0);
    }

    #[test]
    fn a_panic_ends_the_count_as_the_handle_unwinds() {
        let result = std::panic::catch_unwind(|| {
            let _span = sampled("running-panic");
            assert_eq!(running("running-panic"), 1);
            panic!("the handler failed");
        });
        assert!(result.is_err());
        assert_eq!(running("running-panic"), 0);
    }

    #[test]
    fn an_instrumented_future_ends_the_count_when_it_completes_or_is_cancelled() {
        let poll_once = |future: Pin<&mut Instrumented<std::future::Pending<()>>>| {
            future.poll(&mut Context::from_waker(Waker::noop()))
        };
        let mut cancelled = Box::pin(std::future::pending::<()>().instrument(sampled("running-cancelled")));
        assert!(poll_once(cancelled.as_mut()).is_pending());
        assert_eq!(running("running-cancelled"), 1);
        drop(cancelled);
        assert_eq!(running("running-cancelled"), 0);

        let mut done = pin!(std::future::ready(()).instrument(sampled("running-done")));
        assert_eq!(running("running-done"), 1);
        assert!(done.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready());
        assert_eq!(running("running-done"), 0);
    }

    #[test]
    fn update_name_moves_the_count() {
        let span = sampled("running-rename-from");
        span.update_name("running-rename-to");
        assert_eq!(running("running-rename-from"), 0);
        assert_eq!(running("running-rename-to"), 1);
        span.end();
        span.update_name("running-rename-late");
        assert_eq!(running("running-rename-to"), 0);
        assert_eq!(running("running-rename-late"), 0, "an ended span is not renamed");
    }

    #[test]
    fn renames_racing_ends_on_other_threads_leave_no_count() {
        // The end takes the slot out of the same word a rename moves it in: whichever wins, the span is
        // counted once and uncounted once, under one of the two names.
        for _ in 0..200 {
            let span = sampled("running-race-from");
            let renamer = span.clone();
            let rename = std::thread::spawn(move || renamer.update_name("running-race-to"));
            let ender = span.clone();
            let end = std::thread::spawn(move || ender.end());
            rename.join().expect("rename thread panicked");
            end.join().expect("end thread panicked");
            assert!(span.is_ended_for_test());
        }
        assert_eq!(running("running-race-from"), 0);
        assert_eq!(running("running-race-to"), 0);
    }

    #[test]
    fn static_names_count_by_text_whatever_their_address() {
        // Two static strings with the same text at different addresses, and an owned one: one name.
        let first: &'static str = Box::leak("running-cached".to_owned().into_boxed_str());
        let second: &'static str = Box::leak("running-cached".to_owned().into_boxed_str());
        assert_ne!(first.as_ptr(), second.as_ptr());
        let slots: Vec<AtomicU32> = [Cow::Borrowed(first), Cow::Borrowed(second), Cow::Borrowed(first)]
            .iter()
            .chain([Cow::Owned("running-cached".to_owned())].iter())
            .map(|name| AtomicU32::new(started(name)))
            .collect();
        assert_eq!(running("running-cached"), 4);
        // A rename through the cache moves the count like one through the map.
        renamed(&slots[0], &Cow::Borrowed("running-cached-renamed"));
        assert_eq!(running("running-cached"), 3);
        assert_eq!(running("running-cached-renamed"), 1);
        for slot in &slots {
            ended(slot);
        }
        assert_eq!(running("running-cached"), 0);
        assert_eq!(running("running-cached-renamed"), 0);
    }

    #[test]
    fn spans_counted_on_threads_that_exited_or_ended_on_others_balance() {
        // Started on threads that exit while the spans run: their tables are added into the shared one.
        let mut spans: Vec<Span> = (0..4)
            .map(|_| std::thread::spawn(|| sampled("running-threads")).join().expect("the thread runs"))
            .collect();
        assert_eq!(running("running-threads"), 4);
        // Ended here (-1 in this thread's table) and on a thread of their own.
        let elsewhere = spans.split_off(2);
        spans.iter().for_each(Span::end);
        assert_eq!(running("running-threads"), 2);
        std::thread::spawn(move || elsewhere.iter().for_each(Span::end)).join().expect("the thread runs");
        assert_eq!(running("running-threads"), 0);
        drop(spans);
        assert_eq!(running("running-threads"), 0);
    }

    #[test]
    fn concurrent_starts_and_ends_balance() {
        let registry = Registry::new(4);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let registry = &registry;
                scope.spawn(move || {
                    for i in 0..1000 {
                        let slot = AtomicU32::new(registry.started(["x", "y", "z"][(t + i) % 3]));
                        if i % 2 == 0 {
                            registry.renamed(&slot, "w");
                        }
                        registry.ended(&slot);
                    }
                });
            }
        });
        assert_eq!(registry.counts(), vec![]);
    }
}
