//! The span pipeline: from a span's end to the exporters.
//!
//! Each thread that ends sampled spans moves each one's recording into a bounded ring of its own
//! ([`ring`](super::ring): one producer, plain stores, no read-modify-write); that is all the request path
//! does. A full ring drops its oldest span and counts it ([`dropped_spans`]); if the batcher is reading
//! that very span at the moment (and does not finish within a few spins), the span being ended is dropped
//! and counted instead, so that the request thread never waits for the batcher. The rings are registered with
//! the installed [`SpanSink`]; the batcher, on the pipeline's background thread, walks them and pops spans
//! in batches (by size, or when the batch timeout passes), turns them into [`SpanData`](super::SpanData)
//! and hands each batch to every exporter. It also logs drops, at most once per [`DROP_LOG_INTERVAL`].
//!
//! A ring outlives its thread: the sink keeps it until the batcher has emptied it, so spans ended on a
//! thread that exited are still delivered (by the next batch, the batch timeout, `flush` or `shutdown`).
//!
//! The size trigger is counted per thread: a thread wakes the batcher once it has pushed a batch's worth
//! of spans since its last wake (or when its ring is full), so a push never reads what the batcher's core
//! writes. With several threads the rings may hold up to a batch per thread before the batcher wakes; the
//! batch timeout bounds how long any span waits.
//!
//! Waking a parked thread is a system call that costs the waking thread 4 to 5 µs of CPU on this project's
//! 2-core VM (a `notify_one` to a parked current-thread runtime), as much as 50 spans. So once woken, the
//! batcher polls: it looks at the rings every [`POLL_INTERVAL`] for as long as each look finds a batch's
//! worth, and meanwhile a thread's batch does not wake it; only a ring half full (or full) still does, so
//! that a burst between two looks is not dropped. Under sustained load the request threads make no system
//! call at all; below a batch per interval, the first look that finds less stops the polling, and the
//! threads' batches wake the batcher again.
//!
//! The bound is per thread ([`DEFAULT_QUEUE_CAPACITY`] spans each, the builder's `span_queue_capacity`):
//! a thread's ring holds its own spans, so a burst on one thread drops that thread's oldest spans, never
//! another's. Slots are allocated on a thread's first sampled span.
//!
//! Only one sink is installed at a time (one pipeline per process); with none, ended spans are discarded
//! (their recording is not even moved out).

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use tokio::sync::Notify;

use super::SpanData;
use super::ring::{self, Producer, Pushed, Ring};
use super::span::{Finished, take_finished};
use crate::clock::{self, WallClock};
use crate::export::{Exporter, SpanBatch};
use crate::stats::health;

/// How often a polling batcher looks at the rings (see the module docs). A thread's ring of 1,024 spans fills
/// in this time at 100 K spans a second; it wakes the batcher half full, long before.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The exporter tag of drops made by the span queue (not by one exporter) in the health views.
const PIPELINE: &str = "pipeline";

/// Finished spans each thread's ring holds by default before dropping its oldest (a slot is 640 bytes, so
/// 640 KiB per thread that ends sampled spans, allocated on its first one; 40 MiB for 64 such threads).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Spans per exported batch by default.
pub const DEFAULT_BATCH_SIZE: usize = 300;
/// How long a span waits in the queue at most, by default, before its batch goes out anyway.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Drops are logged at most this often.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The installed sink; `None` before `init` and after shutdown. Read on the request path only when
/// [`GENERATION`] says a thread's copy is stale.
static SINK: Mutex<Option<Arc<SpanSink>>> = Mutex::new(None);

/// Bumped by every install and uninstall, under [`SINK`]'s lock: a thread whose copy of the sink has
/// another generation takes a new copy.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of [`SINK`], the generation it was taken at, and this thread's ring in it: a
    /// span's end then reaches its ring with one shared load and no reference-count traffic. An idle
    /// thread's copy keeps an uninstalled sink's memory until the thread ends a span or exits; the batcher
    /// has delivered everything in it by then.
    static CACHED_SINK: RefCell<CachedSink> =
        const { RefCell::new(CachedSink { generation: 0, sink: None, producer: None, pushed: 0 }) };
}

/// A thread's view of the installed sink.
struct CachedSink {
    generation: u64,
    sink: Option<Arc<SpanSink>>,
    /// This thread's ring in `sink`, made on its first span.
    producer: Option<Producer<Finished>>,
    /// Spans this thread pushed since it last woke the batcher (or took this copy).
    pushed: usize,
}

/// Spans dropped because a ring was full, since the process started. On cache lines of its own: it is
/// written on every drop, under overload, and the statics the linker would place beside it (the sampler,
/// the layer switches, the stats registry's generation) are read by every request on every core.
static DROPPED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// How many finished spans were dropped because the span queue was full (the exporters could not keep
/// up), since the process started. Also exported as the `oclayer.io/export/dropped_spans` view, tagged
/// `exporter = "pipeline"`.
pub fn dropped_spans() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Hands an ended sampled span to the installed pipeline, if any: `write` moves the span's recording into
/// the slot it is given (uninitialised; it must initialise it completely and must not panic). With no
/// pipeline, `write` is not called.
#[inline]
pub(crate) fn submit(write: impl FnOnce(*mut Finished)) {
    let generation = GENERATION.load(Ordering::Acquire);
    let mut write = Some(write);
    let handled = CACHED_SINK
        .try_with(|cached| {
            // Busy only if a push re-entered here (it does not: writing a slot and dropping the oldest entry
            // end no span); the slow path below then serves it rather than a panic.
            let Ok(mut cached) = cached.try_borrow_mut() else { return false };
            if cached.generation != generation {
                *cached = CachedSink { generation, sink: installed(), producer: None, pushed: 0 };
            }
            let cached = &mut *cached;
            if let Some(sink) = &cached.sink
                && let Some(write) = write.take()
            {
                let producer = cached.producer.get_or_insert_with(|| sink.new_producer());
                sink.push(producer, write, &mut cached.pushed);
            }
            true
        })
        .unwrap_or(false);
    // The thread's locals are being torn down: push into the sink's shared ring (nor a count: this span
    // waits for a wake by another thread, a full ring, or the batch timeout).
    if !handled
        && let Some(write) = write.take()
        && let Some(sink) = installed()
    {
        sink.push_shared(write);
    }
}

/// The installed sink, if any.
fn installed() -> Option<Arc<SpanSink>> {
    SINK.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Replaces the installed sink and tells every thread's copy it is stale.
fn replace_sink(sink: Option<Arc<SpanSink>>) {
    let mut installed = SINK.lock().unwrap_or_else(PoisonError::into_inner);
    *installed = sink;
    // Under the lock: a thread that sees the new generation then reads this sink, not the one before.
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Makes `sink` receive ended spans.
pub(crate) fn install(sink: Arc<SpanSink>) {
    // Calibrating the clock takes a few milliseconds once: here, at `init`, not on the first request.
    clock::calibrate();
    replace_sink(Some(sink));
}

/// Stops queueing ended spans; they are discarded until the next `install`.
pub(crate) fn uninstall() {
    replace_sink(None);
}

/// The rings between ended spans and the batcher.
pub(crate) struct SpanSink {
    /// Every thread's ring, kept until emptied after its thread let go of it.
    rings: Mutex<Vec<Arc<Ring<Finished>>>>,
    /// A ring for threads whose own is gone (spans ended while the thread's locals are torn down), made
    /// on first use; pushes into it take the lock.
    shared: Mutex<Option<Producer<Finished>>>,
    /// Spans per thread's ring.
    ring_capacity: usize,
    batch_size: usize,
    /// Wakes the batcher when a full batch is waiting.
    full_batch: Notify,
    /// Set by the producer that woke the batcher, cleared by the batcher: one wake-up per batch, not one
    /// per span.
    wake_pending: AtomicBool,
    /// Set while the batcher polls (module docs): a thread's batch then needs no wake.
    polling: AtomicBool,
    /// Which ring the next batch starts from, so that a busy thread does not keep the others' spans waiting.
    rotation: AtomicUsize,
}

impl SpanSink {
    /// Rings of `capacity` spans per thread (1 to 2^20, rounded up to a power of two) and a batcher woken
    /// every `batch_size` spans a thread ends. With a batch size above a ring's capacity, batches go out by
    /// age only.
    pub(crate) fn new(capacity: usize, batch_size: usize) -> SpanSink {
        SpanSink {
            rings: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
            // As `Ring::with_capacity` sizes it.
            ring_capacity: capacity.clamp(1, ring::MAX_CAPACITY).next_power_of_two(),
            batch_size: batch_size.max(1),
            full_batch: Notify::new(),
            wake_pending: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            rotation: AtomicUsize::new(0),
        }
    }

    fn rings(&self) -> MutexGuard<'_, Vec<Arc<Ring<Finished>>>> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new ring, registered with the batcher. Out of line: once per thread.
    #[cold]
    fn new_producer(&self) -> Producer<Finished> {
        let (ring, producer) = Ring::with_capacity(self.ring_capacity);
        self.rings().push(ring);
        producer
    }

    /// Queues the span `write` writes into `producer`'s ring, dropping the ring's oldest if it is full.
    /// `pushed` is the calling thread's count of spans since it last woke the batcher (see the module docs).
    #[inline]
    fn push(&self, producer: &mut Producer<Finished>, write: impl FnOnce(*mut Finished), pushed: &mut usize) {
        *pushed += 1;
        let full = producer.push_with(write) != Pushed::Queued;
        if full {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        if full || *pushed >= self.batch_size {
            *pushed = 0;
            self.wake(producer, full);
        }
    }

    /// [`push`](Self::push) into the shared ring, for a thread without its own.
    #[cold]
    fn push_shared(&self, write: impl FnOnce(*mut Finished)) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let producer = shared.get_or_insert_with(|| self.new_producer());
        self.push(producer, write, &mut 0);
    }

    /// Wakes the batcher for `producer`'s batch (or its full ring: `full`), unless a wake is already
    /// pending, or the batcher is polling and will look before the ring fills.
    #[cold]
    fn wake(&self, producer: &Producer<Finished>, full: bool) {
        // With a batch larger than a ring, batches go by age only: a full ring must not wake the batcher
        // for every span.
        if self.ring_capacity < self.batch_size {
            return;
        }
        if !full {
            // Pairs with the fence in `Batcher::look`: either the batcher, stopping, counts this
            // thread's spans, or this thread sees that it stopped.
            fence(Ordering::SeqCst);
            if self.polling.load(Ordering::Relaxed) && producer.len() < self.ring_capacity / 2 {
                return;
            }
        }
        if !self.wake_pending.load(Ordering::Relaxed) && !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.full_batch.notify_one();
        }
    }

    /// How many spans the rings hold, as of a moment ago.
    fn len(&self) -> usize {
        self.rings().iter().map(|ring| ring.len()).sum()
    }

    /// How many spans each ring holds now, the rings that hold none left out. Also forgets the rings that
    /// are empty and whose thread let go of them.
    fn snapshot(&self) -> Vec<(Arc<Ring<Finished>>, usize)> {
        let mut rings = self.rings();
        rings.retain(|ring| Arc::strong_count(ring) > 1 || !ring.is_empty());
        rings.iter().map(|ring| (Arc::clone(ring), ring.len())).filter(|(_, queued)| *queued > 0).collect()
    }

    /// Up to `max` queued spans, as exporters receive them: each thread's in the order they ended. A busy
    /// thread's ring is not drained first every time (a batch starts at another ring each time).
    fn pop(&self, max: usize) -> SpanBatch {
        let mut quotas = self.snapshot();
        if !quotas.is_empty() {
            let start = self.rotation.fetch_add(1, Ordering::Relaxed) % quotas.len();
            quotas.rotate_left(start);
        }
        pop_quotas(&mut quotas, max)
    }
}

/// Up to `max` spans from the rings of `quotas`, each ring's count there lowered by what is taken from it:
/// no more than it held when the counts were taken, so that spans ended since (on busy threads) never take
/// the place of spans queued before on others (a flush must deliver what was queued when it was asked).
fn pop_quotas(quotas: &mut [(Arc<Ring<Finished>>, usize)], max: usize) -> SpanBatch {
    // Spans leave a ring only through a consumer (a full ring's producer drops one for each it adds), and the
    // batcher is the only consumer: each ring holds at least its count.
    let available = quotas.iter().map(|(_, queued)| *queued).sum::<usize>().min(max);
    if available == 0 {
        return SpanBatch::from([]);
    }
    // One reading of the wall clock places every span of the batch (see `span`'s module docs).
    let clock = WallClock::now();
    // Written straight into the batch: collecting into a `Vec` and converting copied every `SpanData` a
    // second time.
    let mut batch = Arc::<[SpanData]>::new_uninit_slice(available);
    let slots = Arc::get_mut(&mut batch).unwrap_or_else(|| unreachable!("a new Arc has no other handle"));
    let mut filled = 0;
    for (ring, queued) in quotas.iter_mut() {
        while *queued > 0 && filled < available {
            // SAFETY: `pop_with` hands over an initialised entry this thread alone reads; `take_finished`
            // moves it out, as `pop_with` requires, and does not panic.
            let Some(span) = ring.pop_with(|slot| unsafe { take_finished(slot, &clock) }) else {
                // Not expected (see above): nothing more to take from this ring.
                *queued = 0;
                break;
            };
            slots[filled].write(span);
            filled += 1;
            *queued -= 1;
        }
        if filled == available {
            break;
        }
    }
    if filled < available {
        // Not expected (see above); without the guarantee, the spans popped are still delivered.
        let popped: Vec<SpanData> =
            // SAFETY: the first `filled` were written above; each is read once, and the `Arc` of
            // `MaybeUninit` does not drop them again.
            slots[..filled].iter().map(|span| unsafe { span.assume_init_read() }).collect();
        return popped.into();
    }
    // SAFETY: all `available` entries were written above.
    unsafe { batch.assume_init() }
}

/// What woke the batcher.
pub(crate) enum Due {
    /// At least one full batch is queued.
    FullBatch,
    /// The batch timeout passed: send whatever is queued.
    Age,
    /// Time for a polling batcher's next look (module docs).
    Poll,
}

/// Sends queued spans to the exporters; runs on the pipeline's background runtime.
pub(crate) struct Batcher {
    sink: Arc<SpanSink>,
    exporters: Arc<[Arc<dyn Exporter>]>,
    ticker: tokio::time::Interval,
    /// `dropped_spans()` when drops were last logged (or when the pipeline started).
    drops_logged: u64,
    last_drop_log: Option<Instant>,
    /// `dropped_spans()` when drops were last added to the `oclayer.io/export/dropped_spans` view.
    drops_recorded: u64,
    /// When to look at the rings next, while polling (module docs).
    next_poll: Option<tokio::time::Instant>,
}

impl Batcher {
    /// Must be called inside the background runtime (the ticker needs its timer). `dropped_before` is
    /// [`dropped_spans`] before `sink` was installed: drops from then on are this pipeline's to report.
    pub(crate) fn new(
        sink: Arc<SpanSink>,
        exporters: Arc<[Arc<dyn Exporter>]>,
        batch_timeout: Duration,
        dropped_before: u64,
    ) -> Batcher {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + batch_timeout,
            batch_timeout.max(Duration::from_millis(1)),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Batcher {
            sink,
            exporters,
            ticker,
            drops_logged: dropped_before,
            last_drop_log: None,
            drops_recorded: dropped_before,
            next_poll: None,
        }
    }

    /// Resolves when there is something to send. Cancel-safe: a lost wake-up is caught by the next tick.
    pub(crate) async fn due(&mut self) -> Due {
        let next_poll = self.next_poll;
        tokio::select! {
            _ = self.sink.full_batch.notified() => Due::FullBatch,
            _ = self.ticker.tick() => Due::Age,
            () = tokio::time::sleep_until(next_poll.unwrap_or_else(tokio::time::Instant::now)),
                if next_poll.is_some() => Due::Poll,
        }
    }

    /// Sends what `due` found.
    pub(crate) fn send_due(&mut self, due: Due) {
        match due {
            Due::FullBatch | Due::Poll => {
                // Cleared before popping: a producer pushing meanwhile wakes us again rather than being lost.
                self.sink.wake_pending.store(false, Ordering::Release);
                let queued = match due {
                    Due::Poll => match self.look() {
                        Some(queued) => queued,
                        None => return,
                    },
                    _ => self.sink.len(),
                };
                // Woken, or a look found a batch: look again soon instead of having threads wake us.
                self.sink.polling.store(true, Ordering::Relaxed);
                self.next_poll = Some(tokio::time::Instant::now() + POLL_INTERVAL);
                // The full batches queued now, not those that fill meanwhile: threads ending spans faster
                // than the exporters take them would otherwise keep this round going forever, and with it
                // the thread it shares with flush requests, the exporters' tasks and the stats reports.
                for _ in 0..queued / self.sink.batch_size {
                    self.send(self.sink.pop(self.sink.batch_size));
                }
            }
            Due::Age => {
                self.send_all();
                self.log_drops();
            }
        }
    }

    /// A polling batcher's look at the rings: how many spans they hold, if at least a batch; if not, stops
    /// polling, so that the threads' batches wake the batcher again.
    fn look(&mut self) -> Option<usize> {
        let queued = self.sink.len();
        if queued >= self.sink.batch_size {
            return Some(queued);
        }
        self.sink.polling.store(false, Ordering::Relaxed);
        // Pairs with the fence in `SpanSink::wake`: a thread that saw the batcher still polling and did not
        // wake it pushed its spans before this fence, so the second look counts them.
        fence(Ordering::SeqCst);
        let queued = self.sink.len();
        if queued >= self.sink.batch_size {
            return Some(queued);
        }
        self.next_poll = None;
        None
    }

    /// Sends everything queued now, in batches. Spans queued while this runs wait for the next round, so
    /// a busy producer cannot keep it going forever.
    pub(crate) fn send_all(&mut self) {
        self.record_drops();
        self.sink.wake_pending.store(false, Ordering::Release);
        // What each ring holds now: spans ended meanwhile wait for the next round, so that a busy producer
        // cannot keep this going forever, nor push out of this round the spans queued before it.
        let mut quotas = self.sink.snapshot();
        loop {
            let batch = pop_quotas(&mut quotas, self.sink.batch_size);
            if batch.is_empty() {
                break;
            }
            self.send(batch);
        }
    }

    fn send(&self, batch: SpanBatch) {
        if batch.is_empty() {
            return;
        }
        for exporter in self.exporters.iter() {
            // An exporter bug must not take the pipeline (and every other exporter) down with it.
            if catch_unwind(AssertUnwindSafe(|| exporter.export_spans(&batch))).is_err() {
                tracing::error!(
                    exporter = exporter.name(),
                    spans = batch.len(),
                    "span exporter panicked; it lost this batch"
                );
            }
        }
    }

    /// Adds the drops since last time to the health view: here rather than where they happen, so a full
    /// queue costs the request path one atomic add, not a stats record. Runs before every full drain, so
    /// the last stats report at shutdown includes them.
    fn record_drops(&mut self) {
        let total = dropped_spans();
        if total > self.drops_recorded {
            health::record_dropped_spans(PIPELINE, total - self.drops_recorded);
            self.drops_recorded = total;
        }
    }

    fn log_drops(&mut self) {
        let total = dropped_spans();
        let due = self.last_drop_log.is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL);
        if total > self.drops_logged && due {
            tracing::warn!(
                dropped = total - self.drops_logged,
                total,
                "span queue full: dropped the oldest finished spans; the exporters cannot keep up (raise the \
                 queue capacity, lower sample_rate, or check the exporter's connection)"
            );
            self.drops_logged = total;
            self.last_drop_log = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::memory::InMemoryExporter;
    use crate::trace::span::finished_for_test;

    fn wake_pending(sink: &SpanSink) -> bool {
        sink.wake_pending.swap(false, Ordering::AcqRel)
    }

    fn push(sink: &SpanSink, producer: &mut Producer<Finished>, name: &'static str, pushed: &mut usize) {
        sink.push(producer, |slot| finished_for_test(name, slot), pushed);
    }

    fn names(batch: &SpanBatch) -> Vec<&str> {
        batch.iter().map(|span| span.name.as_ref()).collect()
    }

    /// Held by the tests that count their drops in the process-wide [`dropped_spans`], so that under
    /// `cargo test` (one process, tests on parallel threads) neither counts the other's.
    static COUNTING_DROPS: Mutex<()> = Mutex::new(());

    fn counting_drops() -> MutexGuard<'static, ()> {
        COUNTING_DROPS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[test]
    fn a_thread_wakes_the_batcher_after_a_batch_of_its_own_or_at_a_full_ring() {
        let sink = SpanSink::new(4, 3);
        let (mut first, mut second) = (sink.new_producer(), sink.new_producer());
        let (mut first_count, mut second_count) = (0, 0);
        push(&sink, &mut first, "wake-1", &mut first_count);
        push(&sink, &mut second, "wake-2", &mut second_count);
        push(&sink, &mut first, "wake-3", &mut first_count);
        assert!(!wake_pending(&sink), "3 queued, but neither thread pushed a batch's worth");
        push(&sink, &mut first, "wake-4", &mut first_count);
        assert!(wake_pending(&sink), "the first thread's third span");
        assert_eq!(first_count, 0, "its count starts again");
        push(&sink, &mut first, "wake-5", &mut first_count);
        assert!(!wake_pending(&sink), "4 in the first ring: full, nothing dropped yet");
        let _counting = counting_drops();
        let dropped = dropped_spans();
        push(&sink, &mut first, "wake-6", &mut first_count);
        assert!(wake_pending(&sink), "a full ring wakes whatever the counts");
        assert_eq!(dropped_spans() - dropped, 1);
        let batch = sink.pop(10);
        let mut popped = names(&batch);
        popped.sort_unstable();
        assert_eq!(popped, ["wake-2", "wake-3", "wake-4", "wake-5", "wake-6"], "wake-1 was the oldest");

        // With batches by age only (a batch larger than a ring), nothing wakes the batcher.
        let by_age = SpanSink::new(2, 3);
        let mut producer = by_age.new_producer();
        let mut pushed = 0;
        for name in ["age-1", "age-2", "age-3", "age-4"] {
            push(&by_age, &mut producer, name, &mut pushed);
        }
        assert!(!wake_pending(&by_age));
    }

    #[test]
    fn while_the_batcher_polls_only_a_ring_filling_up_wakes_it() {
        let sink = SpanSink::new(8, 2);
        // It drops a span: not while another test counts its own.
        let _counting = counting_drops();
        sink.polling.store(true, Ordering::Relaxed);
        let mut producer = sink.new_producer();
        let mut pushed = 0;
        push(&sink, &mut producer, "poll-1", &mut pushed);
        push(&sink, &mut producer, "poll-2", &mut pushed);
        assert!(!wake_pending(&sink), "a batch, but the batcher looks on its own");
        assert_eq!(pushed, 0, "the count starts again all the same");
        push(&sink, &mut producer, "poll-3", &mut pushed);
        push(&sink, &mut producer, "poll-4", &mut pushed);
        assert!(wake_pending(&sink), "4 of 8 queued: half full wakes it");
        for name in ["poll-5", "poll-6", "poll-7", "poll-8"] {
            push(&sink, &mut producer, name, &mut pushed);
        }
        wake_pending(&sink);
        // The ninth is the first of a new batch: only the full ring can wake.
        push(&sink, &mut producer, "poll-9", &mut pushed);
        assert!(wake_pending(&sink), "a full ring wakes it whatever the count");
        assert_eq!(names(&sink.pop(1)), ["poll-2"], "poll-1 made room");
    }

    /// The spans `exporter` received, by name.
    fn exported(exporter: &InMemoryExporter) -> Vec<String> {
        exporter.spans().iter().map(|span| span.name.to_string()).collect()
    }

    #[test]
    fn a_woken_batcher_polls_while_each_look_finds_a_batch() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let sink = Arc::new(SpanSink::new(64, 2));
        let exporter = Arc::new(InMemoryExporter::new());
        let exporters: Arc<[Arc<dyn Exporter>]> = Arc::new([Arc::clone(&exporter) as Arc<dyn Exporter>]);
        let mut producer = sink.new_producer();
        let mut pushed = 0;
        runtime.block_on(async {
            // A timeout far beyond the test's: every round below is a wake or a look.
            let mut batcher = Batcher::new(Arc::clone(&sink), exporters, Duration::from_secs(3600), 0);
            let started = tokio::time::Instant::now();
            push(&sink, &mut producer, "woken-1", &mut pushed);
            push(&sink, &mut producer, "woken-2", &mut pushed);
            let due = batcher.due().await;
            assert!(matches!(due, Due::FullBatch), "a thread's batch wakes an idle batcher");
            batcher.send_due(due);
            assert_eq!(exported(&exporter), ["woken-1", "woken-2"]);
            assert!(sink.polling.load(Ordering::Relaxed), "woken, it polls");

            push(&sink, &mut producer, "looked-1", &mut pushed);
            push(&sink, &mut producer, "looked-2", &mut pushed);
            assert!(!wake_pending(&sink), "polling: the batch woke nothing");
            let due = batcher.due().await;
            assert!(matches!(due, Due::Poll), "its next look");
            assert_eq!(started.elapsed(), POLL_INTERVAL);
            batcher.send_due(due);
            assert_eq!(exported(&exporter)[2..], ["looked-1", "looked-2"]);
            assert!(sink.polling.load(Ordering::Relaxed), "the look found a batch: it goes on");

            push(&sink, &mut producer, "alone", &mut pushed);
            let due = batcher.due().await;
            assert!(matches!(due, Due::Poll));
            batcher.send_due(due);
            assert_eq!(exporter.spans().len(), 4, "less than a batch waits, as when not polling");
            assert!(!sink.polling.load(Ordering::Relaxed), "a look that found less stops the polling");
            push(&sink, &mut producer, "wakes-again", &mut pushed);
            let due = batcher.due().await;
            assert!(matches!(due, Due::FullBatch), "the thread's next batch wakes it again");
            assert_eq!(started.elapsed(), 2 * POLL_INTERVAL, "no look in between");
            batcher.send_due(due);
            assert_eq!(exported(&exporter)[4..], ["alone", "wakes-again"]);
        });
    }

    #[test]
    fn each_threads_spans_come_out_in_order_and_a_batch_takes_from_every_ring() {
        let sink = SpanSink::new(8, 100);
        let (mut first, mut second) = (sink.new_producer(), sink.new_producer());
        for name in ["a-1", "a-2", "a-3"] {
            push(&sink, &mut first, name, &mut 0);
        }
        for name in ["b-1", "b-2"] {
            push(&sink, &mut second, name, &mut 0);
        }
        assert_eq!(sink.len(), 5);
        let batch = sink.pop(4);
        assert_eq!(batch.len(), 4, "a batch is cut at its size");
        let rest = sink.pop(10);
        let all: Vec<&str> = names(&batch).into_iter().chain(names(&rest)).collect();
        let of =
            |prefix: &str| all.iter().filter(|name| name.starts_with(prefix)).copied().collect::<Vec<_>>();
        assert_eq!(of("a-"), ["a-1", "a-2", "a-3"]);
        assert_eq!(of("b-"), ["b-1", "b-2"]);
        assert!(sink.pop(10).is_empty());
    }

    #[test]
    fn a_slot_takes_the_640_bytes_the_docs_say() {
        // `DEFAULT_QUEUE_CAPACITY`'s and `span_queue_capacity`'s docs quote it for the memory per thread.
        assert_eq!(Ring::<Finished>::SLOT_SIZE, 640);
    }

    #[test]
    fn a_drain_takes_what_each_ring_held_when_it_started_not_what_came_since() {
        // A flush found one span on a quiet thread and two on a busy one, which ends more meanwhile: those
        // must not take the quiet thread's place in the flush (they did, when the drain counted only a total).
        let sink = SpanSink::new(64, 100);
        let (mut quiet, mut busy) = (sink.new_producer(), sink.new_producer());
        push(&sink, &mut quiet, "quiet", &mut 0);
        for name in ["busy-1", "busy-2"] {
            push(&sink, &mut busy, name, &mut 0);
        }
        let mut quotas = sink.snapshot();
        for _ in 0..5 {
            push(&sink, &mut busy, "busy-later", &mut 0);
        }
        let mut drained = Vec::new();
        loop {
            // Batches of 1, so that every span is a separate pick.
            let batch = pop_quotas(&mut quotas, 1);
            if batch.is_empty() {
                break;
            }
            drained.extend(names(&batch).into_iter().map(str::to_owned));
        }
        drained.sort_unstable();
        assert_eq!(drained, ["busy-1", "busy-2", "quiet"]);
        assert_eq!(sink.len(), 5, "the later ones wait for the next round");
    }

    #[test]
    fn a_ring_outlives_its_thread_until_emptied() {
        let sink = Arc::new(SpanSink::new(8, 100));
        let on_thread = Arc::clone(&sink);
        std::thread::spawn(move || {
            let mut producer = on_thread.new_producer();
            push(&on_thread, &mut producer, "from-an-exited-thread", &mut 0);
        })
        .join()
        .expect("the producing thread");
        assert_eq!(sink.rings().len(), 1, "kept while it holds a span");
        assert_eq!(names(&sink.pop(10)), ["from-an-exited-thread"]);
        assert!(sink.pop(10).is_empty());
        assert!(sink.rings().is_empty(), "forgotten once empty, its producer gone");
    }

    #[test]
    fn the_shared_ring_serves_threads_without_their_own() {
        let sink = SpanSink::new(2, 100);
        let _counting = counting_drops();
        let dropped = dropped_spans();
        for name in ["shared-1", "shared-2", "shared-3"] {
            sink.push_shared(|slot| finished_for_test(name, slot));
        }
        assert_eq!(dropped_spans() - dropped, 1, "bounded like a thread's");
        assert_eq!(names(&sink.pop(10)), ["shared-2", "shared-3"]);
    }

    #[test]
    fn many_threads_flooding_small_rings_lose_nothing_uncounted() {
        // Every span is either delivered or counted as dropped, with the batcher popping meanwhile. Other
        // tests may drop spans concurrently (the count is process-wide), so each thread counts its own
        // drops from what its pushes reported, and the total is checked against the process-wide count's
        // growth as a lower bound.
        const THREADS: usize = 8;
        const SPANS: usize = 2_000;
        let sink = Arc::new(SpanSink::new(16, 1_000_000));
        let dropped_before = dropped_spans();
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (sink, stop) = (Arc::clone(&sink), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut delivered = 0;
                while !stop.load(Ordering::Acquire) {
                    delivered += sink.pop(64).len();
                }
                delivered + sink.pop(usize::MAX).len()
            })
        };
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    let mut producer = sink.new_producer();
                    let mut dropped = 0;
                    for _ in 0..SPANS {
                        let pushed = producer.push_with(|slot| finished_for_test("flood", slot));
                        dropped += usize::from(pushed != Pushed::Queued);
                    }
                    dropped
                })
            })
            .collect();
        let dropped: usize = threads.into_iter().map(|t| t.join().expect("a producer")).sum();
        stop.store(true, Ordering::Release);
        let delivered = consumer.join().expect("the consumer");
        assert_eq!(delivered + dropped, THREADS * SPANS);
        // `push_with` alone does not count into `dropped_spans` (`SpanSink::push` does): unchanged by us.
        assert!(dropped_spans() >= dropped_before);
    }
}
