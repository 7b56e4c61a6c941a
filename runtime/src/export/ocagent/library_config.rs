//! The `TraceService.Config` stream: the agent pushes samplers, the exporter applies them to the process
//! and answers with the config now in force.
//!
//! The stream opens with a `CurrentLibraryConfig` carrying the Node and the active sampler. Each
//! `UpdatedLibraryConfig` from the agent is mapped to a [`Sampler`] and set with
//! [`set_sampler`](crate::trace::set_sampler): probability, `ALWAYS_ON`, `ALWAYS_OFF`, `ALWAYS_PARENT` and
//! rate limiting (opencensus-go ignores the last two). A config that makes no sense (a probability
//! outside 0..=1, a negative rate, an unknown decision) is logged and ignored; the answer then shows the
//! sampler still in force. The span limits in the config are reported but not changed: they are fixed in
//! this library.
//!
//! The stream is kept open, reopened with backoff when it ends. An agent that does not implement the
//! RPC (`UNIMPLEMENTED`) is not asked again.

use std::sync::Arc;
use std::time::Duration;

use oclayer_proto::agent::trace::v1::{CurrentLibraryConfig, UpdatedLibraryConfig};
use oclayer_proto::trace::v1::TraceConfig;
use oclayer_proto::trace::v1::constant_sampler::ConstantDecision;
use oclayer_proto::trace::v1::trace_config::Sampler as WireSampler;
use oclayer_proto::trace::v1::{ConstantSampler, ProbabilitySampler, RateLimitingSampler};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::backoff::Backoff;
use super::stream::describe;
use crate::trace::{self, Sampler, limits};

/// How long shutdown waits for the agent to end the Config stream after the exporter ended its side.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How one Config stream ended.
enum End {
    /// Shutdown or stop.
    Closing,
    /// The agent does not offer the RPC.
    Unimplemented,
    /// It ended or broke; `updates` configs had come through it.
    Ended { updates: usize, error: Option<String> },
}

/// The Config stream task.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.reconnection);
    loop {
        match session(&shared).await {
            End::Closing => return,
            End::Unimplemented => {
                tracing::info!(
                    agent = shared.transport.target(),
                    "ocagent exporter: the agent does not push sampler configs (TraceService.Config is unimplemented)"
                );
                return;
            }
            End::Ended { updates, error } => {
                if updates > 0 {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                match error {
                    Some(error) => {
                        tracing::debug!(%error, retry_in = ?delay, "ocagent exporter: Config stream broke")
                    }
                    None => {
                        tracing::debug!(retry_in = ?delay, "ocagent exporter: the agent ended the Config stream")
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.closing.cancelled() => return,
                    () = shared.stop.cancelled() => return,
                }
            }
        }
    }
}

async fn session(shared: &Shared) -> End {
    if shared.closing.is_cancelled() {
        return End::Closing;
    }
    let (sender, receiver) = mpsc::channel(4);
    let hello =
        CurrentLibraryConfig { node: Some(shared.node.clone()), config: Some(config_of(trace::sampler())) };
    if sender.try_send(hello).is_err() {
        // A fresh channel has room; this would only fail if it were closed, which it is not.
        return End::Ended { updates: 0, error: Some("the config request stream closed at once".to_owned()) };
    }
    let mut client = shared.transport.trace_client();
    let request = shared.transport.request(ReceiverStream::new(receiver));
    let call = client.config(request);
    tokio::pin!(call);
    let opened = tokio::select! {
        opened = &mut call => opened,
        () = shared.closing.cancelled() => {
            drop(sender);
            let finish = async {
                if let Ok(response) = call.await {
                    drain(response.into_inner()).await;
                }
            };
            close_within_wait(shared, finish).await;
            return End::Closing;
        }
        () = shared.stop.cancelled() => return End::Closing,
    };
    let mut updates = match opened {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => return End::Unimplemented,
        Err(status) => return End::Ended { updates: 0, error: Some(describe(&status)) },
    };
    let mut received = 0;
    loop {
        let update = tokio::select! {
            update = updates.message() => update,
            () = shared.closing.cancelled() => {
                drop(sender);
                close_within_wait(shared, drain(updates)).await;
                return End::Closing;
            }
            () = shared.stop.cancelled() => return End::Closing,
        };
        match update {
            Ok(Some(update)) => {
                received += 1;
                let applied = apply(update.config.as_ref());
                // The answer is for the agent's information; if it does not read, answers are dropped
                // rather than holding up the next update.
                let _ = sender.try_send(CurrentLibraryConfig { node: None, config: Some(applied) });
            }
            Ok(None) => return End::Ended { updates: received, error: None },
            Err(status) => return End::Ended { updates: received, error: Some(describe(&status)) },
        }
    }
}

/// Reads the agent's side of a Config stream to its end (updates arriving now are not applied: the
/// exporter is shutting down).
async fn drain(mut updates: tonic::Streaming<UpdatedLibraryConfig>) {
    while let Ok(Some(_)) = updates.message().await {}
}

/// At shutdown our side of the stream is ended; `finish` lets the agent end its own, so the stream closes
/// cleanly rather than being reset. An agent that does not answer within [`CLOSE_WAIT`] is left behind.
async fn close_within_wait(shared: &Shared, finish: impl Future<Output = ()>) {
    tokio::select! {
        _ = tokio::time::timeout(CLOSE_WAIT, finish) => {}
        () = shared.stop.cancelled() => {}
    }
}

/// Applies a pushed config, if it makes sense, and returns the config in force afterwards.
fn apply(config: Option<&TraceConfig>) -> TraceConfig {
    match config.map(sampler_of) {
        Some(Ok(Some(sampler))) => {
            let before = trace::sampler();
            trace::set_sampler(sampler);
            tracing::info!(?before, now = ?sampler, "ocagent exporter: the agent set the sampler");
        }
        Some(Ok(None)) | None => {}
        Some(Err(why)) => tracing::warn!("ocagent exporter: ignored a sampler config from the agent: {why}"),
    }
    config_of(trace::sampler())
}

/// The sampler a pushed config asks for: `Ok(None)` when it names none, `Err` when it makes no sense.
pub(super) fn sampler_of(config: &TraceConfig) -> Result<Option<Sampler>, String> {
    let sampler = match config.sampler {
        None => return Ok(None),
        Some(WireSampler::ProbabilitySampler(ProbabilitySampler { sampling_probability: p })) => {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("sampling probability {p} is not within 0..=1"));
            }
            Sampler::Probability(p)
        }
        Some(WireSampler::ConstantSampler(ConstantSampler { decision })) => {
            match ConstantDecision::try_from(decision) {
                Ok(ConstantDecision::AlwaysOn) => Sampler::AlwaysOn,
                Ok(ConstantDecision::AlwaysOff) => Sampler::AlwaysOff,
                Ok(ConstantDecision::AlwaysParent) => Sampler::AlwaysParent,
                Err(_) => {
                    return Err(format!(
                        "constant sampler decision {decision} is not ALWAYS_OFF, ALWAYS_ON or ALWAYS_PARENT"
                    ));
                }
            }
        }
        Some(WireSampler::RateLimitingSampler(RateLimitingSampler { qps })) => {
            if qps < 0 {
                return Err(format!("rate-limiting sampler qps {qps} is negative"));
            }
            // 0 is meaningful: no new traces.
            Sampler::RateLimiting(qps as f64)
        }
    };
    Ok(Some(sampler))
}

/// The config in force with `sampler`, as the agent reads it; the span limits are this library's.
pub(super) fn config_of(sampler: Sampler) -> TraceConfig {
    let wire = match sampler {
        Sampler::AlwaysOn => constant(ConstantDecision::AlwaysOn),
        Sampler::AlwaysOff => constant(ConstantDecision::AlwaysOff),
        Sampler::AlwaysParent => constant(ConstantDecision::AlwaysParent),
        Sampler::Probability(p) => {
            WireSampler::ProbabilitySampler(ProbabilitySampler { sampling_probability: p.clamp(0.0, 1.0) })
        }
        // The wire carries whole traces per second; the float cast saturates.
        Sampler::RateLimiting(qps) => {
            WireSampler::RateLimitingSampler(RateLimitingSampler { qps: qps.round() as i64 })
        }
    };
    TraceConfig {
        sampler: Some(wire),
        max_number_of_attributes: limits::MAX_ATTRIBUTES as i64,
        max_number_of_annotations: limits::MAX_ANNOTATIONS as i64,
        max_number_of_message_events: limits::MAX_MESSAGE_EVENTS as i64,
        max_number_of_links: limits::MAX_LINKS as i64,
    }
}

fn constant(decision: ConstantDecision) -> WireSampler {
    WireSampler::ConstantSampler(ConstantSampler { decision: decision as i32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(sampler: WireSampler) -> TraceConfig {
        TraceConfig { sampler: Some(sampler), ..TraceConfig::default() }
    }

    #[test]
    fn every_pushed_sampler_maps() {
        let probability =
            with(WireSampler::ProbabilitySampler(ProbabilitySampler { sampling_probability: 0.25 }));
        assert_eq!(sampler_of(&probability), Ok(Some(Sampler::Probability(0.25))));
        assert_eq!(sampler_of(&with(constant(ConstantDecision::AlwaysOn))), Ok(Some(Sampler::AlwaysOn)));
        assert_eq!(sampler_of(&with(constant(ConstantDecision::AlwaysOff))), Ok(Some(Sampler::AlwaysOff)));
        assert_eq!(
            sampler_of(&with(constant(ConstantDecision::AlwaysParent))),
            Ok(Some(Sampler::AlwaysParent))
        );
        let rate = with(WireSampler::RateLimitingSampler(RateLimitingSampler { qps: 50 }));
        assert_eq!(sampler_of(&rate), Ok(Some(Sampler::RateLimiting(50.0))));
        let zero_rate = with(WireSampler::RateLimitingSampler(RateLimitingSampler { qps: 0 }));
        assert_eq!(sampler_of(&zero_rate), Ok(Some(Sampler::RateLimiting(0.0))));
        assert_eq!(sampler_of(&TraceConfig::default()), Ok(None), "limits only: nothing to apply");
    }

    #[test]
    fn malformed_samplers_are_refused_with_a_reason() {
        for p in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let config =
                with(WireSampler::ProbabilitySampler(ProbabilitySampler { sampling_probability: p }));
            assert!(sampler_of(&config).is_err(), "{p}");
        }
        let unknown = with(WireSampler::ConstantSampler(ConstantSampler { decision: 7 }));
        assert!(sampler_of(&unknown).expect_err("unknown decision").contains('7'));
        let negative = with(WireSampler::RateLimitingSampler(RateLimitingSampler { qps: -1 }));
        assert!(sampler_of(&negative).is_err());
    }

    #[test]
    fn the_config_in_force_round_trips() {
        for sampler in [
            Sampler::AlwaysOn,
            Sampler::AlwaysOff,
            Sampler::AlwaysParent,
            Sampler::Probability(0.5),
            Sampler::RateLimiting(20.0),
        ] {
            let config = config_of(sampler);
            assert_eq!(sampler_of(&config), Ok(Some(sampler)));
            assert_eq!(config.max_number_of_attributes, limits::MAX_ATTRIBUTES as i64);
            assert_eq!(config.max_number_of_links, limits::MAX_LINKS as i64);
        }
    }
}
