//! The span pipeline: from a span's end to the exporters.
//!
//! Ending a sampled span pushes it onto a bounded lock-free queue ([`SpanSink`]); that is all the request
//! path does. A full queue drops its oldest span and counts it ([`dropped_spans`]). The batcher, on the
//! pipeline's background thread, pops spans in batches (by size, or when the oldest has waited the batch
//! timeout), turns them into [`SpanData`](super::SpanData) and hands each batch to every exporter. It also
//! logs drops, at most once per [`DROP_LOG_INTERVAL`].
//!
//! The size trigger is counted per thread: a thread wakes the batcher once it has pushed a batch's worth
//! of spans since its last wake (or when it finds the queue full), so a push never reads the queue's
//! length, whose head the batcher's core keeps writing (that read cost as much as the rest of the
//! hand-off). With several threads a queue may hold up to a batch per thread before the batcher wakes;
//! the batch timeout bounds how long any span waits.
//!
//! Only one sink is installed at a time (one pipeline per process); with none, ended spans are discarded.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use super::span::{self, SpanInner};
use crate::clock::{self, WallClock};
use crate::export::{Exporter, SpanBatch};
use crate::stats::health;

/// The exporter tag of drops made by the span queue (not by one exporter) in the health views.
const PIPELINE: &str = "pipeline";

/// Spans the queue holds by default before dropping the oldest.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64 * 1024;
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
    /// This thread's copy of [`SINK`] and the generation it was taken at: a span's end then reaches the
    /// queue with one shared load and no reference-count traffic (an `ArcSwap` load cost a third of the
    /// hand-off). An idle thread's copy keeps an uninstalled sink's memory until the thread ends a span
    /// or exits; the batcher has delivered everything in it by then.
    static CACHED_SINK: RefCell<CachedSink> =
        const { RefCell::new(CachedSink { generation: 0, sink: None, pushed: 0 }) };
}

/// A thread's view of the installed sink.
struct CachedSink {
    generation: u64,
    sink: Option<Arc<SpanSink>>,
    /// Spans this thread pushed since it last woke the batcher (or took this copy).
    pushed: usize,
}

/// Spans dropped because the queue was full, since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many finished spans were dropped because the span queue was full (the exporters could not keep
/// up), since the process started. Also exported as the `oclayer.io/export/dropped_spans` view, tagged
/// `exporter = "pipeline"`.
pub fn dropped_spans() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Hands an ended sampled span to the installed pipeline, if any.
#[inline]
pub(crate) fn submit(span: Arc<SpanInner>) {
    let generation = GENERATION.load(Ordering::Acquire);
    let mut span = Some(span);
    let handled = CACHED_SINK
        .try_with(|cached| {
            // Busy only if a push re-entered here (it does not: queued spans have ended, so dropping one
            // submits nothing); the slow path below then serves it rather than a panic.
            let Ok(mut cached) = cached.try_borrow_mut() else { return false };
            if cached.generation != generation {
                *cached = CachedSink { generation, sink: installed(), pushed: 0 };
            }
            let cached = &mut *cached;
            if let Some(sink) = &cached.sink
                && let Some(span) = span.take()
            {
                sink.push(span, &mut cached.pushed);
            }
            true
        })
        .unwrap_or(false);
    // The thread's locals are being torn down: use the installed sink without keeping a copy (nor a count:
    // this span waits for a wake by another thread, a full queue, or the batch timeout).
    if !handled
        && let Some(span) = span.take()
        && let Some(sink) = installed()
    {
        sink.push(span, &mut 0);
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

/// The bounded queue between ended spans and the batcher.
pub(crate) struct SpanSink {
    queue: ArrayQueue<Arc<SpanInner>>,
    batch_size: usize,
    /// Wakes the batcher when a full batch is waiting.
    full_batch: Notify,
    /// Set by the producer that woke the batcher, cleared by the batcher: one wake-up per batch, not one
    /// per span.
    wake_pending: AtomicBool,
}

impl SpanSink {
    /// A queue of `capacity` spans (at least 1) that wakes the batcher every `batch_size` spans. With a
    /// batch size above the capacity, batches go out by age only.
    pub(crate) fn new(capacity: usize, batch_size: usize) -> SpanSink {
        SpanSink {
            queue: ArrayQueue::new(capacity.max(1)),
            batch_size: batch_size.max(1),
            full_batch: Notify::new(),
            wake_pending: AtomicBool::new(false),
        }
    }

    /// Queues `span`, dropping the oldest if the queue is full. `pushed` is the calling thread's count of
    /// spans since it last woke the batcher (see the module docs).
    #[inline]
    fn push(&self, span: Arc<SpanInner>, pushed: &mut usize) {
        *pushed += 1;
        let mut wake = *pushed >= self.batch_size;
        if let Some(oldest) = self.queue.force_push(span) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            // Into the pool rather than freed: a thread that overruns the queue keeps reusing allocations
            // instead of paying a free and a malloc per span, which would slow it further.
            span::recycle(oldest);
            // A full batch is waiting whatever the threads' counts say.
            wake = true;
        }
        if wake {
            *pushed = 0;
            self.wake();
        }
    }

    /// Wakes the batcher unless a wake is already pending.
    #[cold]
    fn wake(&self) {
        // With a batch larger than the queue, batches go by age only: the batcher would find none.
        if self.queue.capacity() < self.batch_size {
            return;
        }
        if !self.wake_pending.load(Ordering::Relaxed) && !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.full_batch.notify_one();
        }
    }

    /// Up to `max` queued spans, oldest first, as exporters receive them.
    fn pop(&self, max: usize) -> SpanBatch {
        // The spans first, then their data written straight into the batch: collecting the data into a
        // `Vec` and converting it copied every `SpanData` a second time (a sixth of the batcher's work per
        // span). A slice iterator's exact length lets `Arc<[_]>` be filled in place; the queue's own length
        // would not do, since a producer may drop the oldest span meanwhile.
        let mut popped = Vec::with_capacity(max.min(self.queue.len()));
        while popped.len() < max {
            match self.queue.pop() {
                Some(span) => popped.push(span),
                None => break,
            }
        }
        // One reading of the wall clock places every span of the batch (see `span`'s module docs).
        let clock = WallClock::now();
        let batch = popped.iter().map(|span| span.take_span_data(&clock)).collect();
        for span in popped {
            span::recycle(span);
        }
        batch
    }
}

/// What woke the batcher.
pub(crate) enum Due {
    /// At least one full batch is queued.
    FullBatch,
    /// The batch timeout passed: send whatever is queued.
    Age,
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
        }
    }

    /// Resolves when there is something to send. Cancel-safe: a lost wake-up is caught by the next tick.
    pub(crate) async fn due(&mut self) -> Due {
        tokio::select! {
            _ = self.sink.full_batch.notified() => Due::FullBatch,
            _ = self.ticker.tick() => Due::Age,
        }
    }

    /// Sends what `due` found.
    pub(crate) fn send_due(&mut self, due: Due) {
        match due {
            Due::FullBatch => {
                // Cleared before popping: a producer pushing meanwhile wakes us again rather than being lost.
                self.sink.wake_pending.store(false, Ordering::Release);
                while self.sink.queue.len() >= self.sink.batch_size {
                    self.send(self.sink.pop(self.sink.batch_size));
                }
            }
            Due::Age => {
                self.send_all();
                self.log_drops();
            }
        }
    }

    /// Sends everything queued now, in batches. Spans queued while this runs wait for the next round, so
    /// a busy producer cannot keep it going forever.
    pub(crate) fn send_all(&mut self) {
        self.record_drops();
        self.sink.wake_pending.store(false, Ordering::Release);
        let mut left = self.sink.queue.len();
        while left > 0 {
            let batch = self.sink.pop(left.min(self.sink.batch_size));
            if batch.is_empty() {
                break;
            }
            left -= batch.len();
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

    fn wake_pending(sink: &SpanSink) -> bool {
        sink.wake_pending.swap(false, Ordering::AcqRel)
    }

    #[test]
    fn a_thread_wakes_the_batcher_after_a_batch_of_its_own_or_at_a_full_queue() {
        let sink = SpanSink::new(4, 3);
        let (mut first, mut second) = (0, 0);
        sink.push(span::ended_for_test("wake-1"), &mut first);
        sink.push(span::ended_for_test("wake-2"), &mut second);
        sink.push(span::ended_for_test("wake-3"), &mut first);
        assert!(!wake_pending(&sink), "3 queued, but neither thread pushed a batch's worth");
        sink.push(span::ended_for_test("wake-4"), &mut first);
        assert!(wake_pending(&sink), "the first thread's third span");
        assert_eq!(first, 0, "its count starts again");
        let dropped = dropped_spans();
        sink.push(span::ended_for_test("wake-5"), &mut second);
        assert!(wake_pending(&sink), "a full queue wakes whatever the counts");
        assert_eq!(dropped_spans() - dropped, 1);
        assert_eq!(sink.pop(10).len(), 4);

        // With batches by age only (a batch larger than the queue), nothing wakes the batcher.
        let by_age = SpanSink::new(2, 3);
        let mut pushed = 0;
        for name in ["age-1", "age-2", "age-3", "age-4"] {
            by_age.push(span::ended_for_test(name), &mut pushed);
        }
        assert!(!wake_pending(&by_age));
    }

    #[test]
    fn span_allocations_are_reused_from_the_threads_own_pool_which_moves_in_chunks() {
        // A thread of its own: the pool is per thread (other tests' spans may still pass through the shared
        // pool, so counts are checked relative to what this thread's pool held).
        std::thread::spawn(|| {
            let first = span::ended_for_test("pool-first");
            let address = Arc::as_ptr(&first);
            drop(first.take_span_data(&WallClock::now()));
            let held = span::pooled_here_for_test();
            span::recycle(first);
            assert_eq!(span::pooled_here_for_test(), held + 1);
            let second = span::ended_for_test("pool-second");
            assert_eq!(Arc::as_ptr(&second), address, "the next sampled span reuses it");
            assert_eq!(span::pooled_here_for_test(), held);

            let spans: Vec<_> = (0..=span::CHUNK).map(|_| span::ended_for_test("pool-many")).collect();
            let mut handed_over = 0;
            for span in spans {
                drop(span.take_span_data(&WallClock::now()));
                let before = span::pooled_here_for_test();
                span::recycle(span);
                let after = span::pooled_here_for_test();
                if before == span::CHUNK {
                    assert_eq!(after, 1, "a full pool hands its chunk over and starts a new one");
                    handed_over += 1;
                } else {
                    assert_eq!(after, before + 1);
                }
            }
            assert!(handed_over >= 1, "{} spans recycled into a pool of {}", span::CHUNK + 1, span::CHUNK);
        })
        .join()
        .expect("the pool test's thread");
    }

    #[test]
    fn a_reused_allocation_carries_nothing_of_the_span_before_it() {
        use crate::trace::limits::{MAX_ANNOTATIONS, MAX_ATTRIBUTES, MAX_LINKS, MAX_MESSAGE_EVENTS};
        use crate::trace::{
            Attributes, Link, LinkKind, MessageEventKind, Parent, Sampler, SpanBuilder, SpanId, Status,
            StatusCode, TraceId, TraceState,
        };

        // On a thread of its own, so that the next span takes the allocation just recycled (a thread's pool
        // hands out the last one in).
        std::thread::spawn(|| {
            let used = SpanBuilder::new("reuse-before")
                .parent(Parent::Remote(crate::trace::SpanContext {
                    trace_id: TraceId::random(),
                    span_id: SpanId::random(),
                    sampled: true,
                    tracestate: TraceState::from_entries(vec![("vendor".into(), "x".into())]),
                }))
                .sampler(Sampler::AlwaysOn)
                .start();
            let _child = SpanBuilder::new("child").parent(Parent::Local(used.clone())).start();
            // Every limit overrun, so that every dropped count is set.
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
                    kind: LinkKind::Unspecified,
                    attributes: Attributes::default(),
                });
            }
            used.set_status(StatusCode::Internal, "failed");
            used.end();
            let inner = span::inner_for_test(&used).expect("sampled");
            drop((used, _child));
            let before = inner.take_span_data(&WallClock::now());
            assert!(before.attributes.dropped > 0 && before.dropped_annotations > 0);
            assert!(before.dropped_message_events > 0 && before.dropped_links > 0);
            assert!(!before.context.tracestate.is_empty() && before.child_span_count == 1);
            let address = Arc::as_ptr(&inner);
            span::recycle(inner);

            let next =
                SpanBuilder::new("reuse-after").parent(Parent::Root).sampler(Sampler::AlwaysOn).start();
            next.end();
            let inner = span::inner_for_test(&next).expect("sampled");
            drop(next);
            assert_eq!(Arc::as_ptr(&inner), address, "the allocation was reused");
            let after = inner.take_span_data(&WallClock::now());
            assert_eq!(after.name, "reuse-after");
            assert_eq!(after.attributes, Attributes::default());
            assert!(after.time_events.is_empty() && after.links.is_empty());
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
