//! How far is `trace_cpu/sampled_two_attributes` above the least such a span can cost here? Times, in
//! alternating blocks on one thread by its CPU clock, in chunks of [`CHUNK`] spans with a drain between
//! chunks (untimed), as the bench does:
//!
//! - `clocks`: the two TSC reads a timed span needs, alone;
//! - `floor`: a span with none of oclayer's features (no sampler, context, handles, limits, running
//!   counts or pool): ids from a xorshift generator, the two clock reads, the name and two attributes
//!   written into a 3-line slot of a ring that a thread on the other core drains between chunks, parked
//!   meanwhile, as a batcher that keeps up is;
//! - `oclayer same`, `oclayer other`: the bench's span (`SpanBuilder`, two attributes, `end`), its pipeline
//!   drained by `flush` between chunks, with oclayer's export thread pinned to the bench thread's core
//!   (where it runs only while the bench thread waits for the flush) or to the other one, block by block.
//!
//! The bench thread runs on CPU 0 and the floor's consumer on CPU 1. Run:
//! `cargo run --release -p oclayer-benches --example floor`.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use criterion::measurement::Measurement;
use oclayer::__private::ClockReading;
use oclayer::Config;
use oclayer::trace::{self, Parent, Sampler, SpanBuilder, SpanKind};
use oclayer_benches::{CHUNK, ThreadCpuTime, oclayer_discarding, oclayer_flush, pin_to_cpu};

const SPANS: u64 = 1 << 20;
const BLOCKS: usize = 8;
const CAPACITY: u64 = 1024;

#[derive(Clone, Copy)]
enum Value {
    Str(&'static str),
    Int(i64),
}

/// What an exporter needs of the span.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Slot {
    trace_id: u128,
    span_id: u64,
    parent_span_id: Option<u64>,
    start: u64,
    end: u64,
    kind: u8,
    child_span_count: u32,
    name: &'static str,
    attributes: [(&'static str, Value); 2],
}

// As oclayer's slot of a span with two attributes: three cache lines written, and read by the consumer.
const _: () = assert!(std::mem::size_of::<Slot>() == 192);

const EMPTY: Slot = Slot {
    trace_id: 0,
    span_id: 0,
    parent_span_id: None,
    start: 0,
    end: 0,
    kind: 0,
    child_span_count: 0,
    name: "",
    attributes: [("", Value::Int(0)); 2],
};

/// A one-producer, one-consumer ring with a consumer thread that drains it when asked.
struct Ring {
    slots: Box<[UnsafeCell<Slot>]>,
    /// Written by the producer: the next position it writes.
    tail: AtomicU64,
    /// Written by the consumer: the next position it reads.
    head: AtomicU64,
    drain: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: the producer writes the slot of position `t` only once the consumer's head is past
// `t - CAPACITY`, and the consumer reads it only once the producer's tail is past `t`.
unsafe impl Sync for Ring {}

impl Ring {
    fn slot(&self, position: u64) -> *mut Slot {
        self.slots[(position % CAPACITY) as usize].get()
    }

    fn consume(&self) {
        let mut head = 0;
        let mut sum = 0u64;
        while !self.stop.load(Ordering::Acquire) {
            if !self.drain.load(Ordering::Acquire) {
                std::thread::park();
                continue;
            }
            let tail = self.tail.load(Ordering::Acquire);
            while head < tail {
                // SAFETY: published by the producer's tail (see `Sync`).
                let span = unsafe { *self.slot(head) };
                let Value::Int(status) = span.attributes[1].1 else { unreachable!("written as an int") };
                let Value::Str(method) = span.attributes[0].1 else { unreachable!("written as a str") };
                sum = sum.wrapping_add(span.end - span.start).wrapping_add(status as u64);
                sum ^= (span.trace_id as u64) ^ span.span_id ^ (span.name.len() + method.len()) as u64;
                sum ^= span.parent_span_id.unwrap_or(0)
                    ^ u64::from(span.kind)
                    ^ u64::from(span.child_span_count);
                head += 1;
            }
            self.head.store(head, Ordering::Release);
            self.drain.store(false, Ordering::Release);
        }
        black_box(sum);
    }
}

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

struct Producer {
    ring: Arc<Ring>,
    tail: u64,
    /// The consumer's head as last read: read again only when the ring looks full.
    head: u64,
    rng: u64,
}

impl Producer {
    #[inline(never)]
    fn span(&mut self, name: &'static str) {
        let start = rdtsc();
        let mut next = || {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng
        };
        let (high, low, span_id) = (next(), next(), next());
        let attributes = [("http.method", Value::Str("GET")), ("http.status_code", Value::Int(200))];
        let end = rdtsc();
        if self.tail - self.head >= CAPACITY {
            self.head = self.ring.head.load(Ordering::Acquire);
            if self.tail - self.head >= CAPACITY {
                return;
            }
        }
        let trace_id = (u128::from(high) << 64) | u128::from(low);
        // SAFETY: the slot is free (see `Ring`'s `Sync`).
        unsafe {
            self.ring.slot(self.tail).write(Slot {
                trace_id,
                span_id,
                parent_span_id: None,
                start,
                end,
                kind: 1,
                child_span_count: 0,
                name,
                attributes,
            });
        };
        self.tail += 1;
        self.ring.tail.store(self.tail, Ordering::Release);
    }
}

/// Pins this process's threads whose name starts with `prefix` to `cpu`.
fn pin_named(prefix: &str, cpu: usize) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let (true, Ok(tid)) = (comm.starts_with(prefix), task.file_name().to_string_lossy().parse()) {
            pin_to_cpu(tid, cpu);
        }
    }
}

/// ns per span of `span`, timed in chunks of [`CHUNK`] with `drain` between them.
fn per_span(mut span: impl FnMut(), mut drain: impl FnMut()) -> f64 {
    let mut total = 0;
    let mut left = SPANS;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = ThreadCpuTime.start();
        for _ in 0..n {
            span();
        }
        total += ThreadCpuTime.end(start);
        left -= n;
        drain();
    }
    total as f64 / SPANS as f64
}

fn main() {
    let telemetry = oclayer_discarding(Config::builder().build().expect("the default config is valid"));
    let flush = oclayer_flush(&telemetry, "floor");
    trace::set_sampler(Sampler::AlwaysOn);
    pin_to_cpu(0, 0);

    let ring = Arc::new(Ring {
        slots: (0..CAPACITY).map(|_| UnsafeCell::new(EMPTY)).collect(),
        tail: AtomicU64::new(0),
        head: AtomicU64::new(0),
        drain: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let consumer = std::thread::spawn({
        let ring = Arc::clone(&ring);
        move || {
            pin_to_cpu(0, 1);
            ring.consume();
        }
    });
    let mut producer = Producer { ring: Arc::clone(&ring), tail: 0, head: 0, rng: 0x9e37_79b9_7f4a_7c15 };
    let drain = || {
        ring.drain.store(true, Ordering::Release);
        consumer.thread().unpark();
        while ring.drain.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    };

    let oclayer_span = || {
        let span = SpanBuilder::new("/users/{id}").kind(SpanKind::Server).parent(Parent::Root).start();
        span.set_attribute("http.method", "GET");
        span.set_attribute("http.status_code", 200);
        span.end();
        drop(black_box(span));
    };

    let mut rows = ["clocks", "floor", "oclayer same", "oclayer other"].map(|name| (name, String::new()));
    for _ in 0..BLOCKS {
        let clocks = per_span(|| _ = black_box(black_box(ClockReading::now()).elapsed()), || {});
        let floor = per_span(|| producer.span(black_box("/users/{id}")), drain);
        pin_named("oclayer-export", 0);
        let same = per_span(oclayer_span, &flush);
        pin_named("oclayer-export", 1);
        let other = per_span(oclayer_span, &flush);
        for ((_, line), ns) in rows.iter_mut().zip([clocks, floor, same, other]) {
            line.push_str(&format!(" {ns:6.1}"));
        }
    }
    ring.stop.store(true, Ordering::Release);
    consumer.thread().unpark();
    consumer.join().expect("the consumer thread");
    for (name, line) in rows {
        println!("{name:13} ns:{line}");
    }
}
