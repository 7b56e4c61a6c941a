//! Writes BENCHMARKS.md's generated tables from criterion's results (`benches/run.sh` runs it after the
//! benches).
//!
//! ```text
//! bench-report <criterion dir> <BENCHMARKS.md>
//! ```
//!
//! Reads every `<criterion dir>/**/new/benchmark.json` (the bench's full id, its throughput) and the
//! `estimates.json` beside it (median and median absolute deviation, per iteration); a bench found more
//! than once (`run.sh` runs every bench in rounds, each into its own directory) keeps the result with the
//! lower median: the host's noise only ever adds time. It then replaces the
//! text between each `<!-- bench-report:begin NAME -->` and `<!-- bench-report:end NAME -->` pair in the
//! markdown file with the table of that name, and the `environment` region with the machine, date and
//! toolchain. Text outside the regions (the hand-written analysis) is kept as it is. A region missing from
//! the file is an error that names it; a bench missing from the results shows as "not run" in its table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::Value;

/// One bench's result.
#[derive(Clone, Copy)]
struct Estimate {
    /// Median time per iteration, ns.
    median: f64,
    /// Median absolute deviation of the samples' per-iteration times, ns.
    mad: f64,
    /// Elements per iteration, when the bench declares a throughput.
    elements: Option<f64>,
}

/// Who a row measures: ratios are oclayer's primary row over each peer row.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    /// The row the ratios are computed from.
    Oclayer,
    /// Another oclayer row, shown without ratios.
    OclayerOther,
    Peer,
    /// A peer row compared with the named oclayer row instead of the primary one (a flooded peer beside
    /// oclayer's flooded case).
    PeerOf(&'static str),
    /// An uninstrumented baseline.
    Baseline,
}

struct Row {
    id: &'static str,
    label: &'static str,
    who: Who,
}

/// A goal from the issues, checked against the figures.
enum Target {
    /// `row` at most `max` ns, or at most `max` ns over `baseline`.
    MaxNs { row: &'static str, baseline: Option<&'static str>, max: f64, text: &'static str },
    /// `row` at most `max` times `peer`.
    MaxRatio { row: &'static str, peer: &'static str, max: f64, text: &'static str },
    /// `row` at least `min` elements a second.
    MinRate { row: &'static str, min: f64, text: &'static str },
    /// `row` at most `max_percent` above `baseline`.
    MaxOverhead { row: &'static str, baseline: &'static str, max_percent: f64, text: &'static str },
}

struct Table {
    /// The region's name in BENCHMARKS.md.
    name: &'static str,
    /// Throughput tables show elements a second instead of time.
    rate_unit: Option<&'static str>,
    rows: Vec<Row>,
    targets: Vec<Target>,
}

const fn row(id: &'static str, label: &'static str, who: Who) -> Row {
    Row { id, label, who }
}

/// The tables, one per scenario of issue 10, in BENCHMARKS.md's order.
fn tables() -> Vec<Table> {
    use Who::{Baseline, Oclayer, OclayerOther, Peer, PeerOf};
    vec![
        Table {
            name: "disabled",
            rate_unit: None,
            rows: vec![
                row("plain", "plain fn (baseline)", Baseline),
                row("oclayer/disabled", "oclayer `#[trace_layer(pipe)]`, layer off", Oclayer),
                row(
                    "oclayer/router_disabled",
                    "oclayer `#[trace_layer(router)]` with a request, off",
                    OclayerOther,
                ),
                row("fastrace/no_parent", "fastrace `#[trace]`, no root span", Peer),
                row("tracing/no_subscriber", "tracing `#[instrument]`, no subscriber", Peer),
                row("async/plain", "async fn (baseline)", Baseline),
                row("async/oclayer_disabled", "async: oclayer, layer off", OclayerOther),
                row("async/fastrace_no_parent", "async: fastrace, no root span", Peer),
                row("async/tracing_no_subscriber", "async: tracing, no subscriber", Peer),
                row("async/executor_plain", "async fn polled as a task (baseline)", Baseline),
                row(
                    "async/executor_oclayer_disabled",
                    "async polled as a task: oclayer, layer off",
                    OclayerOther,
                ),
            ],
            targets: vec![
                Target::MaxNs {
                    row: "oclayer/disabled",
                    baseline: Some("plain"),
                    max: 1.0,
                    text: "disabled layer ≤ 1 ns over the plain fn",
                },
                Target::MaxNs {
                    row: "async/oclayer_disabled",
                    baseline: Some("async/plain"),
                    max: 1.0,
                    text: "disabled layer on an async fn ≤ 1 ns over the plain async fn",
                },
                Target::MaxNs {
                    row: "async/executor_oclayer_disabled",
                    baseline: Some("async/executor_plain"),
                    max: 1.0,
                    text: "the same, both polled as an executor polls a task (moved, through the vtable)",
                },
            ],
        },
        Table {
            name: "unsampled",
            rate_unit: None,
            rows: vec![
                row("trace_cpu/unsampled_root", "oclayer: root span, sampler declines", Oclayer),
                row(
                    "trace_cpu/unsampled_child_of_current",
                    "oclayer: child of the current span",
                    OclayerOther,
                ),
                row(
                    "trace_cpu/peer/fastrace_unsampled_root",
                    "fastrace: root with an unsampled context",
                    Peer,
                ),
                row(
                    "trace_cpu/peer/opentelemetry_sdk_unsampled_root",
                    "opentelemetry_sdk: `AlwaysOff` sampler",
                    Peer,
                ),
                row(
                    "trace_cpu/peer/tracing_opentelemetry_unsampled_root",
                    "tracing + tracing-opentelemetry: `AlwaysOff`",
                    Peer,
                ),
                row("plain", "plain fn (baseline of the rows below)", Baseline),
                row(
                    "oclayer/unsampled",
                    "oclayer `#[trace_layer(pipe)]` call, unsampled, with measures",
                    OclayerOther,
                ),
                row(
                    "oclayer/router_unsampled",
                    "oclayer `#[trace_layer(router)]` call with a request",
                    OclayerOther,
                ),
            ],
            targets: vec![
                Target::MaxNs {
                    row: "trace_cpu/unsampled_root",
                    baseline: None,
                    max: 5.0,
                    text: "unsampled span ≤ 5 ns",
                },
                Target::MaxNs {
                    row: "oclayer/unsampled",
                    baseline: Some("plain"),
                    max: 50.0,
                    text: "unsampled annotated call ≤ 50 ns over the plain fn",
                },
            ],
        },
        Table {
            name: "current",
            rate_unit: None,
            rows: vec![
                row(
                    "trace_cpu/current_span_lookup_sampled",
                    "oclayer: `current_span().is_sampled()`, a sampled span entered",
                    Oclayer,
                ),
                row(
                    "trace_cpu/current_span_lookup_unsampled",
                    "oclayer: the same, an unsampled span entered",
                    OclayerOther,
                ),
                row(
                    "trace_cpu/peer/opentelemetry_sdk_current_span_lookup",
                    "opentelemetry: `get_active_span(|s| s.span_context().is_sampled())`",
                    Peer,
                ),
                row(
                    "trace_cpu/peer/tracing_registry_current_span_lookup",
                    "tracing, registry: `Dispatch::current_span()`",
                    Peer,
                ),
                row(
                    "trace_cpu/current_span_clone_sampled",
                    "oclayer: `Span::current()`, an owned handle, sampled",
                    OclayerOther,
                ),
                row(
                    "trace_cpu/current_span_clone_unsampled",
                    "oclayer: `Span::current()`, an owned handle, unsampled",
                    OclayerOther,
                ),
            ],
            targets: vec![
                Target::MaxNs {
                    row: "trace_cpu/current_span_lookup_sampled",
                    baseline: None,
                    max: 2.0,
                    text: "current-span lookup ≤ 2 ns, sampled",
                },
                Target::MaxNs {
                    row: "trace_cpu/current_span_lookup_unsampled",
                    baseline: None,
                    max: 2.0,
                    text: "current-span lookup ≤ 2 ns, unsampled",
                },
            ],
        },
        Table {
            name: "sampled",
            rate_unit: None,
            rows: vec![
                row(
                    "trace_cpu/sampled_two_attributes",
                    "oclayer: sampled root, 2 attributes, queued (pipeline keeps up)",
                    Oclayer,
                ),
                row(
                    "trace_cpu/peer/fastrace_sampled_two_attributes",
                    "fastrace: root, 2 properties, reported (collector keeps up)",
                    Peer,
                ),
                row(
                    "trace_cpu/peer/opentelemetry_sdk_sampled_two_attributes",
                    "opentelemetry_sdk: span, 2 attributes, batch processor (keeps up)",
                    Peer,
                ),
                row(
                    "trace_cpu/sampled_no_pipeline",
                    "oclayer: the same span, no pipeline installed",
                    OclayerOther,
                ),
                row(
                    "trace_cpu/sampled_flooded",
                    "oclayer: the same span flat out, the queue full (overload, drops)",
                    OclayerOther,
                ),
                row(
                    "trace_cpu/peer/fastrace_sampled_flooded",
                    "fastrace: the same flat out (overload)",
                    PeerOf("trace_cpu/sampled_flooded"),
                ),
                row(
                    "trace_cpu/peer/opentelemetry_sdk_sampled_flooded",
                    "opentelemetry_sdk: the same flat out (overload)",
                    PeerOf("trace_cpu/sampled_flooded"),
                ),
                row(
                    "trace_cpu/peer/tracing_registry_two_attributes",
                    "tracing: span with 2 fields, registry",
                    Peer,
                ),
                row(
                    "trace_cpu/peer/tracing_opentelemetry_sampled_two_attributes",
                    "tracing + tracing-opentelemetry: span with 2 fields",
                    Peer,
                ),
                row("plain", "plain fn (baseline of the rows below)", Baseline),
                row(
                    "oclayer/sampled",
                    "oclayer `#[trace_layer(pipe)]` call, sampled, with measures (pipeline keeps up)",
                    OclayerOther,
                ),
                row(
                    "fastrace/root_per_call",
                    "fastrace: root + `#[trace]` span per call (collector keeps up)",
                    PeerOf("oclayer/sampled"),
                ),
                row("tracing/registry", "tracing `#[instrument]`, registry", PeerOf("oclayer/sampled")),
                row(
                    "oclayer/sampled_flooded",
                    "oclayer: the same call flat out, the queue full (overload)",
                    OclayerOther,
                ),
                row(
                    "fastrace/root_per_call_flooded",
                    "fastrace: the same flat out (overload)",
                    PeerOf("oclayer/sampled_flooded"),
                ),
            ],
            targets: vec![
                Target::MaxNs {
                    row: "trace_cpu/sampled_two_attributes",
                    baseline: None,
                    max: 60.0,
                    text: "sampled span ≤ 60 ns",
                },
                Target::MaxRatio {
                    row: "trace_cpu/sampled_two_attributes",
                    peer: "trace_cpu/peer/fastrace_sampled_two_attributes",
                    max: 1.0,
                    text: "sampled span ≤ 1.0× fastrace",
                },
                Target::MaxRatio {
                    row: "trace_cpu/sampled_two_attributes",
                    peer: "trace_cpu/peer/opentelemetry_sdk_sampled_two_attributes",
                    max: 0.25,
                    text: "sampled span ≤ 0.25× the OpenTelemetry SDK",
                },
                Target::MaxNs {
                    row: "oclayer/sampled",
                    baseline: Some("plain"),
                    max: 120.0,
                    text: "sampled annotated call ≤ 120 ns over the plain fn",
                },
            ],
        },
        Table {
            name: "tree",
            rate_unit: None,
            rows: vec![
                row("tree/oclayer_spans", "oclayer: three spans, no HTTP (like the peers)", Oclayer),
                row(
                    "tree/oclayer_http_spans",
                    "oclayer: the same with the layers' HTTP work (attributes, context in and out)",
                    OclayerOther,
                ),
                row("tree/oclayer", "oclayer: that with the layers' measures (12 views)", OclayerOther),
                row("tree/fastrace", "fastrace: root + 2 `#[trace]` (collector keeps up)", Peer),
                row("tree/tracing_registry", "tracing `#[instrument]` ×3, registry", Peer),
                row("tree/tracing_opentelemetry", "tracing `#[instrument]` ×3, tracing-opentelemetry", Peer),
                row("tree/opentelemetry_sdk", "opentelemetry_sdk: 3 nested `in_span`", Peer),
                row(
                    "tree/oclayer_flooded",
                    "oclayer: the three spans flat out, the queue full (overload, drops)",
                    OclayerOther,
                ),
                row(
                    "tree/fastrace_flooded",
                    "fastrace: the same flat out (overload)",
                    PeerOf("tree/oclayer_flooded"),
                ),
            ],
            targets: vec![Target::MaxRatio {
                row: "tree/oclayer_spans",
                peer: "tree/fastrace",
                max: 1.0,
                text: "sampled spans ≤ 1.0× fastrace",
            }],
        },
        Table {
            name: "stats",
            rate_unit: None,
            rows: vec![
                row(
                    "stats/oclayer/count+distribution, 3 tags, 1 thread",
                    "oclayer: count + distribution",
                    Oclayer,
                ),
                row(
                    "stats/oclayer/count+distribution, 3 tags, 8 routes in turn, 1 thread",
                    "oclayer: the same, 8 routes in turn",
                    OclayerOther,
                ),
                row(
                    "stats/oclayer/record_pipe (2 views), 1 thread",
                    "oclayer: `layer::record_pipe` (2 views)",
                    OclayerOther,
                ),
                row(
                    "stats/oclayer/record_router (6 views), 1 thread",
                    "oclayer: `layer::record_router` (6 views)",
                    OclayerOther,
                ),
                row(
                    "stats/oclayer/record_backend_static, 2 upstreams in turn (4 views), 1 thread",
                    "oclayer: `layer::record_backend_static`, 2 upstreams in turn (4 views)",
                    OclayerOther,
                ),
                row(
                    "stats/opentelemetry_sdk/histogram, 3 attributes, 1 thread",
                    "opentelemetry_sdk: histogram",
                    Peer,
                ),
                row(
                    "stats/opentelemetry_sdk/counter+histogram, 3 attributes, 1 thread",
                    "opentelemetry_sdk: counter + histogram",
                    Peer,
                ),
            ],
            targets: vec![
                Target::MaxNs {
                    row: "stats/oclayer/count+distribution, 3 tags, 1 thread",
                    baseline: None,
                    max: 40.0,
                    text: "count + distribution ≤ 40 ns",
                },
                Target::MaxRatio {
                    row: "stats/oclayer/count+distribution, 3 tags, 1 thread",
                    peer: "stats/opentelemetry_sdk/histogram, 3 attributes, 1 thread",
                    max: 0.2,
                    text: "measure record ≤ 0.2× the OpenTelemetry histogram",
                },
            ],
        },
        Table {
            name: "threads",
            rate_unit: None,
            rows: vec![
                row(
                    "stats/oclayer/count+distribution, 3 tags, each of 2 threads",
                    "oclayer: each of 2 threads, same views",
                    Oclayer,
                ),
                row("stats/oclayer/count+distribution, 3 tags, 1 thread", "oclayer: 1 thread", OclayerOther),
                row(
                    "stats/opentelemetry_sdk/histogram, 3 attributes, each of 2 threads",
                    "opentelemetry_sdk histogram: each of 2 threads",
                    Peer,
                ),
            ],
            targets: vec![Target::MaxRatio {
                row: "stats/oclayer/count+distribution, 3 tags, each of 2 threads",
                peer: "stats/oclayer/count+distribution, 3 tags, 1 thread",
                max: 2.0,
                text: "2 threads into one view < 2× one thread",
            }],
        },
        Table {
            name: "ocagent",
            rate_unit: Some("spans/s"),
            rows: vec![
                row("ocagent/discard", "discarding loopback receiver", Oclayer),
                row("ocagent/discard_gzip", "the same, `enable_compression`", OclayerOther),
                row("ocagent/agent", "`oclayer-agent` decoding every span", OclayerOther),
            ],
            targets: vec![Target::MinRate {
                row: "ocagent/discard",
                min: 1e6,
                text: "≥ 1 M spans/s exported",
            }],
        },
        Table {
            name: "gateway",
            rate_unit: None,
            rows: vec![
                row("gateway/disabled", "wall clock: every layer off (baseline)", Baseline),
                row("gateway/unsampled", "wall clock: every layer on, `sample_rate` 0", OclayerOther),
                row("gateway/sampled", "wall clock: every layer on, `sample_rate` 100", OclayerOther),
                row("gateway_cpu/disabled", "process CPU: every layer off (baseline)", Baseline),
                row("gateway_cpu/unsampled", "process CPU: every layer on, `sample_rate` 0", OclayerOther),
                row("gateway_cpu/sampled", "process CPU: every layer on, `sample_rate` 100", OclayerOther),
            ],
            targets: vec![
                Target::MaxOverhead {
                    row: "gateway/unsampled",
                    baseline: "gateway/disabled",
                    max_percent: 2.0,
                    text: "p50 overhead ≤ 2 %, unsampled (wall clock)",
                },
                Target::MaxOverhead {
                    row: "gateway/sampled",
                    baseline: "gateway/disabled",
                    max_percent: 2.0,
                    text: "p50 overhead ≤ 2 %, sampled (wall clock)",
                },
                Target::MaxOverhead {
                    row: "gateway_cpu/unsampled",
                    baseline: "gateway_cpu/disabled",
                    max_percent: 2.0,
                    text: "CPU overhead ≤ 2 %, unsampled",
                },
                Target::MaxOverhead {
                    row: "gateway_cpu/sampled",
                    baseline: "gateway_cpu/disabled",
                    max_percent: 2.0,
                    text: "CPU overhead ≤ 2 %, sampled",
                },
            ],
        },
    ]
}

// ---- reading criterion's results --------------------------------------------------------------------------

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

fn number(value: &Value, pointer: &str, path: &Path) -> Result<f64, String> {
    value.pointer(pointer).and_then(Value::as_f64).ok_or_else(|| {
        format!("{} has no number at {pointer}: was it written by criterion 0.8?", path.display())
    })
}

/// The results under a criterion directory.
#[derive(Default)]
struct Results {
    /// Every bench's best round, by the bench's full id.
    by_id: HashMap<String, Estimate>,
    /// How many results were found for each id: the rounds it ran.
    runs: HashMap<String, usize>,
}

impl Results {
    /// Adds a result for `id`, kept if it is the first or has a lower median than the one kept so far.
    fn add(&mut self, id: &str, estimate: Estimate) {
        *self.runs.entry(id.to_owned()).or_default() += 1;
        let kept = self.by_id.entry(id.to_owned()).or_insert(estimate);
        if estimate.median < kept.median {
            *kept = estimate;
        }
    }

    /// The most rounds any bench ran.
    fn rounds(&self) -> usize {
        self.runs.values().copied().max().unwrap_or(0)
    }
}

/// Every `new/benchmark.json` under `dir`, the best round of each bench by its full id.
fn read_results(dir: &Path) -> Result<Results, String> {
    let mut results = Results::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.ends_with("new/benchmark.json") {
                let benchmark = read_json(&path)?;
                let Some(id) = benchmark.get("full_id").and_then(Value::as_str) else {
                    return Err(format!("{} has no full_id", path.display()));
                };
                let estimates_path = path.with_file_name("estimates.json");
                let estimates = read_json(&estimates_path)?;
                let elements = benchmark.pointer("/throughput/Elements").and_then(Value::as_f64);
                let estimate = Estimate {
                    median: number(&estimates, "/median/point_estimate", &estimates_path)?,
                    mad: number(&estimates, "/median_abs_dev/point_estimate", &estimates_path)?,
                    elements,
                };
                results.add(id, estimate);
            }
        }
    }
    Ok(results)
}

// ---- writing the tables ------------------------------------------------------------------------------------

/// Nanoseconds with about three significant digits, in ns, µs or ms.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns >= 100.0 {
        format!("{ns:.0} ns")
    } else if ns >= 10.0 {
        format!("{ns:.1} ns")
    } else {
        format!("{ns:.2} ns")
    }
}

fn rate(per_second: f64, unit: &str) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M {unit}", per_second / 1e6)
    } else {
        format!("{:.0} K {unit}", per_second / 1e3)
    }
}

fn ratio(r: f64) -> String {
    if r >= 10.0 { format!("{r:.0}×") } else { format!("{r:.2}×") }
}

/// Elements a second at the median time, for throughput rows.
fn per_second(estimate: &Estimate) -> Option<f64> {
    estimate.elements.map(|elements| elements / (estimate.median * 1e-9))
}

fn render(table: &Table, results: &HashMap<String, Estimate>) -> String {
    let get = |id: &str| results.get(id);
    let primary = table.rows.iter().find(|r| r.who == Who::Oclayer).and_then(|r| get(r.id));
    let mut out = String::new();
    let value_header = if table.rate_unit.is_some() { "median throughput" } else { "median" };
    let _ = writeln!(out, "| case | bench id | {value_header} | spread (MAD) | oclayer ÷ this |");
    out.push_str("|---|---|---:|---:|---:|\n");
    for row in &table.rows {
        let Some(estimate) = get(row.id) else {
            let _ = writeln!(out, "| {} | `{}` | not run | | |", row.label, row.id);
            continue;
        };
        let value = match (table.rate_unit, per_second(estimate)) {
            (Some(unit), Some(rate_value)) => {
                format!("{} ({}/iter)", rate(rate_value, unit), time(estimate.median))
            }
            _ => time(estimate.median),
        };
        let spread = format!("± {}", time(estimate.mad));
        let versus = match (row.who, primary) {
            (Who::Peer, Some(primary)) => ratio(primary.median / estimate.median),
            (Who::PeerOf(of), _) => get(of).map_or_else(String::new, |of| ratio(of.median / estimate.median)),
            _ => String::new(),
        };
        let label = if row.who == Who::Oclayer { format!("**{}**", row.label) } else { row.label.to_owned() };
        let _ = writeln!(out, "| {label} | `{}` | {value} | {spread} | {versus} |", row.id);
    }
    out.push('\n');
    for target in &table.targets {
        let _ = writeln!(out, "- {}", check(target, results));
    }
    out
}

/// One target's line: what was asked, what was measured, met or missed.
fn check(target: &Target, results: &HashMap<String, Estimate>) -> String {
    let get = |id: &str| results.get(id).copied();
    let verdict = |met: bool| if met { "✓ met" } else { "✗ **missed**" };
    match *target {
        Target::MaxNs { row, baseline, max, text } => match (get(row), baseline.map(get)) {
            (Some(r), None) => format!("Target {text}: {} {}", time(r.median), verdict(r.median <= max)),
            (Some(r), Some(Some(b))) => {
                let over = r.median - b.median;
                format!(
                    "Target {text}: {} over {} {}",
                    time(over.max(0.0)),
                    time(b.median),
                    verdict(over <= max)
                )
            }
            _ => format!("Target {text}: not run"),
        },
        Target::MaxRatio { row, peer, max, text } => match (get(row), get(peer)) {
            (Some(r), Some(p)) => {
                let measured = r.median / p.median;
                format!("Target {text}: {} {}", ratio(measured), verdict(measured <= max))
            }
            _ => format!("Target {text}: not run"),
        },
        Target::MinRate { row, min, text } => match get(row).as_ref().and_then(per_second) {
            Some(measured) => {
                format!("Target {text}: {} {}", rate(measured, "spans/s"), verdict(measured >= min))
            }
            None => format!("Target {text}: not run"),
        },
        Target::MaxOverhead { row, baseline, max_percent, text } => match (get(row), get(baseline)) {
            (Some(r), Some(b)) => {
                let percent = (r.median / b.median - 1.0) * 100.0;
                // A difference smaller than the samples' spread says nothing either way: say so next to the
                // verdict, so that a noisy run is not read as a result.
                let noise = if r.mad.max(b.mad) > (r.median - b.median).abs() {
                    " (smaller than the spread: not conclusive)"
                } else {
                    ""
                };
                // More work measured faster than less: the baseline's samples were disturbed, and no
                // verdict can be read from the pair.
                if percent < 0.0 && noise.is_empty() {
                    return format!(
                        "Target {text}: {percent:+.1} %: not conclusive (faster than the baseline beyond the \
                         spread: the run was disturbed; run it again)"
                    );
                }
                format!("Target {text}: {percent:+.1} % {}{noise}", verdict(percent <= max_percent))
            }
            _ => format!("Target {text}: not run"),
        },
    }
}

// ---- the environment ---------------------------------------------------------------------------------------

fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => format!("(`{program}` unavailable)"),
    }
}

fn environment(rounds: usize) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split(':').nth(1)))
        .map_or_else(|| "unknown CPU".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned());
    let rounds = match rounds {
        0 => "no results found".to_owned(),
        1 => "every bench ran once".to_owned(),
        n => format!(
            "every bench ran {n} times, one round after the other; each row is its round with the lowest \
             median, the spread that round's"
        ),
    };
    format!(
        "- Date: {}\n- Machine: {model}, {cores} cores, Linux {}; load average at the end of the run: {load}\n\
         - Toolchain: {}, release profile (`cargo bench`)\n\
         - Rounds: {rounds}\n\
         - Regenerate: `benches/run.sh` (about 20 minutes on the 2-core VM: 5 to 7 building, 7 running a \
         round; every bench in 2 rounds, then this report)\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command_output("uname", &["-r"]),
        command_output("rustc", &["--version"]),
    )
}

// ---- the markdown regions ----------------------------------------------------------------------------------

/// `text` with the region `name` replaced by `content`.
fn replace_region(text: &str, name: &str, content: &str, file: &Path) -> Result<String, String> {
    let begin = format!("<!-- bench-report:begin {name} -->");
    let end = format!("<!-- bench-report:end {name} -->");
    let missing = || {
        format!(
            "{} has no region {name}: add the lines `{begin}` and `{end}` where its table goes",
            file.display()
        )
    };
    let start = text.find(&begin).ok_or_else(missing)? + begin.len();
    let stop = start + text[start..].find(&end).ok_or_else(missing)?;
    Ok(format!("{}\n{}{}", &text[..start], content, &text[stop..]))
}

fn run(criterion_dir: &Path, markdown: &Path) -> Result<(), String> {
    let results = read_results(criterion_dir)?;
    let mut text =
        std::fs::read_to_string(markdown).map_err(|e| format!("cannot read {}: {e}", markdown.display()))?;
    text = replace_region(&text, "environment", &environment(results.rounds()), markdown)?;
    let results = results.by_id;
    for table in tables() {
        let rendered = render(&table, &results);
        println!("## {}\n{rendered}", table.name);
        text = replace_region(&text, table.name, &rendered, markdown)?;
    }
    std::fs::write(markdown, text).map_err(|e| format!("cannot write {}: {e}", markdown.display()))
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [criterion_dir, markdown] = args.as_slice() else {
        eprintln!("usage: bench-report <criterion dir, e.g. target/criterion> <BENCHMARKS.md>");
        return ExitCode::from(2);
    };
    match run(criterion_dir, markdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-report: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_inside_the_region() {
        let text = "intro\n<!-- bench-report:begin t -->\nold\n<!-- bench-report:end t -->\nanalysis\n";
        let out = replace_region(text, "t", "new\n", Path::new("B.md")).expect("region exists");
        assert_eq!(out, "intro\n<!-- bench-report:begin t -->\nnew\n<!-- bench-report:end t -->\nanalysis\n");
    }

    #[test]
    fn a_missing_region_names_the_markers() {
        let error = replace_region("no markers", "tree", "x", Path::new("B.md")).expect_err("no region");
        assert!(error.contains("<!-- bench-report:begin tree -->"), "{error}");
    }

    #[test]
    fn a_bench_run_in_several_rounds_keeps_its_lowest_median() {
        let mut results = Results::default();
        let estimate = |median| Estimate { median, mad: median / 10.0, elements: None };
        results.add("a", estimate(90.0));
        results.add("b", estimate(5.0));
        results.add("a", estimate(60.0));
        results.add("b", estimate(7.0));
        results.add("a", estimate(75.0));
        assert_eq!(results.rounds(), 3, "the most results of one id");
        assert_eq!(results.by_id["a"].median, 60.0);
        assert_eq!(results.by_id["a"].mad, 6.0, "the spread of the round kept");
        assert_eq!(results.by_id["b"].median, 5.0);
    }

    #[test]
    fn targets_read_against_the_figures() {
        let results = HashMap::from([
            ("a".to_owned(), Estimate { median: 30.0, mad: 1.0, elements: None }),
            ("b".to_owned(), Estimate { median: 100.0, mad: 1.0, elements: None }),
            ("r".to_owned(), Estimate { median: 10_000_000.0, mad: 1.0, elements: Some(30_000.0) }),
        ]);
        let met = check(&Target::MaxRatio { row: "a", peer: "b", max: 0.5, text: "t" }, &results);
        assert_eq!(met, "Target t: 0.30× ✓ met");
        let missed = check(&Target::MaxNs { row: "a", baseline: None, max: 5.0, text: "t" }, &results);
        assert_eq!(missed, "Target t: 30.0 ns ✗ **missed**");
        let over =
            check(&Target::MaxOverhead { row: "b", baseline: "a", max_percent: 2.0, text: "t" }, &results);
        assert_eq!(over, "Target t: +233.3 % ✗ **missed**");
        let faster =
            check(&Target::MaxOverhead { row: "a", baseline: "b", max_percent: 2.0, text: "t" }, &results);
        assert!(faster.starts_with("Target t: -70.0 %: not conclusive"), "{faster}");
        assert!(!faster.contains("met"), "a disturbed baseline gives no verdict: {faster}");
        let throughput = check(&Target::MinRate { row: "r", min: 1e6, text: "t" }, &results);
        assert_eq!(throughput, "Target t: 3.00 M spans/s ✓ met");
        let absent = check(&Target::MinRate { row: "x", min: 1e6, text: "t" }, &results);
        assert_eq!(absent, "Target t: not run");
    }
}
