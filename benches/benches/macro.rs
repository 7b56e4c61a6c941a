//! What `#[trace_layer]` adds to a call, next to the same fn unannotated and to its peers' attributes
//! (fastrace's `#[trace]`, tracing's `#[instrument]`) on the same body, in the same run.
//!
//! - `plain`: the body alone, the baseline.
//! - `oclayer/disabled`: the layer is off in the config. Target: at most 1 ns over `plain`.
//! - `oclayer/unsampled`: the layer is on, the request is not sampled; the layer's measures are recorded.
//!   Target: at most 50 ns over `plain`.
//! - `oclayer/sampled`: a sampled span with the layer's attributes, ended and queued for export, plus the
//!   measures, with a pipeline that keeps up. Target: at most 120 ns over `plain`. Timed in chunks of
//!   [`CHUNK`](oclayer_benches::CHUNK) calls, the pipeline flushed between chunks outside the timed part:
//!   made flat out on one core, spans outrun any batcher and the queue stays full, which measures overload
//!   (that is `oclayer/sampled_flooded`), not a request's path. The same for the router, the async fn and
//!   fastrace's `root_per_call`, whose `_flooded` rows keep the flood.
//! - `oclayer/router_*`: the router layer reading an `http::Request` (method, path, host, trace headers).
//! - `async/*`: the same for an `async fn`, polled once to completion without an executor.
//! - `async/executor_*`: the plain and the disabled async fn polled as an executor polls a task: moved, then
//!   polled through the future's vtable. `async/plain` is a future the compiler never moves (its poll is
//!   inlined and its address never taken), which no executor allows; any future polled out of line after
//!   being built by a call pays for the move, including a store-forwarding stall on reading back what the
//!   call just wrote. These two rows compare the layer's cost where both fns pay that.
//! - `fastrace/no_parent`, `tracing/no_subscriber`: the peers when nothing collects (their "disabled").
//! - `fastrace/root_per_call`: a root span and the annotated fn's local span, reported to a discarding
//!   reporter (fastrace records only under a root, so the root is part of what a request pays).
//! - `tracing/registry`: `#[instrument]` with `tracing_subscriber`'s registry as the subscriber.
//! - `parts/*`: the pieces of an unsampled call (clock, stats record, unsampled span), to read the
//!   `oclayer/unsampled` figure against.
//!
//! Timed by the thread's CPU clock: the machine is shared, and the wall clock would also count the time
//! other processes hold the core.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use oclayer::__private::ClockReading;
use oclayer::config::Config;
use oclayer::layer::{self, Layer, PipeOutcome};
use oclayer::trace::{self, Sampler};
use oclayer::trace_layer;
use oclayer_benches::{ThreadCpuTime, chunked, oclayer_discarding, oclayer_flush, peers};

// ---- the fns ---------------------------------------------------------------------------------------------

/// A small body, so that the instrumentation is most of what is timed.
#[inline(never)]
fn work(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7)
}

#[inline(never)]
fn plain(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[trace_layer(pipe, route = "/bench/{id}")]
fn annotated(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[trace_layer(router, route = "/bench/{id}")]
fn router(req: &Request<()>, x: u64) -> u64 {
    let _ = req;
    work(x)
}

#[inline(never)]
async fn plain_async(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[trace_layer(pipe, route = "/bench-async/{id}")]
async fn annotated_async(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[fastrace::trace]
fn fastrace_traced(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[fastrace::trace]
async fn fastrace_traced_async(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[tracing::instrument(skip_all)]
fn tracing_instrumented(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[tracing::instrument(skip_all)]
async fn tracing_instrumented_async(x: u64) -> u64 {
    work(x)
}

/// Polls a future that completes at once, with no executor in the way.
fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("the benched futures never wait"),
    }
}

/// Polls a future that completes at once as an executor's task does: from where it was moved to, through
/// its vtable.
fn ready_as_task<F: Future>(fut: F) -> F::Output {
    let task: std::pin::Pin<&mut dyn Future<Output = F::Output>> = pin!(fut);
    match black_box(task).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("the benched futures never wait"),
    }
}

// ---- the pipelines ---------------------------------------------------------------------------------------

fn pipeline() -> oclayer::Telemetry {
    // Only the exporter added in code: no network, no server.
    let config = Config::builder().build().expect("a valid config");
    oclayer_discarding(config)
}

// ---- the benches -----------------------------------------------------------------------------------------

fn request() -> Request<()> {
    Request::get("http://gateway.local/bench/7").header("user-agent", "bench/1.0").body(()).expect("valid")
}

fn oclayer_benches<M: Measurement + 'static>(c: &mut Criterion<M>, m: &M) {
    let req = request();
    c.bench_function("plain", |b| b.iter(|| plain(black_box(7))));
    c.bench_function("async/plain", |b| b.iter(|| ready(plain_async(black_box(7)))));

    // Before `init`, every layer is off.
    c.bench_function("oclayer/disabled", |b| b.iter(|| annotated(black_box(7))));
    c.bench_function("oclayer/router_disabled", |b| b.iter(|| router(&req, black_box(7))));
    c.bench_function("async/oclayer_disabled", |b| b.iter(|| ready(annotated_async(black_box(7)))));
    c.bench_function("async/executor_plain", |b| b.iter(|| ready_as_task(plain_async(black_box(7)))));
    c.bench_function("async/executor_oclayer_disabled", |b| {
        b.iter(|| ready_as_task(annotated_async(black_box(7))))
    });

    let telemetry = pipeline();
    trace::set_sampler(Sampler::AlwaysOff);
    c.bench_function("oclayer/unsampled", |b| b.iter(|| annotated(black_box(7))));
    c.bench_function("oclayer/router_unsampled", |b| b.iter(|| router(&req, black_box(7))));
    c.bench_function("async/oclayer_unsampled", |b| b.iter(|| ready(annotated_async(black_box(7)))));

    trace::set_sampler(Sampler::AlwaysOn);
    let flush = oclayer_flush(&telemetry, "oclayer");
    let dropped_before = trace::dropped_spans();
    c.bench_function("oclayer/sampled", |b| {
        b.iter_custom(|iters| chunked(m, iters, || annotated(black_box(7)), &flush))
    });
    c.bench_function("oclayer/router_sampled", |b| {
        b.iter_custom(|iters| chunked(m, iters, || router(&req, black_box(7)), &flush))
    });
    c.bench_function("async/oclayer_sampled", |b| {
        b.iter_custom(|iters| chunked(m, iters, || ready(annotated_async(black_box(7))), &flush))
    });
    // Expected 0: the pipeline keeps up, so these rows are the request's path.
    eprintln!(
        "oclayer/*sampled: spans dropped by the full queue: {}",
        trace::dropped_spans() - dropped_before
    );
    let dropped_before = trace::dropped_spans();
    c.bench_function("oclayer/sampled_flooded", |b| b.iter(|| annotated(black_box(7))));
    // A full queue drops the oldest span: say how often, since a dropped span costs less than an exported one.
    eprintln!(
        "oclayer/sampled_flooded: spans dropped by the full queue: {}",
        trace::dropped_spans() - dropped_before
    );
    trace::set_sampler(Sampler::AlwaysOff);
    // The flush borrows the pipeline: it goes first.
    drop(flush);
    drop(telemetry);
}

fn peer_benches<M: Measurement + 'static>(c: &mut Criterion<M>, m: &M) {
    c.bench_function("fastrace/no_parent", |b| b.iter(|| fastrace_traced(black_box(7))));
    c.bench_function("async/fastrace_no_parent", |b| b.iter(|| ready(fastrace_traced_async(black_box(7)))));
    peers::fastrace_discarding();
    let root_per_call = || {
        let root = fastrace::Span::root("/bench/{id}", fastrace::collector::SpanContext::random());
        let _parent = root.set_local_parent();
        fastrace_traced(black_box(7))
    };
    c.bench_function("fastrace/root_per_call", |b| {
        b.iter_custom(|iters| chunked(m, iters, root_per_call, fastrace::flush))
    });
    c.bench_function("fastrace/root_per_call_flooded", |b| b.iter(root_per_call));

    c.bench_function("tracing/no_subscriber", |b| b.iter(|| tracing_instrumented(black_box(7))));
    c.bench_function("async/tracing_no_subscriber", |b| {
        b.iter(|| ready(tracing_instrumented_async(black_box(7))))
    });
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    c.bench_function("tracing/registry", |b| b.iter(|| tracing_instrumented(black_box(7))));
    c.bench_function("async/tracing_registry", |b| {
        b.iter(|| ready(tracing_instrumented_async(black_box(7))))
    });
}

/// What an unsampled annotated call is made of, to read `oclayer/unsampled` against: the layer check, the
/// two clock reads of the latency, the pipe's stats record and an unsampled span.
fn parts<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let telemetry = pipeline();
    trace::set_sampler(Sampler::AlwaysOff);
    c.bench_function("parts/is_enabled", |b| b.iter(|| black_box(Layer::Pipe).is_enabled()));
    // The clock the layers read (the TSC where the kernel trusts it), not `std::time::Instant`.
    c.bench_function("parts/latency_clock", |b| b.iter(|| black_box(ClockReading::now()).elapsed()));
    c.bench_function("parts/record_pipe", |b| {
        b.iter(|| layer::record_pipe("/bench/{id}", PipeOutcome::Ok, black_box(Duration::from_micros(3))))
    });
    // The same record as an annotated call makes it: the tags are `&'static str`s, recognised by address on
    // a repeat, and the latency comes in ms from the clock, with no `Duration` between.
    c.bench_function("parts/record_pipe_static", |b| {
        b.iter(|| layer::record_pipe_static("/bench/{id}", PipeOutcome::Ok, black_box(0.003)))
    });
    c.bench_function("parts/unsampled_span", |b| {
        b.iter(|| {
            let span = trace::SpanBuilder::new("pipe-/bench/{id}").start();
            span.end();
            span
        })
    });
    let req = request();
    c.bench_function("parts/extract_no_context", |b| {
        b.iter(|| trace::propagation::extract(black_box(req.headers())))
    });
    // What a backend call writes into its outgoing request: `traceparent` and the B3 headers.
    let context = trace::SpanBuilder::new("backend-/bench/{id}").start().span_context();
    let mut outgoing = request();
    c.bench_function("parts/inject", |b| {
        b.iter(|| trace::propagation::inject(black_box(&context), black_box(outgoing.headers_mut())))
    });
    drop(telemetry);
}

fn all(c: &mut Criterion<ThreadCpuTime>) {
    parts(c);
    oclayer_benches(c, &ThreadCpuTime);
    peer_benches(c, &ThreadCpuTime);
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = all
}
criterion_main!(benches);
