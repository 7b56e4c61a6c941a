//! The whole demo: start the agent, the telemetry pipeline, the upstreams and the gateway; send load or
//! serve; stop in order; print what happened.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http_body_util::BodyExt;
use oclayer::Telemetry;
use oclayer_agent::{Agent, AgentHandle};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::backend;
use super::cli::Options;
use super::load;
use super::routes::{self, Gateway};
use super::setup::{self, Counts};
use super::summary::{self, Drops};
use super::upstream::{self, Upstreams};

/// Why the demo could not run.
#[derive(Debug)]
pub enum DemoError {
    /// The config file is missing or invalid: the user's to fix (exit code 2).
    Config(String),
    /// The environment: a port that is taken, a signal handler that cannot be installed (exit code 1).
    Runtime(String),
}

impl DemoError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoError::Config(_) => 2,
            DemoError::Runtime(_) => 1,
        }
    }
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoError::Config(message) | DemoError::Runtime(message) => f.write_str(message),
        }
    }
}

/// Everything the demo runs.
pub struct Demo {
    /// The embedded agent; `None` with `--agent-address`.
    pub agent: Option<AgentHandle>,
    /// The address the ocagent exporter sends to.
    pub agent_address: String,
    /// Where the gateway listens.
    pub gateway: SocketAddr,
    /// Where `/metrics` is served, if Prometheus is configured.
    pub prometheus: Option<SocketAddr>,
    /// The upstream services.
    pub upstreams: Upstreams,
    /// The effective telemetry config, after the flags.
    pub config: oclayer::Config,
    /// Things the user should know (ports that were taken).
    pub notes: Vec<String>,
    telemetry: Telemetry,
    counts: Arc<Counts>,
    server: JoinHandle<std::io::Result<()>>,
    stop_server: oneshot::Sender<()>,
}

/// The demo after it stopped: what the summary reads.
pub struct Stopped {
    /// The embedded agent, still holding what it received.
    pub agent: Option<AgentHandle>,
    /// Spans handed to the exporters.
    pub spans_handed: u64,
    /// Stats reports handed to the exporters.
    pub reports_handed: u64,
    /// What was dropped on the way.
    pub drops: Drops,
    /// How the final flush went: an error says what was not delivered.
    pub shutdown: Result<(), oclayer::Error>,
}

impl Demo {
    /// Starts everything. Nothing is left running on error.
    pub async fn start(options: &Options) -> Result<Demo, DemoError> {
        // The config first (the flags too, `--agent-address` included): a mistake in it should be reported
        // before anything starts.
        let mut config = setup::load_config(options)?;
        let (agent, agent_address) = match &options.agent_address {
            Some(external) => (None, external.clone()),
            None => {
                // The soak runs long under load: it only counts spans (distinct ones, for its account)
                // instead of keeping them.
                let soak = options.soak.is_some();
                let agent = Agent::builder()
                    .keep_records(!soak)
                    .tally_spans(soak)
                    .start(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .map_err(|e| DemoError::Runtime(format!("cannot start the embedded agent: {e}")))?;
                let address = agent.local_addr().to_string();
                setup::point_at_agent(&mut config, address.clone(), true);
                (Some(agent), address)
            }
        };
        let mut started = setup::start(&mut config, options)?;

        let upstreams = upstream::start()
            .await
            .map_err(|e| DemoError::Runtime(format!("cannot start the upstream services: {e}")))?;
        let (listener, note) = bind_gateway(options).await?;
        started.notes.extend(note);
        let gateway = listener
            .local_addr()
            .map_err(|e| DemoError::Runtime(format!("cannot read the gateway's address: {e}")))?;
        let app = routes::router(Gateway {
            client: backend::client(),
            users: upstreams.users,
            orders: upstreams.orders,
        });
        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });

        Ok(Demo {
            agent,
            agent_address,
            gateway,
            prometheus: started.prometheus,
            upstreams,
            config,
            notes: started.notes,
            telemetry: started.telemetry,
            counts: started.counts,
            server,
            stop_server,
        })
    }

    /// Spans handed to the exporters so far.
    pub fn spans_handed(&self) -> u64 {
        self.counts.spans()
    }

    /// Stops the gateway (letting requests in flight finish), the upstreams and the telemetry pipeline,
    /// which delivers what is queued: spans and a last stats report.
    pub async fn stop(self) -> Stopped {
        let _ = self.stop_server.send(());
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the gateway stopped with an error: {e}"),
            Err(e) => eprintln!("the gateway's task failed: {e}"),
        }
        drop(self.upstreams);
        let shutdown = self.telemetry.shutdown().await;
        Stopped {
            agent: self.agent,
            spans_handed: self.counts.spans(),
            reports_handed: self.counts.reports(),
            drops: Drops::now(),
            shutdown,
        }
    }
}

/// Binds `--listen`; the default port, when taken, falls back to a free one with a note.
async fn bind_gateway(options: &Options) -> Result<(TcpListener, Option<String>), DemoError> {
    let taken = |e: std::io::Error| {
        DemoError::Runtime(format!(
            "the gateway cannot listen on {} (--listen): {e}; choose a free address with --listen",
            options.listen
        ))
    };
    match TcpListener::bind(options.listen).await {
        Ok(listener) => Ok((listener, None)),
        Err(e) if e.kind() == ErrorKind::AddrInUse && !options.listen_explicit => {
            let listener = TcpListener::bind(SocketAddr::new(options.listen.ip(), 0)).await.map_err(taken)?;
            let port = listener.local_addr().map_err(taken)?.port();
            let note = format!(
                "port {} is in use; the gateway listens on port {port} instead (choose one with --listen)",
                options.listen.port()
            );
            Ok((listener, Some(note)))
        }
        Err(e) => Err(taken(e)),
    }
}

/// Runs the demo as the command line asked and prints its report.
pub async fn run(options: Options) -> Result<(), DemoError> {
    // Installed before anything is announced, so a signal sent right after "serving" is not missed.
    let signals = if options.serve { Some(Signals::install()?) } else { None };
    let demo = Demo::start(&options).await?;
    print_banner(&demo, &options);

    let report = match signals {
        Some(signals) => {
            println!("serving until Ctrl-C or SIGTERM; try: curl http://{}/users/7/orders", demo.gateway);
            let signal = signals.wait().await;
            println!("{signal} received: stopping, flushing telemetry");
            None
        }
        None => {
            let plural = if options.requests == 1 { "" } else { "s" };
            println!("sending {} request{plural}, {} at a time", options.requests, options.concurrency);
            Some(load::run(demo.gateway, options.requests, options.concurrency, true).await)
        }
    };

    let embedded = demo.agent.is_some();
    let agent_address = demo.agent_address.clone();
    // Scraped before the stop, which closes the /metrics server.
    let scraped = match demo.prometheus {
        Some(addr) => Some((addr, scrape(addr).await)),
        None => None,
    };
    let stopped = demo.stop().await;
    println!();
    if let Some(report) = &report {
        print!("{}", summary::load_lines(report));
    }
    let agent_records = stopped.agent.as_ref().map(|agent| (agent.spans(), agent.metrics()));
    print!(
        "{}",
        summary::telemetry_lines(
            stopped.spans_handed,
            stopped.reports_handed,
            agent_records.as_ref().map(|(s, m)| (s.as_slice(), m.as_slice())),
            stopped.drops,
        )
    );
    match scraped {
        Some((_, Ok(samples))) => println!("prometheus   /metrics answered with {samples} samples"),
        Some((addr, Err(e))) => {
            println!("prometheus   scraping http://{}/metrics failed: {e}", reachable(addr))
        }
        None => {}
    }
    match &agent_records {
        Some((spans, metrics)) => {
            if let Some(trace) = summary::pick_trace(spans) {
                println!("\none sampled request, as the agent received it:");
                print!("{}", oclayer_agent::render::trace_tree(&trace));
            } else {
                println!(
                    "\nno spans arrived: no request was traced (none sent, sample_rate 0, or the layers disabled)"
                );
            }
            match summary::latency_rows(metrics) {
                Some(table) => {
                    println!("\ntop rows of the router's latency view, as the agent received it:");
                    print!("{table}");
                }
                None => println!(
                    "\nthe router's latency view has no rows: no request reached an enabled router layer"
                ),
            }
        }
        None if embedded => {}
        None => println!("\nthe spans and views went to the agent at {agent_address}: look there"),
    }
    match stopped.shutdown {
        Ok(()) => {
            println!("\ntelemetry flushed and shut down");
            Ok(())
        }
        Err(e) => Err(DemoError::Runtime(format!("telemetry did not shut down cleanly: {e}"))),
    }
}

fn print_banner(demo: &Demo, options: &Options) {
    for note in &demo.notes {
        println!("note: {note}");
    }
    let config = &demo.config;
    println!("oclayer demo gateway");
    println!(
        "  config      {} (sample_rate {}, {})",
        options.config.display(),
        config.sample_rate,
        config.enabled_layers.describe()
    );
    println!("  upstreams   users http://{} · orders http://{}", demo.upstreams.users, demo.upstreams.orders);
    println!("  gateway     http://{}  (GET /users/{{id}}, GET /users/{{id}}/orders)", demo.gateway);
    match &demo.agent {
        Some(_) => {
            println!("  agent       embedded OpenCensus agent on {} (ocagent over gRPC)", demo.agent_address)
        }
        None => println!("  agent       {} (--agent-address; no embedded receiver)", demo.agent_address),
    }
    if let Some(prometheus) = demo.prometheus {
        let scope = if prometheus.ip().is_unspecified() { " (on all interfaces)" } else { "" };
        println!("  prometheus  http://{}/metrics{scope}", reachable(prometheus));
    }
    println!();
}

/// Where to reach a server listening on `addr` from this host: loopback when it listens on all
/// interfaces.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if !ip.is_unspecified() => addr,
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
    }
}

/// Scrapes `/metrics` once, as Prometheus would; the number of samples (lines that are not comments).
async fn scrape(addr: SocketAddr) -> Result<usize, String> {
    let request = http::Request::get(format!("http://{}/metrics", reachable(addr)))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = backend::client().request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    Ok(text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).count())
}

/// The signals `--serve` stops on, listened for from the start.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DemoError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| DemoError::Runtime(format!("cannot listen for {name}: {e}")))
            };
            Ok(Signals {
                interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
                terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for Ctrl-C or SIGTERM; returns which.
    async fn wait(self) -> &'static str {
        #[cfg(unix)]
        {
            let Signals { mut interrupt, mut terminate } = self;
            tokio::select! {
                _ = interrupt.recv() => "Ctrl-C",
                _ = terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
