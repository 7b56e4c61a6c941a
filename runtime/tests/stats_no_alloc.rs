//! Recording a tag combination this thread has recorded before allocates nothing. Its own test binary, for
//! the counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use oclayer_runtime::config::EnabledLayers;
use oclayer_runtime::layer::{self, PipeOutcome};
use oclayer_runtime::stats::{self, Aggregation, Float64Measure, Int64Measure, TagKey, TagMap, View};

/// Counts the allocations of the thread that switched counting on; other threads (the test harness) are
/// not counted.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting touches only
// const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System` underneath.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

static LATENCY: Float64Measure = Float64Measure::new("no_alloc/latency", "latency", "ms");
static BYTES: Int64Measure = Int64Measure::new("no_alloc/bytes", "bytes", "By");
const ROUTE: TagKey = TagKey::from_static("route");
const METHOD: TagKey = TagKey::from_static("method");
const STATUS: TagKey = TagKey::from_static("status");

fn record_all(map: &TagMap, route: &str) {
    stats::record_with_tags(
        &[LATENCY.m(12.5), BYTES.m(100)],
        &[(&ROUTE, route), (&METHOD, "GET"), (&STATUS, "200")],
    );
    stats::record(&[LATENCY.m(3.0), BYTES.m(-1)], map);
    stats::with_tags_sync(TagMap::new(), || stats::record(&[LATENCY.m(7.0)], map));
    layer::record_router(route, "GET", 200, 10, 2048, Duration::from_millis(3));
    layer::record_pipe(route, PipeOutcome::Ok, Duration::from_millis(2));
    layer::record_backend("users:80", route, "GET", None, 0, 10, Duration::from_millis(1));
    stats::health::record_export_error("memory");
    // Not a number: dropped and counted, without allocating either.
    stats::record_with_tags(&[LATENCY.m(f64::NAN)], &[(&ROUTE, route)]);
}

#[test]
fn recording_a_seen_tag_combination_does_not_allocate() {
    let keys = [ROUTE, METHOD, STATUS];
    stats::register(&[
        View::new("no_alloc/count", "d", &LATENCY, &keys, Aggregation::Count),
        View::new(
            "no_alloc/latency",
            "d",
            &LATENCY,
            &keys,
            Aggregation::distribution(&layer::LATENCY_BOUNDS_MS),
        ),
        View::new("no_alloc/sum", "d", &BYTES, &keys[..1], Aggregation::Sum),
        View::new("no_alloc/last", "d", &BYTES, &[], Aggregation::LastValue),
        View::new("no_alloc/sum_f", "d", &LATENCY, &[METHOD], Aggregation::Sum),
    ])
    .expect("valid views");
    layer::register_layer_views(EnabledLayers::default()).expect("layer views");

    let map = TagMap::new().with(ROUTE, "/users/{id}").with(METHOD, "POST");
    // The first record of each combination on this thread builds its rows.
    record_all(&map, "/users/{id}");

    let seen = allocations(|| {
        for _ in 0..1_000 {
            record_all(&map, "/users/{id}");
        }
    });
    assert_eq!(seen, 0, "recording seen combinations allocated {seen} times");

    // The counter does see the allocations of a combination new to the thread.
    let new = allocations(|| record_all(&map, "/orders/{id}"));
    assert!(new > 0, "a new combination allocates its rows");

    let data = stats::view_data("no_alloc/count").expect("registered");
    let users = data.rows.iter().find(|r| r.tags[0].as_deref() == Some("/users/{id}")).expect("row");
    assert_eq!(users.data, stats::AggregationData::Count(1_001));
}
