//! What one thread's load costs another thread's calls through memory they share. One thread, on CPU 1,
//! times an unsampled `#[trace_layer(pipe)]` call (`oclayer/unsampled`) by its CPU clock, in alternating
//! blocks: alone, then while a thread on CPU 0 does one of
//!
//! - `drops`: ends sampled spans into a full ring, so that each one drops the oldest and counts it in the
//!   process-wide dropped-span counter (a queue that cannot keep up: overload);
//! - `rate`: takes rate-limiting sampling decisions, a budget shared by every thread, at a rate that admits
//!   most of them;
//! - `invalid`: makes stats tag values from a string that is not printable ASCII (as request data can be),
//!   each fixed and counted in the process-wide count of invalid tag values.
//!
//! The timed call reads the sampler, the layer switches and the stats registry's generation, statics a
//! linker may place on the cache line of a counter the other thread writes; then every write there costs
//! the timed thread a cache miss. Run: `cargo run --release -p oclayer-benches --example neighbours`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use criterion::measurement::Measurement;
use oclayer::stats::TagValue;
use oclayer::trace::{self, Parent, Sampler, SpanBuilder, TraceId};
use oclayer::{Config, Telemetry};
use oclayer_benches::{Discard, ThreadCpuTime, pin_to_cpu, pipe_call};

const CALLS: u64 = 2_000_000;
const BLOCKS: usize = 8;

/// What the other thread does.
const IDLE: u8 = 0;
const DROPS: u8 = 1;
const RATE: u8 = 2;
const INVALID: u8 = 3;
const STOP: u8 = 4;

/// The other thread: `mode` says what it does, until it says [`STOP`].
fn neighbour(mode: &AtomicU8) {
    pin_to_cpu(0, 0);
    let id = TraceId::random();
    loop {
        match mode.load(Ordering::Relaxed) {
            DROPS => {
                for _ in 0..1000 {
                    SpanBuilder::new("flood").parent(Parent::Root).sampler(Sampler::AlwaysOn).start().end();
                }
            }
            RATE => {
                for _ in 0..1000 {
                    black_box(Sampler::RateLimiting(1e9).should_sample(&id, None));
                }
            }
            INVALID => {
                for _ in 0..1000 {
                    black_box(TagValue::from(black_box("caf\u{e9}")));
                }
            }
            STOP => return,
            _ => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

fn main() {
    let config = Config::builder().build().expect("the default config is valid");
    // Rings of 64 spans and batches larger than a ring: nothing wakes the batcher, so a ring stays full and
    // every span ended into it drops one.
    let _telemetry = Telemetry::builder(config)
        .span_queue_capacity(64)
        .span_batch_size(1 << 20)
        .exporter(Arc::new(Discard))
        .init()
        .expect("the pipeline starts");
    trace::set_sampler(Sampler::AlwaysOff);

    let mode = Arc::new(AtomicU8::new(IDLE));
    let other = std::thread::spawn({
        let mode = Arc::clone(&mode);
        move || neighbour(&mode)
    });
    pin_to_cpu(0, 1);
    let mut rows = [("alone", IDLE), ("drops", DROPS), ("rate", RATE), ("invalid", INVALID)]
        .map(|(name, m)| (name, m, String::new()));
    let dropped = trace::dropped_spans();
    for _ in 0..BLOCKS {
        for (_, m, line) in &mut rows {
            mode.store(*m, Ordering::Relaxed);
            // The other thread starts (or stops) meanwhile.
            std::thread::sleep(Duration::from_millis(20));
            let start = ThreadCpuTime.start();
            for i in 0..CALLS {
                black_box(pipe_call(black_box(i)));
            }
            let ns = ThreadCpuTime.end(start) as f64 / CALLS as f64;
            line.push_str(&format!(" {ns:6.1}"));
        }
    }
    mode.store(STOP, Ordering::Relaxed);
    other.join().expect("the other thread");
    println!("spans dropped meanwhile: {}", trace::dropped_spans() - dropped);
    for (name, _, line) in rows {
        println!("{name:7} ns:{line}");
    }
}
