//! The tracing hot path: what every annotated call pays for its span.
//!
//! - `unsampled_root`: start and end a root span the sampler declines (the common case at `sample_rate` <
//!   100). Target: 5 ns, and no allocation (`runtime/tests/no_alloc.rs` proves that part).
//! - `unsampled_child_of_current`: the same with the parent looked up in the current-span slot.
//! - `sampled_two_attributes`: start a sampled root, set two attributes, end it and move it into the
//!   thread's span ring, with a pipeline that keeps up. Target: 60 ns. Timed in chunks of
//!   [`CHUNK`](oclayer_benches::CHUNK) spans, the pipeline drained (flushed) between chunks outside the
//!   timed part: made flat out on one core, spans outrun any batcher, the ring stays full and every push
//!   drops the oldest span, which measures overload (that is `sampled_flooded`), not the request path. A
//!   chunk is below the thread's ring capacity, so no span of it is dropped. The batcher pops on its own
//!   core, as in a server (woken by a thread's batch, or polling under load), so each ring slot's cache
//!   lines come back from the batcher's core when the thread writes the slot again. The
//!   peers run the same way (`fastrace::flush`, the OpenTelemetry provider's `force_flush`), so the ratios
//!   stay like for like.
//! - `sampled_flooded`: the same span made flat out, never drained: the overloaded pipeline, and how many
//!   spans the full ring dropped (printed). The peers' `*_sampled_flooded` face the same flood. Printed
//!   too: how many spans a second the batcher exported meanwhile, running flat out (a lower bound: the
//!   wall-clock time counted includes criterion's analysis after the samples).
//! - `sampled_no_pipeline`: the same with no pipeline installed, so ending leaves the recording in place
//!   and pooling the allocation drops it: the request path's own work (ids, clock, attributes, running
//!   count, the pool) without the hand-off and without a batcher competing for the cache.
//! - `current_span_lookup_*`: `current_span().is_sampled()` inside an entered span: finding the current
//!   span, as a handler does before recording into it. Target: 2 ns.
//! - `current_span_clone_*`: `Span::current()`, an owned handle to the current span.
//!
//! The unsampled rows keep the span where they made it and hand `black_box` a reference to it, for every
//! tracer: a span returned from the routine is moved into criterion's output slot, a copy whose cost
//! depends on where the compiler happened to build the value, not on the span's own work. oclayer's
//! 48-byte handle, built at a merge of branches, was copied in 16-byte loads of the 8-byte stores just
//! made (a store-forwarding stall): the child of the current span read 6.5 or 11.5 ns depending on an
//! unrelated function's signature. A handler that uses its span where it started it pays for no such copy.
//!
//! Each runs twice: `trace/...` timed by the wall clock, as usual, and `trace_cpu/...` timed by the
//! thread's CPU clock. On a shared machine the wall clock also counts the time other processes hold the
//! core; the CPU clock counts only this thread's own work, so it is the figure to compare with the targets
//! when the load average is above the core count.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::measurement::{Measurement, WallTime};
use criterion::{Criterion, criterion_group, criterion_main};
use oclayer::config::Config;
use oclayer::export::{Exporter, SpanBatch};
use oclayer::trace::{self, Parent, Sampler, SpanBuilder, SpanKind};
use oclayer_benches::{ThreadCpuTime, chunked, oclayer_flush};

/// Spans [`Counting`] received: what the batcher got through.
static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// An exporter that counts the spans and drops them, as `oclayer_benches::oclayer_discarding`'s does.
struct Counting;

impl Exporter for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn export_spans(&self, spans: &SpanBatch) {
        EXPORTED.fetch_add(u64::try_from(spans.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

fn pipeline() -> oclayer::Telemetry {
    // Only the exporter added in code: no network, no server.
    let config = Config::builder().sample_rate(100).build().expect("valid config");
    oclayer::Telemetry::builder(config).exporter(Arc::new(Counting)).init().expect("the pipeline starts")
}

fn unsampled<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str) {
    trace::set_sampler(Sampler::AlwaysOff);
    c.bench_function(&format!("{group}/unsampled_root"), |b| {
        b.iter(|| {
            let span = SpanBuilder::new("/users/{id}").kind(SpanKind::Server).parent(Parent::Root).start();
            span.end();
            black_box(&span);
        })
    });

    let parent = SpanBuilder::new("/users/{id}").parent(Parent::Root).start();
    let _entered = parent.enter();
    c.bench_function(&format!("{group}/unsampled_child_of_current"), |b| {
        b.iter(|| {
            let span = trace::start_span("backend-/users", SpanKind::Client);
            span.end();
            black_box(&span);
        })
    });
}

/// A sampled root span with two attributes, started and ended.
fn sampled_span() -> oclayer::trace::Span {
    let span = SpanBuilder::new("/users/{id}").kind(SpanKind::Server).parent(Parent::Root).start();
    span.set_attribute("http.method", "GET");
    span.set_attribute("http.status_code", 200);
    span.end();
    span
}

fn sampled<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str, m: &M) {
    trace::set_sampler(Sampler::AlwaysOn);
    c.bench_function(&format!("{group}/sampled_no_pipeline"), |b| b.iter(sampled_span));

    let telemetry = pipeline();
    let flush = oclayer_flush(&telemetry, group);
    trace::set_sampler(Sampler::AlwaysOn);
    let dropped_before = trace::dropped_spans();
    c.bench_function(&format!("{group}/sampled_two_attributes"), |b| {
        b.iter_custom(|iters| chunked(m, iters, sampled_span, &flush))
    });
    // Expected 0: the pipeline keeps up, so this row is the request path.
    eprintln!(
        "{group}/sampled_two_attributes: spans dropped by the full queue: {}",
        trace::dropped_spans() - dropped_before
    );
    let dropped_before = trace::dropped_spans();
    let (exported_before, started) = (EXPORTED.load(Ordering::Relaxed), Instant::now());
    c.bench_function(&format!("{group}/sampled_flooded"), |b| b.iter(sampled_span));
    let (exported, elapsed) = (EXPORTED.load(Ordering::Relaxed) - exported_before, started.elapsed());
    // A full ring drops the oldest span (a compare-exchange and an atomic add on the request path): say how
    // often.
    eprintln!(
        "{group}/sampled_flooded: spans dropped by the full queue: {}; the batcher exported {exported} spans \
         in {elapsed:.1?}: {:.2} M spans/s",
        trace::dropped_spans() - dropped_before,
        exported as f64 / elapsed.as_secs_f64() / 1e6
    );
    trace::set_sampler(Sampler::AlwaysOff);
    // The flush borrows the pipeline: it goes first.
    drop(flush);
    drop(telemetry);
}

fn lookup<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str) {
    for sampler in [Sampler::AlwaysOff, Sampler::AlwaysOn] {
        let which = if sampler == Sampler::AlwaysOn { "sampled" } else { "unsampled" };
        let span = SpanBuilder::new("lookup").parent(Parent::Root).sampler(sampler).start();
        let _entered = span.enter();
        // What a handler does before computing an attribute: is there a sampled span to record into?
        c.bench_function(&format!("{group}/current_span_lookup_{which}"), |b| {
            b.iter(|| black_box(oclayer::current_span()).is_sampled())
        });
        // An owned handle to the current span, to keep or move into a task.
        c.bench_function(&format!("{group}/current_span_clone_{which}"), |b| b.iter(trace::Span::current));
    }
}

fn wall_clock(c: &mut Criterion) {
    unsampled(c, "trace");
    sampled(c, "trace", &WallTime);
    lookup(c, "trace");
}

fn cpu_clock(c: &mut Criterion<ThreadCpuTime>) {
    unsampled(c, "trace_cpu");
    sampled(c, "trace_cpu", &ThreadCpuTime);
    lookup(c, "trace_cpu");
    peers(c, "trace_cpu");
}

criterion_group!(wall, wall_clock);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_clock
}
criterion_main!(wall, cpu);

/// The peers' spans, the like-for-like of `unsampled_root`, `sampled_two_attributes` (chunks, the pipeline
/// flushed between them) and `sampled_flooded`: a root span with the sampler declining, and a sampled root
/// with two attributes ended into a discarding export. Each pipeline is set up as in
/// `oclayer_benches::peers`.
fn peers(c: &mut Criterion<ThreadCpuTime>, group: &str) {
    use oclayer_benches::peers;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span as _, SpanKind as OtelKind, Tracer as _};

    oclayer_benches::peers::fastrace_discarding();
    let unsampled = fastrace::collector::SpanContext::random().sampled(false);
    c.bench_function(&format!("{group}/peer/fastrace_unsampled_root"), |b| {
        b.iter(|| {
            let span = fastrace::Span::root("/users/{id}", unsampled);
            black_box(&span);
        })
    });
    let fastrace_span = || {
        let span = fastrace::Span::root("/users/{id}", fastrace::collector::SpanContext::random());
        span.add_properties(|| [("http.method", "GET"), ("http.status_code", "200")]);
        span
    };
    c.bench_function(&format!("{group}/peer/fastrace_sampled_two_attributes"), |b| {
        b.iter_custom(|iters| chunked(&ThreadCpuTime, iters, fastrace_span, fastrace::flush))
    });
    c.bench_function(&format!("{group}/peer/fastrace_sampled_flooded"), |b| b.iter(fastrace_span));

    for (which, sampler) in [
        ("unsampled_root", opentelemetry_sdk::trace::Sampler::AlwaysOff),
        ("sampled_two_attributes", opentelemetry_sdk::trace::Sampler::AlwaysOn),
    ] {
        let provider = peers::otel_provider(sampler);
        let tracer = peers::otel_tracer(&provider);
        let otel_span = || {
            let mut span = tracer.span_builder("/users/{id}").with_kind(OtelKind::Server).start(&tracer);
            if span.is_recording() {
                span.set_attribute(KeyValue::new("http.method", "GET"));
                span.set_attribute(KeyValue::new("http.status_code", 200));
            }
            span.end();
            span
        };
        let force_flush = peers::otel_flush(&provider, group);
        if which == "unsampled_root" {
            c.bench_function(&format!("{group}/peer/opentelemetry_sdk_{which}"), |b| {
                b.iter(|| {
                    let span = otel_span();
                    black_box(&span);
                })
            });
        } else {
            c.bench_function(&format!("{group}/peer/opentelemetry_sdk_{which}"), |b| {
                b.iter_custom(|iters| chunked(&ThreadCpuTime, iters, otel_span, &force_flush))
            });
            c.bench_function(&format!("{group}/peer/opentelemetry_sdk_sampled_flooded"), |b| {
                b.iter(otel_span)
            });
            // The like-for-like of `current_span_lookup_sampled`: is the active span sampled?
            let active = opentelemetry::trace::mark_span_as_active(tracer.start("lookup"));
            c.bench_function(&format!("{group}/peer/opentelemetry_sdk_current_span_lookup"), |b| {
                b.iter(|| {
                    opentelemetry::trace::get_active_span(|span| black_box(span.span_context().is_sampled()))
                })
            });
            drop(active);
        }
        let _subscriber =
            tracing::subscriber::set_default(peers::tracing_opentelemetry_subscriber(&provider));
        c.bench_function(&format!("{group}/peer/tracing_opentelemetry_{which}"), |b| {
            b.iter(|| {
                let span = tracing::info_span!("/users/{id}", http.method = "GET", http.status_code = 200);
                black_box(&span);
            })
        });
        drop(_subscriber);
        if let Err(error) = provider.shutdown() {
            eprintln!("{group}: the OpenTelemetry provider did not shut down cleanly: {error}");
        }
    }

    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    c.bench_function(&format!("{group}/peer/tracing_registry_two_attributes"), |b| {
        b.iter(|| tracing::info_span!("/users/{id}", http.method = "GET", http.status_code = 200))
    });
    // The like-for-like of `current_span_lookup_*`: is there a current span? (`Dispatch::current_span`,
    // which, unlike `Span::current`, takes no reference to it.)
    let entered = tracing::info_span!("lookup").entered();
    c.bench_function(&format!("{group}/peer/tracing_registry_current_span_lookup"), |b| {
        b.iter(|| {
            tracing::dispatcher::get_default(|dispatch| black_box(dispatch.current_span()).id().is_some())
        })
    });
    drop(entered);
}
