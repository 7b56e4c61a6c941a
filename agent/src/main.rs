//! `oclayer-agent`: a stand-alone OpenCensus agent that prints what it receives.
//!
//! ```text
//! oclayer-agent [--listen HOST:PORT] [--json-out FILE] [--tls-cert FILE --tls-key FILE]
//! ```
//!
//! Spans are printed as trace trees once a trace has been quiet for a moment (its spans arrive in
//! batches, children usually before their parents); metrics as tables per report. With
//! `--json-out`, records go to FILE as JSON lines instead. Ctrl-C prints what is still pending and
//! exits 0. Bad arguments exit 2, a failure to start exits 1.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use oclayer_agent::{Agent, AgentEvent, ReceivedSpan, StreamState, json, render, sampler};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

const USAGE: &str = "\
usage: oclayer-agent [--listen HOST:PORT] [--json-out FILE] [--tls-cert FILE --tls-key FILE]

  --listen HOST:PORT   address to serve the OpenCensus agent protocol on (default 127.0.0.1:55678)
  --json-out FILE      write every span and metric to FILE as one JSON object per line,
                       instead of printing trace trees and metric tables
  --tls-cert FILE      serve TLS with this PEM certificate chain (needs --tls-key)
  --tls-key FILE       the PEM private key of --tls-cert
  -h, --help           print this help";

const DEFAULT_LISTEN: &str = "127.0.0.1:55678";

/// How long a trace must go without new spans before its tree is printed.
const TRACE_QUIET: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    json_out: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
}

/// What the command line asks for, or why it cannot be followed.
enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut listen = None;
    let mut json_out = None;
    let mut cert = None;
    let mut key = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--listen" => listen = Some(value("--listen")?),
            "--json-out" => json_out = Some(PathBuf::from(value("--json-out")?)),
            "--tls-cert" => cert = Some(PathBuf::from(value("--tls-cert")?)),
            "--tls-key" => key = Some(PathBuf::from(value("--tls-key")?)),
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            other => return Err(format!("unexpected argument `{other}` (options start with --)")),
        }
    }
    let listen_text = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen_text
        .to_socket_addrs()
        .map_err(|e| format!("--listen `{listen_text}` is not a HOST:PORT address ({e})"))?
        .next()
        .ok_or_else(|| format!("--listen `{listen_text}` resolves to no address"))?;
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert needs --tls-key as well".to_owned()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert as well".to_owned()),
    };
    Ok(Parsed::Run(Args { listen, json_out, tls }))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("oclayer-agent: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("oclayer-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("oclayer-agent: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where received records go.
enum Output {
    /// Trace trees and tables on stdout; spans wait per trace until the trace is quiet.
    Text { pending: BTreeMap<Vec<u8>, (Vec<ReceivedSpan>, Instant)> },
    /// JSON lines into a file.
    Json { file: BufWriter<File>, path: PathBuf },
}

impl Output {
    fn spans(&mut self, spans: Vec<ReceivedSpan>) -> Result<(), String> {
        match self {
            Output::Text { pending } => {
                let now = Instant::now();
                for span in spans {
                    let entry =
                        pending.entry(span.span.trace_id.clone()).or_insert_with(|| (Vec::new(), now));
                    entry.0.push(span);
                    entry.1 = now;
                }
                Ok(())
            }
            Output::Json { .. } => {
                let lines: Vec<_> = spans.iter().map(json::span).collect();
                self.write_json(&lines)
            }
        }
    }

    fn write_json(&mut self, values: &[serde_json::Value]) -> Result<(), String> {
        if let Output::Json { file, path } = self {
            for value in values {
                writeln!(file, "{value}").map_err(|e| format!("cannot write to {}: {e}", path.display()))?;
            }
            // Flushed per batch so that `tail -f` and test scripts see records as they arrive.
            file.flush().map_err(|e| format!("cannot write to {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Prints the traces that have been quiet for [`TRACE_QUIET`] (all of them when `all`).
    fn flush_traces(&mut self, all: bool) {
        if let Output::Text { pending } = self {
            let now = Instant::now();
            let ready: Vec<Vec<u8>> = pending
                .iter()
                .filter(|(_, (_, last))| all || now.duration_since(*last) >= TRACE_QUIET)
                .map(|(id, _)| id.clone())
                .collect();
            for id in ready {
                if let Some((spans, _)) = pending.remove(&id) {
                    println!("{}", render::trace_tree(&spans));
                }
            }
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut builder = Agent::builder().keep_records(false);
    if let Some((cert, key)) = &args.tls {
        let cert_pem =
            std::fs::read(cert).map_err(|e| format!("cannot read --tls-cert {}: {e}", cert.display()))?;
        let key_pem =
            std::fs::read(key).map_err(|e| format!("cannot read --tls-key {}: {e}", key.display()))?;
        builder = builder.tls_pem(cert_pem, key_pem);
    }
    let mut output = match &args.json_out {
        Some(path) => {
            let file = File::create(path)
                .map_err(|e| format!("cannot create --json-out {}: {e}", path.display()))?;
            Output::Json { file: BufWriter::new(file), path: path.clone() }
        }
        None => Output::Text { pending: BTreeMap::new() },
    };
    let agent = builder.start(args.listen).await.map_err(|e| e.to_string())?;
    let mut events = agent.subscribe();
    let scheme = if args.tls.is_some() { "TLS" } else { "plain text" };
    eprintln!(
        "oclayer-agent: listening on {} ({scheme}) for TraceService and MetricsService; Ctrl-C to stop",
        agent.local_addr()
    );
    if let Some(path) = &args.json_out {
        eprintln!("oclayer-agent: writing JSON lines to {}", path.display());
    }

    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let result = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = tick.tick() => output.flush_traces(false),
            event = events.recv() => match event {
                Ok(event) => {
                    if let Err(e) = handle(&mut output, event) {
                        break Err(e);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    eprintln!("oclayer-agent: printing fell behind; {missed} batches were not shown");
                }
                Err(RecvError::Closed) => break Ok(()),
            },
        }
    };
    output.flush_traces(true);
    agent.shutdown().await;
    result
}

fn handle(output: &mut Output, event: AgentEvent) -> Result<(), String> {
    match event {
        AgentEvent::StreamOpened(record) => {
            let compression = record.compression.as_deref().map(|c| format!(", {c}")).unwrap_or_default();
            eprintln!("oclayer-agent: stream {} opened: {}{compression}", record.id, record.kind);
        }
        AgentEvent::FirstMessage { stream, kind, node } => match node {
            Some(node) => {
                let id = node.identifier.as_ref();
                let library = node.library_info.as_ref();
                eprintln!(
                    "oclayer-agent: stream {stream} ({kind}) from service {}, host {}, pid {}, exporter {}",
                    render::service_label(Some(&node)),
                    id.map_or("?", |i| i.host_name.as_str()),
                    id.map_or(0, |i| i.pid),
                    library.map_or("?", |l| l.exporter_version.as_str()),
                );
            }
            None => eprintln!(
                "oclayer-agent: stream {stream} ({kind}): the first message carries no Node (the protocol requires one)"
            ),
        },
        AgentEvent::Spans(spans) => output.spans(spans)?,
        AgentEvent::Metrics(metrics) => match output {
            Output::Text { .. } => print!("{}", render::metrics_table(&metrics)),
            Output::Json { .. } => {
                let lines: Vec<_> = metrics.iter().map(json::metric).collect();
                output.write_json(&lines)?;
            }
        },
        AgentEvent::LibraryConfig(config) => {
            let described = config.config.as_ref().map_or_else(|| "no config".to_owned(), sampler::describe);
            eprintln!("oclayer-agent: stream {} library config: {described}", config.stream);
        }
        AgentEvent::StreamEnded { stream, state } => {
            let how = match state {
                StreamState::Open => return Ok(()),
                StreamState::Closed => "closed by the client".to_owned(),
                StreamState::Failed => "failed on purpose".to_owned(),
                StreamState::Broken(reason) => format!("broken ({reason})"),
            };
            eprintln!("oclayer-agent: stream {stream} {how}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_to_the_standard_agent_port() {
        let Ok(Parsed::Run(args)) = parse(&[]) else { panic!("no arguments must parse") };
        assert_eq!(args.listen, "127.0.0.1:55678".parse::<SocketAddr>().expect("valid address"));
        assert!(args.json_out.is_none() && args.tls.is_none());
    }

    #[test]
    fn accepts_flags_with_spaces_or_equals() {
        let Ok(Parsed::Run(args)) = parse(&["--listen=127.0.0.1:0", "--json-out", "out.jsonl"]) else {
            panic!("valid flags must parse")
        };
        assert_eq!(args.listen.port(), 0);
        assert_eq!(args.json_out, Some(PathBuf::from("out.jsonl")));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let cases: [(&[&str], &str); 5] = [
            (&["--bogus"], "unknown option `--bogus`"),
            (&["--listen"], "--listen needs a value"),
            (&["--listen", "nowhere"], "--listen `nowhere` is not a HOST:PORT address"),
            (&["--tls-cert", "c.pem"], "--tls-cert needs --tls-key as well"),
            (&["stray"], "unexpected argument `stray`"),
        ];
        for (args, expected) in cases {
            match parse(args) {
                Err(message) => assert!(message.contains(expected), "{args:?}: got {message:?}"),
                Ok(_) => panic!("{args:?} must be rejected"),
            }
        }
    }
}
