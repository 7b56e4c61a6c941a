//! The load generator: N requests across the gateway's endpoints, C at a time, timed from the client's
//! side.
//!
//! The mix is fixed by the request's number, so two runs send the same requests: half go to
//! `/users/{id}`, half to `/users/{id}/orders`; about 3 in 100 ask for a user that does not exist (404) and
//! 1 in 100 for an id that is not a number (400).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::backend::{self, Client};
use super::upstream::KNOWN_USERS;

/// What the load generator saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer at all, with the first such error.
    pub failed: u64,
    /// The first error of a request without an answer.
    pub first_failure: Option<String>,
    /// The latency of every answered request, sorted.
    pub latencies: Vec<Duration>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl LoadReport {
    /// The latency below which `percent` of the answered requests fall (nearest rank), if any answered.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = (percent / 100.0 * self.latencies.len() as f64).ceil() as usize;
        self.latencies.get(rank.clamp(1, self.latencies.len()) - 1).copied()
    }

    /// Answered requests.
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// The path of request number `n`.
pub fn path_of(n: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(n);
    let id = match rng.u32(0..100) {
        0 => return format!("/users/u{n}{}", if n.is_multiple_of(2) { "" } else { "/orders" }),
        1..=3 => KNOWN_USERS.end() + 1 + rng.u64(0..100),
        _ => rng.u64(1..=200),
    };
    if n.is_multiple_of(2) { format!("/users/{id}") } else { format!("/users/{id}/orders") }
}

/// Sends `requests` requests to the gateway at `target`, `concurrency` at a time. The progress bar shows
/// only when stdout is a terminal and `progress` is set.
pub async fn run(target: SocketAddr, requests: u64, concurrency: usize, progress: bool) -> LoadReport {
    let draw = if progress && std::io::stdout().is_terminal() {
        ProgressDrawTarget::stdout()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(requests), draw);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} requests  {elapsed} elapsed  eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }

    let client = backend::client();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // More workers than requests would only wait.
    let workers = concurrency.min(usize::try_from(requests).unwrap_or(usize::MAX));
    let workers: Vec<_> = (0..workers)
        .map(|_| {
            let (client, next, bar) = (client.clone(), Arc::clone(&next), bar.clone());
            tokio::spawn(async move {
                let mut seen = LoadReport::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        break;
                    }
                    let sent = Instant::now();
                    match get(&client, target, &path_of(n)).await {
                        Ok(status) => {
                            seen.latencies.push(sent.elapsed());
                            *seen.statuses.entry(status).or_default() += 1;
                        }
                        Err(e) => {
                            seen.failed += 1;
                            seen.first_failure.get_or_insert(e);
                        }
                    }
                    bar.inc(1);
                }
                seen
            })
        })
        .collect();

    let mut report = LoadReport::default();
    for worker in workers {
        match worker.await {
            Ok(seen) => {
                for (status, count) in seen.statuses {
                    *report.statuses.entry(status).or_default() += count;
                }
                report.failed += seen.failed;
                if report.first_failure.is_none() {
                    report.first_failure = seen.first_failure;
                }
                report.latencies.extend(seen.latencies);
            }
            Err(e) => {
                report.first_failure.get_or_insert(format!("a load worker stopped: {e}"));
            }
        }
    }
    report.elapsed = started.elapsed();
    report.latencies.sort_unstable();
    bar.finish_and_clear();
    report
}

/// One GET through the gateway, body read to the end; the status, or why there was none.
pub async fn get(client: &Client, target: SocketAddr, path: &str) -> Result<u16, String> {
    let request = Request::get(format!("http://{target}{path}"))
        .header(header::USER_AGENT, "oclayer-demo-load")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| format!("{path}: {e}"))?;
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|e| format!("{path}: reading the answer: {e}"))?;
    Ok(status)
}
