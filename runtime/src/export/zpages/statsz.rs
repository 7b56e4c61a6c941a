//! `/debug/statsz`: every view with its current rows, from a fresh snapshot.

use std::fmt::{self, Write as _};

use super::html::{Html, Timestamp, page};
use crate::stats::{Aggregation, AggregationData, DistributionData, ViewData};

/// The page for `report`.
pub(super) fn render(report: &[ViewData]) -> String {
    let mut views: Vec<&ViewData> = report.iter().collect();
    views.sort_by(|a, b| a.view.name.cmp(&b.view.name));
    page("Stats", |out| {
        if views.is_empty() {
            return out.write_str("<p>No view is registered.</p>\n");
        }
        out.push_str("<ul>\n");
        for (i, data) in views.iter().enumerate() {
            writeln!(out, "<li><a href=\"#view-{i}\">{}</a></li>", Html(&data.view.name))?;
        }
        out.push_str("</ul>\n");
        for (i, data) in views.iter().enumerate() {
            view(out, i, data)?;
        }
        Ok(())
    })
}

fn view(out: &mut String, index: usize, data: &ViewData) -> fmt::Result {
    let view = &data.view;
    writeln!(out, "<h2 id=\"view-{index}\">{}</h2>", Html(&view.name))?;
    if !view.description.is_empty() {
        writeln!(out, "<p>{}</p>", Html(&view.description))?;
    }
    let aggregation = match &view.aggregation {
        Aggregation::Count => "count".to_owned(),
        Aggregation::Sum => "sum".to_owned(),
        Aggregation::LastValue => "last value".to_owned(),
        Aggregation::Distribution { bounds } => format!("distribution over {} buckets", bounds.len() + 1),
    };
    writeln!(
        out,
        "<p class=\"muted\">Measure {} (unit {}), {aggregation}, since {}.</p>",
        Html(&view.measure.name),
        Html(&view.measure.unit),
        Timestamp(data.start)
    )?;
    if data.rows.is_empty() {
        return out.write_str("<p>No data recorded yet.</p>\n");
    }

    out.push_str("<table>\n<tr>");
    for key in &view.tag_keys {
        write!(out, "<th>{}</th>", Html(key))?;
    }
    let distribution = matches!(view.aggregation, Aggregation::Distribution { .. });
    out.push_str(if distribution {
        "<th>Count</th><th>Mean</th><th>Min</th><th>Max</th><th>Sum</th><th>Buckets (count by upper bound)</th>"
    } else {
        "<th>Value</th>"
    });
    out.push_str("</tr>\n");

    let bounds: &[f64] = match &view.aggregation {
        Aggregation::Distribution { bounds } => bounds,
        _ => &[],
    };
    for row in &data.rows {
        out.push_str("<tr>");
        for value in &row.tags {
            match value {
                Some(value) => write!(out, "<td>{}</td>", Html(value))?,
                None => out.push_str("<td class=\"muted\">unset</td>"),
            }
        }
        match &row.data {
            AggregationData::Count(n) | AggregationData::SumInt64(n) | AggregationData::LastValueInt64(n) => {
                write!(out, "<td class=\"n\">{n}</td>")?
            }
            AggregationData::SumFloat64(v) | AggregationData::LastValueFloat64(v) => {
                write!(out, "<td class=\"n\">{v}</td>")?
            }
            AggregationData::Distribution(d) => distribution_cells(out, d, bounds)?,
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    Ok(())
}

fn distribution_cells(out: &mut String, d: &DistributionData, bounds: &[f64]) -> fmt::Result {
    write!(out, "<td class=\"n\">{}</td><td class=\"n\">{}</td>", d.count, d.mean())?;
    if d.count > 0 {
        write!(out, "<td class=\"n\">{}</td><td class=\"n\">{}</td>", d.min, d.max)?;
    } else {
        out.push_str("<td></td><td></td>");
    }
    write!(out, "<td class=\"n\">{}</td><td>", d.sum)?;
    // Only the buckets that hold something, so a 34-bucket latency view stays on one line.
    let mut first = true;
    for (i, count) in d.bucket_counts.iter().enumerate().filter(|(_, count)| **count != 0) {
        if !first {
            out.push_str(", ");
        }
        first = false;
        match bounds.get(i) {
            Some(bound) => write!(out, "&lt;{bound}: {count}")?,
            None => match bounds.last() {
                Some(last) => write!(out, "&ge;{last}: {count}")?,
                None => write!(out, "all: {count}")?,
            },
        }
    }
    out.push_str("</td>");
    Ok(())
}
