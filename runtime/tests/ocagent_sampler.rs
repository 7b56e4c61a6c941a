//! Samplers pushed by the agent on the `TraceService.Config` stream are applied to the process at once, and
//! the exporter answers with the config in force. Its own test binary: the sampler is process-wide.

mod ocagent_support;

use ocagent_support::*;
use oclayer_agent::{Agent, sampler};
use oclayer_proto::trace::v1::TraceConfig;
use oclayer_runtime::export::Exporter;
use oclayer_runtime::trace::{self, Sampler, SpanKind};

/// Pushes `config` and waits for the exporter's answer; returns the config it says is in force.
async fn push(agent: &oclayer_agent::AgentHandle, config: TraceConfig) -> Option<TraceConfig> {
    let before = agent.library_configs().len();
    assert_eq!(agent.push_sampler(config), 1, "one Config stream open");
    let configs = agent.wait_for_library_configs(before + 1, WAIT).await.expect("the exporter answers");
    configs[before].config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_samplers_are_applied_and_answered() {
    trace::set_sampler(Sampler::AlwaysOff);
    let agent = agent().await;
    let exporter = exporter(&config_for(&agent, "sampled"));

    // The stream opens with the Node and the sampler in force.
    let hello = agent.wait_for_library_configs(1, WAIT).await.expect("first config")[0].clone();
    assert_eq!(
        hello.node.as_ref().and_then(|n| n.service_info.as_ref()).map(|s| s.name.as_str()),
        Some("sampled")
    );
    let hello_config = hello.config.expect("a config");
    assert_eq!(hello_config.sampler, sampler::always_off().sampler);
    assert_eq!(
        hello_config.max_number_of_attributes,
        oclayer_runtime::trace::limits::MAX_ATTRIBUTES as i64,
        "the library's own limits"
    );

    assert_eq!(
        push(&agent, sampler::always_on()).await.map(|c| c.sampler),
        Some(sampler::always_on().sampler)
    );
    assert_eq!(trace::sampler(), Sampler::AlwaysOn);
    assert!(trace::start_span("after always_on", SpanKind::Server).is_sampled(), "new traces are sampled");

    push(&agent, sampler::probability(0.25)).await;
    assert_eq!(trace::sampler(), Sampler::Probability(0.25));

    let answer = push(&agent, sampler::rate_limited(5)).await;
    assert_eq!(
        trace::sampler(),
        Sampler::RateLimiting(5.0),
        "rate limiting is applied, unlike opencensus-go"
    );
    assert_eq!(answer.map(|c| c.sampler), Some(sampler::rate_limited(5).sampler));

    push(&agent, sampler::always_parent()).await;
    assert_eq!(trace::sampler(), Sampler::AlwaysParent, "ALWAYS_PARENT is applied, unlike opencensus-go");
    assert!(!trace::start_span("root under always_parent", SpanKind::Server).is_sampled(), "a root is off");

    push(&agent, sampler::always_off()).await;
    assert_eq!(trace::sampler(), Sampler::AlwaysOff);
    assert!(!trace::start_span("after always_off", SpanKind::Server).is_sampled());

    // Nonsense is logged and ignored: the sampler stays, and the answer says which one is in force.
    for malformed in [sampler::probability(1.5), sampler::probability(f64::NAN), sampler::rate_limited(-3)] {
        let answer = push(&agent, malformed).await;
        assert_eq!(trace::sampler(), Sampler::AlwaysOff);
        assert_eq!(answer.map(|c| c.sampler), Some(sampler::always_off().sampler));
    }
    let unknown_decision = TraceConfig {
        sampler: Some(oclayer_proto::trace::v1::trace_config::Sampler::ConstantSampler(
            oclayer_proto::trace::v1::ConstantSampler { decision: 42 },
        )),
        ..TraceConfig::default()
    };
    push(&agent, unknown_decision).await;
    assert_eq!(trace::sampler(), Sampler::AlwaysOff, "an unknown decision changes nothing");
    exporter.shutdown(deadline()).await.expect("shutdown");

    // An agent that has a sampler before the library connects sends it as the stream opens.
    let eager = Agent::builder()
        .sampler(sampler::probability(0.5))
        .start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("agent");
    let exporter = ocagent_support::exporter(&config_for(&eager, "eager"));
    let configs = eager.wait_for_library_configs(2, WAIT).await.expect("hello and answer");
    assert_eq!(configs[1].config.and_then(|c| c.sampler), sampler::probability(0.5).sampler);
    assert_eq!(trace::sampler(), Sampler::Probability(0.5));
    exporter.shutdown(deadline()).await.expect("shutdown");
}
