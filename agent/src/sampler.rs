//! Trace configs for [`AgentHandle::push_sampler`](crate::AgentHandle::push_sampler), one per
//! sampler the protocol defines. The per-span limits are left at 0, which libraries read as
//! "keep your own".

use oclayer_proto::trace::v1::constant_sampler::ConstantDecision;
use oclayer_proto::trace::v1::trace_config::Sampler;
use oclayer_proto::trace::v1::{ConstantSampler, ProbabilitySampler, RateLimitingSampler, TraceConfig};

fn with(sampler: Sampler) -> TraceConfig {
    TraceConfig { sampler: Some(sampler), ..TraceConfig::default() }
}

/// Sample each new trace with probability `p` (0.0 ..= 1.0; the library decides what to do with
/// values outside).
pub fn probability(p: f64) -> TraceConfig {
    with(Sampler::ProbabilitySampler(ProbabilitySampler { sampling_probability: p }))
}

/// Sample every trace.
pub fn always_on() -> TraceConfig {
    constant(ConstantDecision::AlwaysOn)
}

/// Sample nothing.
pub fn always_off() -> TraceConfig {
    constant(ConstantDecision::AlwaysOff)
}

/// Follow the parent's decision; spans without a parent are not sampled.
pub fn always_parent() -> TraceConfig {
    constant(ConstantDecision::AlwaysParent)
}

fn constant(decision: ConstantDecision) -> TraceConfig {
    with(Sampler::ConstantSampler(ConstantSampler { decision: decision as i32 }))
}

/// Sample at most `qps` traces per second.
pub fn rate_limited(qps: i64) -> TraceConfig {
    with(Sampler::RateLimitingSampler(RateLimitingSampler { qps }))
}

/// Describes a trace config in a few words, for logs: "probability 0.25", "always on",
/// "rate limit 10/s", "no sampler".
pub fn describe(config: &TraceConfig) -> String {
    match &config.sampler {
        Some(Sampler::ProbabilitySampler(p)) => format!("probability {}", p.sampling_probability),
        Some(Sampler::ConstantSampler(c)) => match ConstantDecision::try_from(c.decision) {
            Ok(ConstantDecision::AlwaysOn) => "always on".to_owned(),
            Ok(ConstantDecision::AlwaysOff) => "always off".to_owned(),
            Ok(ConstantDecision::AlwaysParent) => "always parent".to_owned(),
            Err(_) => format!("constant decision {} (unknown)", c.decision),
        },
        Some(Sampler::RateLimitingSampler(r)) => format!("rate limit {}/s", r.qps),
        None => "no sampler".to_owned(),
    }
}
