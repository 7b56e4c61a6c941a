//! The load and fault soak (`--soak SECS`, run by `tests/soak/run.sh`): the demo under concurrent load for
//! a fixed time while the embedded agent is killed and restarted twice and slowed down once, then an
//! account of every span.
//!
//! The faults follow a fixed schedule in fractions of the run, so runs compare: the agent is killed at 15 %
//! and restarted at 25 %, killed at 40 % and restarted at 50 %, and reads each message only after
//! [`SLOW_PER_MESSAGE`] from 65 % to 80 % (HTTP/2 flow control then pushes back on the exporter). With
//! `--no-faults` the same load runs against an agent that stays up, for a baseline.
//!
//! The account: every span handed to the exporters must be confirmed by the agent (received on a stream
//! that ended cleanly, counted once however often it was sent), counted as dropped by the ocagent
//! exporter's bound, or reported undelivered by the shutdown. Any difference fails the run. The agent also
//! says how many spans it saw in all (re-sends after a broken stream included) and how many distinct ones;
//! the distinct spans beyond the confirmed ones were read on a stream that broke and later dropped by the
//! bound, so the agent has them although the exporter counted them lost.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oclayer::stats::{AggregationData, view_data};
use oclayer_agent::AgentHandle;

use super::backend;
use super::cli::Options;
use super::demo::{Demo, DemoError};
use super::load;

/// How long the slowed-down agent holds each message.
pub const SLOW_PER_MESSAGE: Duration = Duration::from_millis(100);

/// Phases of the run, as fractions of its duration: `(start, end, what)`.
const FAULTS: [(f64, f64, Fault); 3] =
    [(0.15, 0.25, Fault::Down), (0.40, 0.50, Fault::Down), (0.65, 0.80, Fault::Slow)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Killed as a crash would, restarted at the end.
    Down,
    /// Reading each message only after [`SLOW_PER_MESSAGE`].
    Slow,
}

/// One answered request: when it was sent (since the start of the load) and how long it took.
#[derive(Clone, Copy)]
struct Sample {
    sent: Duration,
    latency: Duration,
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    samples: Vec<Sample>,
    errors: u64,
    first_error: Option<String>,
    non_2xx: u64,
}

/// Runs the soak for `duration` and prints its figures. Fails when the span account does not add up or
/// the pipeline could not be started.
pub async fn run(options: Options, duration: Duration, faults: bool) -> Result<(), DemoError> {
    let demo = Demo::start(&options).await?;
    let Some(agent) = demo.agent.as_ref() else {
        return Err(DemoError::Config(
            "--soak needs the embedded agent (it kills and restarts it): leave out --agent-address".into(),
        ));
    };
    let bound = demo.config.ocagent.as_ref().map_or(0, |o| o.max_queued_spans);
    println!(
        "soak: {} s of load, {} requests in flight, faults {}, ocagent span queue bound {}; gateway http://{}, \
         agent {}",
        duration.as_secs(),
        options.concurrency,
        if faults { "on" } else { "off (baseline)" },
        if bound == 0 { "default".to_owned() } else { bound.to_string() },
        demo.gateway,
        demo.agent_address
    );
    let rss_start = rss_kib("VmRSS");
    let started = Instant::now();
    let load = tokio::spawn(drive_load(demo.gateway, options.concurrency, started, duration));
    let schedule = if faults { run_faults(agent, started, duration).await? } else { Vec::new() };
    let seen = load.await.map_err(|e| DemoError::Runtime(format!("the load task failed: {e}")))?;
    let rss_loaded = rss_kib("VmRSS");

    let handed_before_stop = demo.spans_handed();
    let stopped = demo.stop().await;
    let agent = stopped.agent.as_ref().ok_or_else(|| DemoError::Runtime("the agent went missing".into()))?;
    let tally = agent
        .span_tally()
        .ok_or_else(|| DemoError::Runtime("the embedded agent does not tally spans".into()))?;
    let undelivered = match &stopped.shutdown {
        Ok(()) => 0,
        Err(oclayer::Error::Undelivered { spans, .. }) => *spans,
        Err(other) => return Err(DemoError::Runtime(format!("telemetry shutdown failed: {other}"))),
    };
    let exporter_dropped = dropped_spans_of("ocagent");
    let queue_dropped = oclayer::trace::dropped_spans();
    let lost_records = oclayer::stats::health::dropped_records();

    let mut out = String::new();
    let _ = writeln!(out, "{}", request_lines(&seen, &schedule, duration));
    let _ = writeln!(
        out,
        "spans      {} handed to the exporters ({} before the stop) · {} dropped at the span queue",
        stopped.spans_handed, handed_before_stop, queue_dropped
    );
    let _ = writeln!(
        out,
        "  agent    {} confirmed (distinct, on cleanly ended streams) · {} distinct seen · {} received in \
         all (re-sends included)",
        tally.confirmed,
        tally.distinct,
        agent.span_count()
    );
    let _ = writeln!(
        out,
        "  exporter {exporter_dropped} dropped by the ocagent queue bound · {undelivered} undelivered at shutdown"
    );
    let _ = writeln!(
        out,
        "memory     VmRSS {} MiB at the start · {} MiB at the end of the load · peak (VmHWM) {} MiB",
        mib(rss_start),
        mib(rss_loaded),
        mib(rss_kib("VmHWM"))
    );
    print!("{out}");

    let accounted = tally.confirmed + exporter_dropped + undelivered;
    if lost_records > 0 {
        return Err(DemoError::Runtime(format!(
            "{lost_records} stats records were dropped, so the exporter's drop count may be short"
        )));
    }
    if accounted != stopped.spans_handed {
        return Err(DemoError::Runtime(format!(
            "span account does not add up: {} handed, but {} confirmed + {exporter_dropped} dropped + \
             {undelivered} undelivered = {accounted}",
            stopped.spans_handed, tally.confirmed
        )));
    }
    println!(
        "account    {} handed = {} confirmed + {exporter_dropped} dropped + {undelivered} undelivered: exact",
        stopped.spans_handed, tally.confirmed
    );
    if let Err(e) = &stopped.shutdown {
        println!("shutdown   {e}");
    }
    Ok(())
}

/// Sends requests from `concurrency` workers until `duration` has passed since `started`.
async fn drive_load(
    target: std::net::SocketAddr,
    concurrency: usize,
    started: Instant,
    duration: Duration,
) -> Seen {
    let client = backend::client();
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut seen = Seen::default();
                while started.elapsed() < duration {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    match load::get(&client, target, &load::path_of(n)).await {
                        Ok(status) => {
                            seen.samples.push(Sample { sent: sent - started, latency: sent.elapsed() });
                            if !(200..300).contains(&status) {
                                seen.non_2xx += 1;
                            }
                        }
                        Err(e) => {
                            seen.errors += 1;
                            seen.first_error.get_or_insert(e);
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Seen::default();
    for worker in workers {
        match worker.await {
            Ok(seen) => {
                all.samples.extend(seen.samples);
                all.errors += seen.errors;
                all.non_2xx += seen.non_2xx;
                if all.first_error.is_none() {
                    all.first_error = seen.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert(format!("a load worker stopped: {e}"));
            }
        }
    }
    all
}

/// Applies [`FAULTS`] to `agent` on time; returns the windows as they really happened (since `started`).
async fn run_faults(
    agent: &AgentHandle,
    started: Instant,
    duration: Duration,
) -> Result<Vec<(Duration, Duration, Fault)>, DemoError> {
    let at = |fraction: f64| started + duration.mul_f64(fraction);
    let mut windows = Vec::new();
    for (from, to, fault) in FAULTS {
        tokio::time::sleep_until(at(from).into()).await;
        let began = started.elapsed();
        match fault {
            Fault::Down => agent.kill().await,
            Fault::Slow => agent.slow_down(SLOW_PER_MESSAGE),
        }
        tokio::time::sleep_until(at(to).into()).await;
        match fault {
            Fault::Down => agent
                .restart()
                .await
                .map_err(|e| DemoError::Runtime(format!("cannot restart the embedded agent: {e}")))?,
            Fault::Slow => agent.slow_down(Duration::ZERO),
        }
        windows.push((began, started.elapsed(), fault));
    }
    Ok(windows)
}

/// Requests served and latency percentiles, overall and split by whether the request was sent during a
/// fault.
fn request_lines(seen: &Seen, windows: &[(Duration, Duration, Fault)], duration: Duration) -> String {
    let in_fault = |s: &Sample| windows.iter().any(|(from, to, _)| s.sent >= *from && s.sent < *to);
    let (mut faulty, mut quiet): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for sample in &seen.samples {
        if in_fault(sample) { faulty.push(sample.latency) } else { quiet.push(sample.latency) }
    }
    let mut all: Vec<Duration> = seen.samples.iter().map(|s| s.latency).collect();
    let mut out = String::new();
    let served = seen.samples.len();
    let _ = write!(
        out,
        "requests   {served} served in {} s ({:.0}/s) · {} non-2xx answers (the mix asks for missing users) · \
         {} without an answer",
        duration.as_secs(),
        served as f64 / duration.as_secs_f64(),
        seen.non_2xx,
        seen.errors
    );
    if let Some(e) = &seen.first_error {
        let _ = write!(out, " (first: {e})");
    }
    let _ = write!(out, "\nlatency    all {}", percentiles(&mut all));
    if !windows.is_empty() {
        let _ = write!(
            out,
            "\n           outside faults {} · during faults {}",
            percentiles(&mut quiet),
            percentiles(&mut faulty)
        );
        for (from, to, fault) in windows {
            let _ = write!(
                out,
                "\n           fault: agent {} from {:.1} s to {:.1} s",
                match fault {
                    Fault::Down => "down",
                    Fault::Slow => "slow",
                },
                from.as_secs_f64(),
                to.as_secs_f64()
            );
        }
    }
    out
}

/// `n=… p50 … p99 … max …` of `latencies` (sorted here).
fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort_unstable();
    let at = |percent: f64| -> String {
        if latencies.is_empty() {
            return "-".into();
        }
        let rank = (percent / 100.0 * latencies.len() as f64).ceil() as usize;
        let d = latencies[rank.clamp(1, latencies.len()) - 1];
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    };
    format!("(n={}) p50 {} · p99 {} · max {}", latencies.len(), at(50.0), at(99.0), at(100.0))
}

/// Spans dropped by exporter `name`, from the `oclayer.io/export/dropped_spans` view (tagged by exporter).
fn dropped_spans_of(name: &str) -> u64 {
    view_data("oclayer.io/export/dropped_spans").map_or(0, |data| {
        data.rows
            .iter()
            .filter(|row| row.tags.iter().any(|tag| tag.as_deref() == Some(name)))
            .map(|row| match &row.data {
                AggregationData::Count(n) | AggregationData::SumInt64(n) => u64::try_from(*n).unwrap_or(0),
                AggregationData::SumFloat64(x) => *x as u64,
                _ => 0,
            })
            .sum()
    })
}

/// A `/proc/self/status` field in KiB (Linux); 0 elsewhere.
fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}
