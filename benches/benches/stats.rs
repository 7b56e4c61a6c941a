//! Recording stats: one count and one latency distribution tagged with 3 keys, the cost every request pays.
//! Targets: 40 ns a record on one thread; with 2 threads recording into the same views, under 2x that each.
//!
//! Side by side with opentelemetry_sdk's histogram record with 3 attributes (and its counter + histogram, the
//! like-for-like of our two views). The two-thread cases time each of two threads recording the same tag
//! combination into the same views at once (the slower thread's time counts).
//!
//! Every case is timed by the recording thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock:
//! on a shared machine the wall clock also counts the time other processes hold the core. Contention
//! between the two recording threads (cache lines bouncing) still shows: stalls are CPU time.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use oclayer::layer::{self, LATENCY_BOUNDS_MS};
use oclayer::stats::{self, Aggregation, Float64Measure, TagKey, View};
use oclayer_benches::thread_cpu_time;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

static LATENCY: Float64Measure = Float64Measure::new("bench/latency", "Request latency", "ms");
const ROUTE: TagKey = TagKey::from_static("route");
const METHOD: TagKey = TagKey::from_static("method");
const STATUS: TagKey = TagKey::from_static("status");

fn register_oclayer() {
    let keys = [ROUTE, METHOD, STATUS];
    stats::register(&[
        View::new("bench/request_count", "Requests", &LATENCY, &keys, Aggregation::Count),
        View::new("bench/latency", "Latency", &LATENCY, &keys, Aggregation::distribution(&LATENCY_BOUNDS_MS)),
    ])
    .expect("bench views are valid");
    layer::register_layer_views(oclayer::config::EnabledLayers::default()).expect("layer views");
}

#[inline]
fn record_oclayer(value: f64) {
    stats::record_with_tags(
        &[LATENCY.m(value)],
        &[(&ROUTE, "/users/{id}"), (&METHOD, "GET"), (&STATUS, "200")],
    );
}

/// The CPU time `iters` calls of `record` take on this thread.
fn timed(iters: u64, mut record: impl FnMut(u64)) -> Duration {
    let start = thread_cpu_time();
    for i in 0..iters {
        record(i);
    }
    thread_cpu_time() - start
}

/// Runs `record` `iters` times on each of `threads` threads started together; returns the slowest thread's
/// CPU time, i.e. the time per `iters` records of one thread while the others record too.
fn timed_on_threads(threads: usize, iters: u64, record: fn(u64)) -> Duration {
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                // First record outside the timing: a new thread's first record of a combination allocates.
                record(0);
                start.wait();
                timed(iters, record)
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().expect("bench thread")).max().unwrap_or_default()
}

/// Routes a gateway's handler thread records in turn: the row differs from one record to the next.
const ROUTES: [&str; 8] = [
    "/users/{id}",
    "/users/{id}/orders",
    "/orders/{id}",
    "/catalog",
    "/catalog/{sku}",
    "/cart",
    "/checkout",
    "/health",
];

fn oclayer_benches(c: &mut Criterion) {
    register_oclayer();
    record_oclayer(1.0);
    for route in ROUTES {
        stats::record_with_tags(&[LATENCY.m(1.0)], &[(&ROUTE, route), (&METHOD, "GET"), (&STATUS, "200")]);
    }
    let mut group = c.benchmark_group("stats/oclayer");
    group.bench_function("count+distribution, 3 tags, 1 thread", |b| {
        b.iter_custom(|iters| timed(iters, |i| record_oclayer(black_box((i % 300) as f64))))
    });
    group.bench_function("count+distribution, 3 tags, each of 2 threads", |b| {
        b.iter_custom(|iters| timed_on_threads(2, iters, |i| record_oclayer(black_box((i % 300) as f64))))
    });
    group.bench_function("count+distribution, 3 tags, 8 routes in turn, 1 thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, |i| {
                stats::record_with_tags(
                    &[LATENCY.m(black_box((i % 300) as f64))],
                    &[(&ROUTE, ROUTES[(i % 8) as usize]), (&METHOD, "GET"), (&STATUS, "200")],
                )
            })
        })
    });
    group.bench_function("record_pipe (2 views), 1 thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, |i| {
                layer::record_pipe(
                    black_box("/users/{id}"),
                    layer::PipeOutcome::Ok,
                    Duration::from_micros(black_box(i % 300_000)),
                )
            })
        })
    });
    group.bench_function("record_router (6 views), 1 thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, |i| {
                layer::record_router(
                    black_box("/users/{id}"),
                    "GET",
                    200,
                    128,
                    2048,
                    Duration::from_micros(black_box(i % 300_000)),
                )
            })
        })
    });
    // What an annotated call records: its tags are `&'static str`s, recognised by address on a repeat, and
    // the latency comes in ms from the layers' clock.
    group.bench_function("record_router_static (6 views), 1 thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, |i| {
                layer::record_router_static(
                    black_box("/users/{id}"),
                    "GET",
                    200,
                    128,
                    2048,
                    black_box((i % 300_000) as f64 / 1e3),
                )
            })
        })
    });
    // A pipe that calls two upstreams per request, as the demo gateway's does: the backend layer's records
    // alternate between two tag sets on one thread.
    group.bench_function("record_backend_static, 2 upstreams in turn (4 views), 1 thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, |i| {
                let (host, path) = if i % 2 == 0 {
                    ("users:8081", "/users/{id}")
                } else {
                    ("orders:8082", "/orders/by-user/{id}")
                };
                layer::record_backend_static(
                    black_box(host),
                    path,
                    "GET",
                    Some(200),
                    0,
                    512,
                    black_box((i % 300_000) as f64 / 1e3),
                )
            })
        })
    });
    group.finish();
}

fn otel_benches(c: &mut Criterion) {
    let provider = SdkMeterProvider::builder().with_reader(ManualReader::builder().build()).build();
    let meter = provider.meter("bench");
    let histogram = meter
        .f64_histogram("bench.latency")
        .with_unit("ms")
        .with_boundaries(LATENCY_BOUNDS_MS.to_vec())
        .build();
    let counter = meter.u64_counter("bench.requests").build();
    let attributes = [
        KeyValue::new("route", "/users/{id}"),
        KeyValue::new("method", "GET"),
        KeyValue::new("status", "200"),
    ];

    let mut group = c.benchmark_group("stats/opentelemetry_sdk");
    group.bench_function("histogram, 3 attributes, 1 thread", |b| {
        b.iter_custom(|iters| timed(iters, |i| histogram.record(black_box((i % 300) as f64), &attributes)))
    });
    group.bench_function("counter+histogram, 3 attributes, 1 thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, |i| {
                counter.add(1, &attributes);
                histogram.record(black_box((i % 300) as f64), &attributes);
            })
        })
    });
    group.bench_function("histogram, 3 attributes, each of 2 threads", |b| {
        b.iter_custom(|iters| {
            let start = Arc::new(Barrier::new(2));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (histogram, attributes, start) =
                        (histogram.clone(), attributes.clone(), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        timed(iters, |i| histogram.record(black_box((i % 300) as f64), &attributes))
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("bench thread")).max().unwrap_or_default()
        })
    });
    group.finish();
    drop(provider);
}

criterion_group!(benches, oclayer_benches, otel_benches);
criterion_main!(benches);
