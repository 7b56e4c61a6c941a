//! `init` and the process-wide sampler: the sampler chosen by `sample_rate` is in force before any exporter
//! starts (the ocagent exporter reports it to the agent as soon as its Config stream opens), a sampler the
//! agent pushes afterwards wins over it, and a failed `init` leaves the sampler and the layers as they were.
//! Its own test binary, since the sampler and the pipeline are process-wide; every test takes `serial()`.

mod ocagent_support;

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ocagent_support::{WAIT, agent, config_for};
use oclayer_agent::{Agent, AgentHandle, sampler};
use oclayer_runtime::config::{Config, PrometheusConfig};
use oclayer_runtime::layer::Layer;
use oclayer_runtime::trace::{self, Sampler};
use oclayer_runtime::{Error, Telemetry};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The agent lives on this runtime's worker threads; `init` runs on the test's own thread, outside it, as
/// it does in a gateway's `main`.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

fn ocagent_config(agent: &AgentHandle, sample_rate: u8) -> Config {
    Config::builder()
        .sample_rate(sample_rate)
        .ocagent(config_for(agent, "init-sampler"))
        .build()
        .expect("a valid config")
}

/// Remembers the process-wide sampler at the first event the ocagent exporter logs while it starts: the
/// exporter's own view of the process at its start, taken inside `init`.
#[derive(Clone, Default)]
struct SamplerAtExporterStart(Arc<Mutex<Option<Sampler>>>);

impl SamplerAtExporterStart {
    fn seen(&self) -> Option<Sampler> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Subscriber for SamplerAtExporterStart {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if event.metadata().target().starts_with("oclayer_runtime::export::ocagent") {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(trace::sampler);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn the_exporters_start_with_the_configured_sampler_and_report_it_first() {
    let _serial = serial();
    let rt = runtime();
    let agent = rt.block_on(agent());
    trace::set_sampler(Sampler::AlwaysOff);

    let watcher = SamplerAtExporterStart::default();
    let telemetry = tracing::subscriber::with_default(watcher.clone(), || {
        oclayer_runtime::init(ocagent_config(&agent, 100))
    })
    .expect("the pipeline starts");

    assert_eq!(
        watcher.seen(),
        Some(Sampler::AlwaysOn),
        "the sampler in force when the ocagent exporter started (None: it logged nothing while starting)"
    );
    // The Config stream opens with the sampler in force: sample_rate 100, not the "always off" of a
    // process where `init` has not yet set it.
    let configs = rt.block_on(agent.wait_for_library_configs(1, WAIT)).expect("the exporter reports");
    let first = configs[0].config.as_ref().expect("the first message carries the config");
    assert_eq!(first.sampler, sampler::always_on().sampler, "{first:?}");
    assert_eq!(trace::sampler(), Sampler::AlwaysOn);

    rt.block_on(telemetry.shutdown_with_timeout(WAIT)).expect("shutdown");
    rt.block_on(agent.shutdown());
}

#[test]
fn a_sampler_the_agent_pushes_at_once_wins_over_sample_rate() {
    let _serial = serial();
    let rt = runtime();
    let agent = rt
        .block_on(
            Agent::builder().sampler(sampler::probability(0.5)).start("127.0.0.1:0".parse().expect("addr")),
        )
        .expect("agent starts");

    let telemetry = oclayer_runtime::init(ocagent_config(&agent, 100)).expect("the pipeline starts");
    // The library reports sample_rate's sampler, receives the agent's, and answers with it.
    let configs = rt.block_on(agent.wait_for_library_configs(2, WAIT)).expect("hello and answer");
    let reported: Vec<_> = configs.iter().map(|c| c.config.as_ref().and_then(|c| c.sampler)).collect();
    assert_eq!(reported, [sampler::always_on().sampler, sampler::probability(0.5).sampler]);
    assert_eq!(trace::sampler(), Sampler::Probability(0.5), "init did not overwrite the agent's sampler");

    rt.block_on(telemetry.shutdown_with_timeout(WAIT)).expect("shutdown");
    rt.block_on(agent.shutdown());
}

#[test]
fn a_failed_init_leaves_the_sampler_and_the_layers_as_they_were() {
    let _serial = serial();
    let rt = runtime();
    let agent = rt.block_on(agent());
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let port = taken.local_addr().expect("bound").port();
    // The ocagent exporter starts first; the Prometheus one then fails on the taken port.
    let mut config = ocagent_config(&agent, 100);
    config.prometheus = Some(PrometheusConfig::new(port).with_listen_address(Ipv4Addr::LOCALHOST.into()));
    let before = Sampler::Probability(0.3);
    trace::set_sampler(before);

    match oclayer_runtime::init(config) {
        Err(Error::Listen { address, .. }) => assert_eq!(address.port(), port),
        other => panic!("expected a listen error, got {other:?}"),
    }
    assert_eq!(trace::sampler(), before, "the sampler set before the failure is put back");
    assert!(Layer::ALL.iter().all(|layer| !layer.is_enabled()), "no layer was switched on");

    // Nothing is left half-started: the next init works.
    let telemetry: Telemetry =
        oclayer_runtime::init(ocagent_config(&agent, 100)).expect("init after a failure");
    assert_eq!(trace::sampler(), Sampler::AlwaysOn);
    rt.block_on(telemetry.shutdown_with_timeout(WAIT)).expect("shutdown");
    rt.block_on(agent.shutdown());
}
