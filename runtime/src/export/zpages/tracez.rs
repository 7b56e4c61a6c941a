//! `/debug/tracez`: the summary of span names by latency bucket and errors, and sample spans.
//!
//! Query parameters as OpenCensus zPages use them: `zspanname` picks a name, `ztype` what to list (0
//! running, 1 latency, 2 errors) and `zlatencybucket` the bucket (0 to 8) for `ztype=1`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use super::html::{Elapsed, Html, QueryValue, Timestamp, page, query_param};
use super::store::{
    LATENCY_BUCKETS, LATENCY_LABELS, MAX_SPAN_NAMES, SAMPLES_PER_BUCKET, SampleKind, SpanStore,
};
use crate::trace::{
    AttributeValue, Attributes, LinkKind, MessageEventKind, SpanData, SpanKind, TimeEventKind,
};

/// Counts of running (started, not yet ended) sampled spans by name, from the tracing core.
pub(super) type RunningSpans = dyn Fn() -> Vec<(String, u64)> + Send + Sync;

/// What the query asks for.
enum Request {
    Summary,
    Running(String),
    Samples(String, SampleKind),
}

fn parse(query: Option<&str>) -> Result<Request, String> {
    let Some(name) = query_param(query, "zspanname") else {
        return Ok(Request::Summary);
    };
    match query_param(query, "ztype").as_deref() {
        Some("0") => Ok(Request::Running(name)),
        Some("1") => {
            let bucket = query_param(query, "zlatencybucket");
            match bucket.as_deref().map(str::parse::<usize>) {
                Some(Ok(bucket)) if bucket < LATENCY_BUCKETS => {
                    Ok(Request::Samples(name, SampleKind::Latency(bucket)))
                }
                _ => Err(format!(
                    "zlatencybucket must be a latency bucket from 0 to {}, not {:?}",
                    LATENCY_BUCKETS - 1,
                    bucket.unwrap_or_default()
                )),
            }
        }
        Some("2") => Ok(Request::Samples(name, SampleKind::Errors)),
        other => Err(format!(
            "ztype must be 0 (running), 1 (latency) or 2 (errors), not {:?}",
            other.unwrap_or_default()
        )),
    }
}

/// The page for `query`, or the reason the query is malformed (for a 400).
pub(super) fn render(
    store: &SpanStore,
    running: Option<&RunningSpans>,
    query: Option<&str>,
) -> Result<String, String> {
    Ok(match parse(query)? {
        Request::Summary => page("Trace spans", |out| summary(out, store, running)),
        Request::Running(name) => page("Trace spans", |out| running_page(out, &name, running)),
        Request::Samples(name, kind) => page("Trace spans", |out| samples(out, store, &name, kind)),
    })
}

/// Counts of one row of the summary table.
#[derive(Default)]
struct Line {
    running: u64,
    latency: [u64; LATENCY_BUCKETS],
    errors: u64,
}

fn summary(out: &mut String, store: &SpanStore, running: Option<&RunningSpans>) -> fmt::Result {
    let (names, untracked) = store.summary();
    let mut lines: BTreeMap<String, Line> = names
        .into_iter()
        .map(|n| (n.name, Line { running: 0, latency: n.latency, errors: n.errors }))
        .collect();
    if let Some(running) = running {
        for (name, count) in running() {
            lines.entry(name).or_default().running += count;
        }
    }

    out.push_str(
        "<p>Sampled spans of this process since it started: finished spans that ended OK by latency, \
         and those that ended with an error status. A count links to the most recent samples \
         (up to ",
    );
    writeln!(out, "{SAMPLES_PER_BUCKET} per cell).</p>")?;
    if lines.is_empty() {
        out.push_str("<p>No sampled span has been seen yet.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th rowspan=\"2\">Span name</th><th rowspan=\"2\">Running</th>\
             <th colspan=\"9\">Latency (status OK)</th><th rowspan=\"2\">Errors</th></tr>\n<tr>",
        );
        for label in LATENCY_LABELS {
            write!(out, "<th>{}</th>", Html(label))?;
        }
        out.push_str("</tr>\n");
        for (name, line) in &lines {
            write!(out, "<tr><td>{}</td>", Html(name))?;
            if running.is_some() {
                count_cell(out, name, line.running, "ztype=0")?;
            } else {
                out.push_str("<td class=\"n muted\" title=\"not tracked\">–</td>");
            }
            for (bucket, count) in line.latency.iter().enumerate() {
                count_cell(out, name, *count, &format!("ztype=1&zlatencybucket={bucket}"))?;
            }
            count_cell(out, name, line.errors, "ztype=2")?;
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    if running.is_none() {
        out.push_str(
            "<p class=\"muted\">Running spans are not tracked: only finished spans reach this page.</p>\n",
        );
    }
    if untracked > 0 {
        writeln!(
            out,
            "<p class=\"muted\">{untracked} spans were not counted: only the first {MAX_SPAN_NAMES} span names \
             are tracked.</p>"
        )?;
    }
    Ok(())
}

/// A count, linking to its samples when there are any.
fn count_cell(out: &mut String, name: &str, count: u64, selector: &str) -> fmt::Result {
    if count == 0 {
        return out.write_str("<td class=\"n muted\">0</td>");
    }
    let href = format!("tracez?zspanname={}&{selector}", QueryValue(name));
    write!(out, "<td class=\"n\"><a href=\"{}\">{count}</a></td>", Html(&href))
}

fn running_page(out: &mut String, name: &str, running: Option<&RunningSpans>) -> fmt::Result {
    writeln!(out, "<h2>{}: running</h2>", Html(name))?;
    match running {
        Some(running) => {
            let count: u64 = running().into_iter().filter(|(n, _)| n == name).map(|(_, c)| c).sum();
            writeln!(out, "<p>{count} running. Samples are kept of finished spans only.</p>")?;
        }
        None => out.push_str("<p>Running spans are not tracked: only finished spans reach this page.</p>\n"),
    }
    out.write_str("<p><a href=\"tracez\">Back to the summary</a></p>\n")
}

fn samples(out: &mut String, store: &SpanStore, name: &str, kind: SampleKind) -> fmt::Result {
    let what = match kind {
        SampleKind::Latency(bucket) => format!("latency {}", LATENCY_LABELS[bucket]),
        SampleKind::Errors => "errors".to_owned(),
    };
    writeln!(out, "<h2>{}: {}</h2>", Html(name), Html(&what))?;
    match store.samples(name, kind) {
        None => writeln!(out, "<p>No span named {} has been seen.</p>", Html(name))?,
        Some(spans) if spans.is_empty() => out.push_str("<p>No samples.</p>\n"),
        Some(spans) => {
            writeln!(out, "<p>{} most recent, newest first.</p>", spans.len())?;
            for span in &spans {
                span_table(out, span)?;
            }
        }
    }
    out.write_str("<p><a href=\"tracez\">Back to the summary</a></p>\n")
}

fn span_table(out: &mut String, span: &SpanData) -> fmt::Result {
    out.push_str("<table>\n");
    writeln!(out, "<tr><th>Trace ID</th><td><code>{}</code></td></tr>", span.context.trace_id)?;
    writeln!(out, "<tr><th>Span ID</th><td><code>{}</code></td></tr>", span.context.span_id)?;
    out.push_str("<tr><th>Parent span ID</th><td>");
    match (span.parent_span_id, span.same_process_as_parent_span) {
        (None, _) => out.push_str("none (root span)"),
        (Some(parent), Some(false)) => write!(out, "<code>{parent}</code> (remote)")?,
        (Some(parent), _) => write!(out, "<code>{parent}</code>")?,
    }
    out.push_str("</td></tr>\n");
    let kind = match span.kind {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
    };
    writeln!(out, "<tr><th>Kind</th><td>{kind}</td></tr>")?;
    writeln!(out, "<tr><th>Start</th><td>{}</td></tr>", Timestamp(span.start_time))?;
    writeln!(out, "<tr><th>Duration</th><td>{}</td></tr>", Elapsed(span.duration()))?;
    write!(out, "<tr><th>Status</th><td>{}", span.status.code.name())?;
    if !span.status.message.is_empty() && span.status.message != span.status.code.name() {
        write!(out, ": {}", Html(&span.status.message))?;
    }
    out.push_str("</td></tr>\n<tr><th>Attributes</th><td>");
    attributes(out, &span.attributes)?;
    out.push_str("</td></tr>\n<tr><th>Events</th><td>");
    for event in &span.time_events {
        let offset = event.time.duration_since(span.start_time).unwrap_or_default();
        write!(out, "+{} ", Elapsed(offset))?;
        match &event.kind {
            TimeEventKind::Annotation { description, attributes: details } => {
                write!(out, "{}", Html(description))?;
                if !details.entries.is_empty() || details.dropped > 0 {
                    out.push_str(" (");
                    attributes(out, details)?;
                    out.push(')');
                }
            }
            TimeEventKind::MessageEvent { kind, id, uncompressed_size, compressed_size } => {
                let direction = match kind {
                    MessageEventKind::Sent => "sent",
                    MessageEventKind::Received => "received",
                    MessageEventKind::Unspecified => "message",
                };
                write!(out, "{direction} message {id}: {uncompressed_size} bytes")?;
                if *compressed_size > 0 {
                    write!(out, " ({compressed_size} compressed)")?;
                }
            }
        }
        out.push_str("<br>");
    }
    dropped(out, span.dropped_annotations, "annotations")?;
    dropped(out, span.dropped_message_events, "message events")?;
    out.push_str("</td></tr>\n<tr><th>Links</th><td>");
    for link in &span.links {
        let relation = match link.kind {
            LinkKind::Unspecified => "linked",
            LinkKind::ChildLinkedSpan => "child",
            LinkKind::ParentLinkedSpan => "parent",
        };
        write!(out, "{relation}: <code>{}/{}</code>", link.trace_id, link.span_id)?;
        if !link.attributes.entries.is_empty() {
            out.push_str(" (");
            attributes(out, &link.attributes)?;
            out.push(')');
        }
        out.push_str("<br>");
    }
    dropped(out, span.dropped_links, "links")?;
    writeln!(out, "</td></tr>\n<tr><th>Children</th><td>{}</td></tr>\n</table>", span.child_span_count)
}

fn attributes(out: &mut String, attributes: &Attributes) -> fmt::Result {
    for (i, (key, value)) in attributes.entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "{}=", Html(key))?;
        match value {
            AttributeValue::String(text) => write!(out, "&quot;{}&quot;", Html(text))?,
            AttributeValue::Int(n) => write!(out, "{n}")?,
            AttributeValue::Bool(b) => write!(out, "{b}")?,
            AttributeValue::Double(d) => write!(out, "{d}")?,
        }
    }
    if attributes.dropped > 0 {
        write!(out, " <span class=\"muted\">({} dropped)</span>", attributes.dropped)?;
    }
    Ok(())
}

fn dropped(out: &mut String, count: u32, what: &str) -> fmt::Result {
    if count > 0 {
        write!(out, "<span class=\"muted\">{count} {what} dropped</span><br>")?;
    }
    Ok(())
}
