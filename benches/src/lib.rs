//! Benchmarks of oclayer side by side with its peers live in `benches/benches/`; this library holds what
//! they share: the thread and process CPU clocks, oclayer's pipeline and its drain, and the peers' pipelines
//! ([`peers`]). The report writer, `src/bin/bench-report.rs`, turns criterion's results into BENCHMARKS.md's
//! tables (`benches/run.sh`).
//!
//! On a shared machine the wall clock also counts the time other processes hold the core; a thread's CPU
//! clock counts only that thread's own work, so it is the figure to compare with targets when the load
//! average is above the core count.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use oclayer::export::{Exporter, SpanBatch};

pub mod peers;

/// Starts oclayer's pipeline from `config` with one exporter that drops every span batch: no network, no
/// server, so a bench times the request path and a batcher that keeps up, as the peers' discarding
/// exporters do ([`peers`]).
///
/// # Panics
/// If the pipeline does not start (one is already running): a bench set-up error.
pub fn oclayer_discarding(config: oclayer::Config) -> oclayer::Telemetry {
    oclayer::Telemetry::builder(config).exporter(Arc::new(Discard)).init().expect("the pipeline starts")
}

/// A span exporter that drops every batch: no network, no server.
pub struct Discard;

impl Exporter for Discard {
    fn name(&self) -> &'static str {
        "discard"
    }

    fn export_spans(&self, spans: &SpanBatch) {
        black_box(spans.len());
    }
}

/// The drain between [`chunked`]'s chunks for oclayer: a flush of `telemetry`, driven by a current-thread
/// runtime of its own (the flush future needs no particular one). A failed flush is printed under `what`.
///
/// # Panics
/// If the runtime cannot be built: a bench set-up error.
pub fn oclayer_flush<'t>(telemetry: &'t oclayer::Telemetry, what: &'t str) -> impl Fn() + 't {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
    move || {
        if let Err(error) = runtime.block_on(telemetry.flush()) {
            eprintln!("{what}: flush failed: {error}");
        }
    }
}

/// Calls per timed chunk of the cases whose pipeline keeps up: a few hundred, well below a queue's worth
/// (oclayer's 1,024 spans a thread, fastrace's 10 K per thread, the OpenTelemetry batch processor's 2 K),
/// so that no chunk overflows a queue and nothing is dropped.
pub const CHUNK: u64 = 256;

/// Times `iters` calls of `call` by the measurement `m` in chunks of [`CHUNK`], calling `drain` between
/// chunks outside the timed part. The call's result is dropped inside the timed part (that ends a fastrace
/// span). Made flat out, spans outrun any tracer's batcher and the queue's overflow handling dominates;
/// drained between chunks, the figure is the request path with a pipeline that keeps up.
pub fn chunked<M: Measurement, R>(
    m: &M,
    iters: u64,
    mut call: impl FnMut() -> R,
    mut drain: impl FnMut(),
) -> M::Value {
    let mut total = m.zero();
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = m.start();
        for _ in 0..n {
            drop(black_box(call()));
        }
        total = m.add(&total, &m.end(start));
        left -= n;
        drain();
    }
    total
}

/// The CPU time the calling thread has run so far (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID, "CLOCK_THREAD_CPUTIME_ID")
}

/// The CPU time all threads of this process have run so far (`CLOCK_PROCESS_CPUTIME_ID`): for benches whose
/// work is spread over threads (a server, its client and its upstreams in one process).
pub fn process_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID, "CLOCK_PROCESS_CPUTIME_ID")
}

fn cpu_clock(clock: libc::clockid_t, name: &str) -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut now) };
    assert_eq!(rc, 0, "clock_gettime({name}) failed");
    Duration::new(u64::try_from(now.tv_sec).unwrap_or(0), u32::try_from(now.tv_nsec).unwrap_or(0))
}

/// Pins thread `tid` (0: the calling thread) to `cpu`, for the examples that put threads on given cores; says
/// so on standard error if it cannot (one CPU only, or a mask that forbids it).
pub fn pin_to_cpu(tid: libc::pid_t, cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is an empty set, which `CPU_SET` fills; the call only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        eprintln!("could not pin thread {tid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}

/// The body of [`pipe_call`]: small, so that the instrumentation is most of what is timed.
#[inline(never)]
fn pipe_work(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

/// `oclayer/unsampled`'s annotated fn, for the examples that time it beside something else (`phases`,
/// `neighbours`).
#[inline(never)]
#[oclayer::trace_layer(pipe, route = "/bench/{id}")]
pub fn pipe_call(x: u64) -> u64 {
    pipe_work(x)
}

/// A criterion measurement that times each sample by the benchmark thread's CPU clock, in nanoseconds.
pub struct ThreadCpuTime;

fn nanos() -> u64 {
    u64::try_from(thread_cpu_time().as_nanos()).unwrap_or(u64::MAX)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        nanos()
    }

    fn end(&self, start: u64) -> u64 {
        nanos() - start
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, so the wall clock's formatter reads them right.
        WallTime.formatter()
    }
}
