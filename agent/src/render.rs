//! Human-readable views of what the agent received: spans as trace trees, metrics as tables.
//!
//! Pure functions over records, so the binary, the demo gateway and tests print the same way.
//! They never fail: missing or odd data (no name, no end time, a parent that never arrived, a
//! parent cycle) is shown as such rather than rejected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use oclayer_proto::metrics::v1::distribution_value::bucket_options;
use oclayer_proto::metrics::v1::metric_descriptor::Type as MetricType;
use oclayer_proto::metrics::v1::{DistributionValue, SummaryValue, point};
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::trace::v1::span::SpanKind;
use oclayer_proto::trace::v1::{AttributeValue, Status, attribute_value};

use crate::record::{ReceivedMetric, ReceivedSpan, hex, service_name};

/// Nanoseconds since the Unix epoch, exact over the whole `Timestamp` range.
pub fn unix_nanos(ts: &Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// A duration in nanoseconds as people read it: "850 ns", "12 µs", "3.250 ms", "1.500 s".
pub fn format_nanos(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000 {
        format!("{sign}{n} ns")
    } else if n < 1_000_000 {
        format!("{sign}{} µs", n / 1_000)
    } else if n < 1_000_000_000 {
        format!("{sign}{}.{:03} ms", n / 1_000_000, (n / 1_000) % 1_000)
    } else {
        format!("{sign}{}.{:03} s", n / 1_000_000_000, (n / 1_000_000) % 1_000)
    }
}

/// The name of a canonical gRPC status code ("NOT_FOUND"), or `CODE_<n>` for one outside the set.
pub fn code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("CODE_{code}"), |n| (*n).to_owned())
}

/// A span status as text: "OK" when absent (the protocol's meaning), else the code's name and the
/// message when it adds something ("UNKNOWN: connection refused").
pub fn status_text(status: Option<&Status>) -> String {
    match status {
        None => "OK".to_owned(),
        Some(status) => {
            let name = code_name(status.code);
            if status.message.is_empty() || status.message == name {
                name
            } else {
                format!("{name}: {}", status.message)
            }
        }
    }
}

/// An attribute value as text: strings as they are, numbers and booleans in Rust's notation.
pub fn attribute_text(value: &AttributeValue) -> String {
    match &value.value {
        Some(attribute_value::Value::StringValue(s)) => s.value.clone(),
        Some(attribute_value::Value::IntValue(i)) => i.to_string(),
        Some(attribute_value::Value::BoolValue(b)) => b.to_string(),
        Some(attribute_value::Value::DoubleValue(d)) => d.to_string(),
        None => "<empty>".to_owned(),
    }
}

fn kind_text(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Unspecified) => "unspecified",
        Err(_) => "unknown kind",
    }
}

fn duration_text(span: &ReceivedSpan) -> String {
    match (&span.span.start_time, &span.span.end_time) {
        (Some(start), Some(end)) => {
            let nanos = unix_nanos(end) - unix_nanos(start);
            if nanos < 0 {
                format!("{} (ends before it starts)", format_nanos(nanos))
            } else {
                format_nanos(nanos)
            }
        }
        (None, _) => "no start time".to_owned(),
        (Some(_), None) => "no end time".to_owned(),
    }
}

/// One line describing a span: name, kind, duration, status, attributes.
fn span_line(span: &ReceivedSpan) -> String {
    let name = if span.name().is_empty() { "(unnamed)" } else { span.name() };
    let mut line = format!(
        "{name}  [{}]  {}  {}",
        kind_text(span.span.kind),
        duration_text(span),
        status_text(span.span.status.as_ref())
    );
    if let Some(attributes) = &span.span.attributes
        && !attributes.attribute_map.is_empty()
    {
        let pairs: Vec<String> =
            attributes.attribute_map.iter().map(|(k, v)| format!("{k}={}", attribute_text(v))).collect();
        let _ = write!(line, "  {{{}}}", pairs.join(", "));
    }
    line
}

fn start_key(span: &ReceivedSpan) -> (i128, Vec<u8>) {
    (span.span.start_time.as_ref().map_or(i128::MAX, unix_nanos), span.span.span_id.clone())
}

/// Renders spans as trace trees: one block per trace (earliest first), each span indented under
/// its parent and ordered by start time, with its kind, duration, status and attributes. A span
/// whose parent is not among `spans` is shown at the top of its trace with a note; so are spans
/// caught in a parent cycle.
///
/// ```text
/// trace 4bf92f3577b34da6a3ce929d0e0e4736 · 3 spans · service gateway
/// /users/{id}  [server]  12.250 ms  OK  {http.method=GET, http.status_code=200}
/// └─ pipe-/users/{id}  [unspecified]  10.100 ms  OK
///    └─ backend-/users/{id}  [client]  9.800 ms  NOT_FOUND
/// ```
pub fn trace_tree(spans: &[ReceivedSpan]) -> String {
    let mut traces: BTreeMap<&[u8], Vec<&ReceivedSpan>> = BTreeMap::new();
    for span in spans {
        traces.entry(span.span.trace_id.as_slice()).or_default().push(span);
    }
    let mut ordered: Vec<(&[u8], Vec<&ReceivedSpan>)> = traces.into_iter().collect();
    ordered.sort_by_key(|(id, spans)| (spans.iter().map(|s| start_key(s).0).min(), id.to_vec()));

    let mut out = String::new();
    for (index, (trace_id, spans)) in ordered.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        render_trace(&mut out, trace_id, spans);
    }
    out
}

fn render_trace(out: &mut String, trace_id: &[u8], spans: &[&ReceivedSpan]) {
    let count = spans.len();
    let _ = write!(out, "trace {} · {count} span{}", hex(trace_id), if count == 1 { "" } else { "s" });
    let services: HashSet<&str> = spans.iter().filter_map(|s| s.service_name()).collect();
    let mut services: Vec<&str> = services.into_iter().collect();
    services.sort_unstable();
    if !services.is_empty() {
        let _ = write!(out, " · service {}", services.join(", "));
    }
    out.push('\n');

    let present: HashSet<&[u8]> = spans.iter().map(|s| s.span.span_id.as_slice()).collect();
    let mut children: HashMap<&[u8], Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        let parent = span.span.parent_span_id.as_slice();
        if parent.is_empty() || !present.contains(parent) {
            roots.push(i);
        } else {
            children.entry(parent).or_default().push(i);
        }
    }
    let by_start = |a: &usize, b: &usize| start_key(spans[*a]).cmp(&start_key(spans[*b]));
    roots.sort_by(by_start);
    for list in children.values_mut() {
        list.sort_by(by_start);
    }

    let mut visited = vec![false; spans.len()];
    for &root in &roots {
        let note = orphan_note(spans[root]);
        render_span(out, spans, &children, &mut visited, root, "", "", &note);
    }
    // Whatever was not reached hangs off a parent cycle (a sends b as parent, b sends a).
    for i in 0..spans.len() {
        if !visited[i] {
            render_span(out, spans, &children, &mut visited, i, "", "", "  (in a parent cycle)");
        }
    }
}

fn orphan_note(span: &ReceivedSpan) -> String {
    match span.parent_span_id_hex() {
        Some(parent) => format!("  (parent {parent} not received)"),
        None => String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn render_span(
    out: &mut String,
    spans: &[&ReceivedSpan],
    children: &HashMap<&[u8], Vec<usize>>,
    visited: &mut [bool],
    index: usize,
    connector: &str,
    prefix: &str,
    note: &str,
) {
    if visited[index] {
        return;
    }
    visited[index] = true;
    let span = spans[index];
    let _ = writeln!(out, "{prefix}{connector}{}{note}", span_line(span));
    let child_prefix = format!(
        "{prefix}{}",
        match connector {
            "" => "",
            "├─ " => "│  ",
            _ => "   ",
        }
    );
    if let Some(list) = children.get(span.span.span_id.as_slice()) {
        let pending: Vec<usize> = list.iter().copied().filter(|&c| !visited[c]).collect();
        for (n, &child) in pending.iter().enumerate() {
            let connector = if n + 1 == pending.len() { "└─ " } else { "├─ " };
            render_span(out, spans, children, visited, child, connector, &child_prefix, "");
        }
    }
}

fn type_name(kind: i32) -> String {
    MetricType::try_from(kind).map_or_else(|_| format!("TYPE_{kind}"), |t| t.as_str_name().to_owned())
}

fn number(value: f64) -> String {
    // Whole numbers without a trailing ".0", others with up to 6 significant decimals.
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn distribution_text(d: &DistributionValue) -> String {
    let mut text = format!("count={} sum={}", d.count, number(d.sum));
    if d.count > 0 {
        // Counts stay far below 2^53 in practice; the mean is for reading, not for computing.
        #[allow(clippy::cast_precision_loss)]
        let mean = d.sum / d.count as f64;
        let _ = write!(text, " mean={}", number(mean));
    }
    let bounds: &[f64] = match d.bucket_options.as_ref().and_then(|o| o.r#type.as_ref()) {
        Some(bucket_options::Type::Explicit(explicit)) => &explicit.bounds,
        None => &[],
    };
    let filled: Vec<String> = d
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, bucket)| bucket.count != 0)
        .map(|(i, bucket)| {
            let low = if i == 0 {
                "-inf".to_owned()
            } else {
                bounds.get(i - 1).map_or("?".to_owned(), |b| number(*b))
            };
            let high = bounds.get(i).map_or("+inf".to_owned(), |b| number(*b));
            format!("[{low},{high}):{}", bucket.count)
        })
        .collect();
    if !d.buckets.is_empty() {
        let _ = write!(
            text,
            " buckets={} {}",
            d.buckets.len(),
            if filled.is_empty() { "(all empty)".to_owned() } else { filled.join(" ") }
        );
    }
    text
}

fn summary_text(s: &SummaryValue) -> String {
    let mut parts = Vec::new();
    if let Some(count) = s.count {
        parts.push(format!("count={count}"));
    }
    if let Some(sum) = s.sum {
        parts.push(format!("sum={}", number(sum)));
    }
    if let Some(snapshot) = &s.snapshot {
        for p in &snapshot.percentile_values {
            parts.push(format!("p{}={}", number(p.percentile), number(p.value)));
        }
    }
    if parts.is_empty() { "(empty summary)".to_owned() } else { parts.join(" ") }
}

fn point_text(value: Option<&point::Value>) -> String {
    match value {
        Some(point::Value::Int64Value(v)) => v.to_string(),
        Some(point::Value::DoubleValue(v)) => number(*v),
        Some(point::Value::DistributionValue(d)) => distribution_text(d),
        Some(point::Value::SummaryValue(s)) => summary_text(s),
        None => "(no value)".to_owned(),
    }
}

/// Renders metrics as tables: a heading per metric (name, type, unit, description) and one row
/// per point, a column per label key. A label without a value shows as `<unset>`; a row with
/// fewer values than keys (a sender bug) shows `?` in the missing columns.
///
/// ```text
/// opencensus.io/http/server/request_count  CUMULATIVE_INT64  unit 1  Count of HTTP requests started
///   http.method  http_server_route  value
///   GET          /users/{id}        42
/// ```
pub fn metrics_table(metrics: &[ReceivedMetric]) -> String {
    let mut out = String::new();
    for (index, received) in metrics.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let metric = &received.metric;
        let descriptor = metric.metric_descriptor.clone().unwrap_or_default();
        let name = if descriptor.name.is_empty() { "(unnamed metric)" } else { descriptor.name.as_str() };
        let _ = write!(out, "{name}  {}", type_name(descriptor.r#type));
        if !descriptor.unit.is_empty() {
            let _ = write!(out, "  unit {}", descriptor.unit);
        }
        if !descriptor.description.is_empty() {
            let _ = write!(out, "  {}", descriptor.description);
        }
        out.push('\n');

        let mut header: Vec<String> = descriptor.label_keys.iter().map(|k| k.key.clone()).collect();
        header.push("value".to_owned());
        let mut rows = vec![header];
        for series in &metric.timeseries {
            for point in &series.points {
                let mut row: Vec<String> = (0..descriptor.label_keys.len())
                    .map(|i| match series.label_values.get(i) {
                        Some(v) if v.has_value => v.value.clone(),
                        Some(_) => "<unset>".to_owned(),
                        None => "?".to_owned(),
                    })
                    .collect();
                row.push(point_text(point.value.as_ref()));
                rows.push(row);
            }
        }
        if rows.len() == 1 {
            out.push_str("  (no points)\n");
            continue;
        }
        let columns = rows[0].len();
        let widths: Vec<usize> =
            (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let mut line = String::from("  ");
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The service a batch of records came from, for headings: "gateway", or "unknown service".
pub fn service_label(node: Option<&oclayer_proto::agent::common::v1::Node>) -> String {
    service_name(node).unwrap_or("unknown service").to_owned()
}

#[cfg(test)]
mod tests {
    use oclayer_proto::trace::v1::span::Attributes;
    use oclayer_proto::trace::v1::{Span, TruncatableString};

    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp {
            seconds: 1_700_000_000 + millis / 1000,
            nanos: i32::try_from((millis % 1000) * 1_000_000).expect("small"),
        }
    }

    fn span(id: u8, parent: Option<u8>, name: &str, start_ms: i64, end_ms: i64) -> ReceivedSpan {
        ReceivedSpan {
            span: Span {
                trace_id: vec![0x0f; 16],
                span_id: vec![id; 8],
                parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                name: Some(TruncatableString { value: name.into(), truncated_byte_count: 0 }),
                start_time: Some(at(start_ms)),
                end_time: Some(at(end_ms)),
                ..Span::default()
            },
            node: None,
            resource: None,
            stream: 1,
        }
    }

    #[test]
    fn nests_children_under_parents_in_start_order() {
        let mut root = span(1, None, "/users/{id}", 0, 12);
        root.span.kind = SpanKind::Server as i32;
        root.span.attributes = Some(Attributes {
            attribute_map: [(
                "http.status_code".to_owned(),
                AttributeValue { value: Some(attribute_value::Value::IntValue(404)) },
            )]
            .into_iter()
            .collect(),
            dropped_attributes_count: 0,
        });
        root.span.status = Some(Status { code: 5, message: "NOT_FOUND".into() });
        let pipe = span(2, Some(1), "pipe-/users/{id}", 1, 11);
        let mut second = span(3, Some(2), "backend-/b", 6, 10);
        second.span.kind = SpanKind::Client as i32;
        second.span.status = Some(Status { code: 2, message: "connection refused".into() });
        let mut first = span(4, Some(2), "backend-/a", 2, 5);
        first.span.kind = SpanKind::Client as i32;
        let after_pipe = span(5, Some(1), "render", 11, 12);

        // Arrival order differs from start order, as it does on the wire (children end first).
        let tree = trace_tree(&[second, first, after_pipe, pipe, root]);
        assert_eq!(
            tree,
            "trace 0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f · 5 spans\n\
             /users/{id}  [server]  12.000 ms  NOT_FOUND  {http.status_code=404}\n\
             ├─ pipe-/users/{id}  [unspecified]  10.000 ms  OK\n\
             │  ├─ backend-/a  [client]  3.000 ms  OK\n\
             │  └─ backend-/b  [client]  4.000 ms  UNKNOWN: connection refused\n\
             └─ render  [unspecified]  1.000 ms  OK\n"
        );
    }

    #[test]
    fn shows_missing_parents_cycles_and_missing_times() {
        let orphan = span(7, Some(9), "late child", 0, 1);
        let a = span(1, Some(2), "a", 0, 1);
        let b = span(2, Some(1), "b", 0, 1);
        let mut open = span(3, None, "", 0, 0);
        open.span.end_time = None;
        let tree = trace_tree(&[orphan, a, b, open]);
        assert_eq!(
            tree,
            "trace 0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f · 4 spans\n\
             (unnamed)  [unspecified]  no end time  OK\n\
             late child  [unspecified]  1.000 ms  OK  (parent 0909090909090909 not received)\n\
             a  [unspecified]  1.000 ms  OK  (in a parent cycle)\n\
             └─ b  [unspecified]  1.000 ms  OK\n"
        );
    }

    #[test]
    fn separates_traces_earliest_first() {
        let mut later = span(1, None, "later", 100, 101);
        later.span.trace_id = vec![0x01; 16];
        let earlier = span(2, None, "earlier", 0, 1);
        let tree = trace_tree(&[later, earlier]);
        let headers: Vec<&str> = tree.lines().filter(|l| l.starts_with("trace ")).collect();
        assert_eq!(
            headers,
            [
                "trace 0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f · 1 span",
                "trace 01010101010101010101010101010101 · 1 span"
            ]
        );
    }

    #[test]
    fn formats_durations_for_reading() {
        assert_eq!(format_nanos(850), "850 ns");
        assert_eq!(format_nanos(12_345), "12 µs");
        assert_eq!(format_nanos(3_250_000), "3.250 ms");
        assert_eq!(format_nanos(1_500_000_000), "1.500 s");
        assert_eq!(format_nanos(-2_000_000), "-2.000 ms");
    }

    #[test]
    fn names_status_codes() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(17), "CODE_17");
        assert_eq!(code_name(-1), "CODE_-1");
    }
}
