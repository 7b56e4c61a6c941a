//! The demo's command line. A small hand-written parser: every mistake is a message naming the flag and
//! what it takes, and exit code 2, never a panic.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use oclayer::layer::Layer;

/// Where the gateway listens unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Requests the load generator sends unless `--requests` says otherwise.
pub const DEFAULT_REQUESTS: u64 = 500;
/// Requests in flight at once unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// More in flight than this would only measure the loopback, not the gateway.
const MAX_CONCURRENCY: usize = 1024;

/// The flags, for `--help` and for the line printed under every usage error.
pub const USAGE: &str = "\
usage: gateway [FLAGS]

Starts two upstream services (users, orders), a gateway in front of them whose handlers carry
#[oclayer::trace_layer(router|pipe|backend)], and an embedded OpenCensus agent receiving what the
ocagent exporter sends. Then sends load and prints what the agent received, or serves (--serve).

flags:
  --config PATH          KrakenD config with the telemetry/opencensus block
                         (default: examples/krakend.json of this repository)
  --listen ADDR          where the gateway listens (default: 127.0.0.1:8080; when that port is
                         taken and --listen is not given, a free port is used instead)
  --agent-address H:P    send to this OpenCensus agent instead of the embedded one
  --requests N           requests the load generator sends (default: 500)
  --concurrency C        requests in flight at once (default: 8)
  --serve                no load: serve until Ctrl-C or SIGTERM, then flush and exit
  --soak SECS            load for SECS seconds while the embedded agent is killed and restarted
                         twice and slowed once, then account for every span (tests/soak/run.sh)
  --no-faults            with --soak: the same load with the agent left alone, as a baseline
  --max-queued-spans N   spans the ocagent exporter keeps for an unreachable agent (default 65536)
  --prometheus-port N    port of /metrics (default: the config's exporters.prometheus.port)
  --sample-rate P        percent of requests traced, 0..=100 (default: the config's sample_rate)
  --disable-layer LAYER  turn off router, pipe or backend; repeatable
  -h, --help             this text";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the demo.
    Run(Options),
    /// Print [`USAGE`] and exit 0.
    Help,
}

/// The demo's settings, from the flags and their defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// The KrakenD config file.
    pub config: PathBuf,
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// Whether `--listen` was given: only the default may fall back to a free port.
    pub listen_explicit: bool,
    /// An external agent (`host:port`), or `None` for the embedded one. Checked with the config's rules
    /// once applied to the config (`setup::load_config`).
    pub agent_address: Option<String>,
    /// Requests the load generator sends.
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Serve until a signal instead of sending load.
    pub serve: bool,
    /// Run the load and fault soak for this long instead of a number of requests.
    pub soak: Option<std::time::Duration>,
    /// With `soak`: leave the agent alone (a baseline run).
    pub no_faults: bool,
    /// Overrides the ocagent exporter's span queue bound (a builder-only setting: KrakenD's JSON has none).
    pub max_queued_spans: Option<usize>,
    /// Overrides `exporters.prometheus.port`; checked with the config's rules once applied.
    pub prometheus_port: Option<u16>,
    /// Overrides `sample_rate`; checked with the config's rules once applied.
    pub sample_rate: Option<u8>,
    /// Layers turned off on top of the config's `enabled_layers`.
    pub disable_layers: Vec<Layer>,
}

impl Options {
    /// The defaults, as if no flag was given.
    pub fn new() -> Options {
        Options {
            config: default_config_path(),
            listen: DEFAULT_LISTEN,
            listen_explicit: false,
            agent_address: None,
            requests: DEFAULT_REQUESTS,
            concurrency: DEFAULT_CONCURRENCY,
            serve: false,
            soak: None,
            no_faults: false,
            max_queued_spans: None,
            prometheus_port: None,
            sample_rate: None,
            disable_layers: Vec::new(),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// A usage error: the message says which flag and what it takes.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `examples/krakend.json` of the repository the demo was built from. `cargo run` sets the working
/// directory to wherever the user is, so a relative default would only work from the repository root; the
/// path cargo compiled in works from anywhere on the machine that built it, and the relative one is the
/// fallback for a binary copied elsewhere.
pub fn default_config_path() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("krakend.json");
    if built_in.is_file() { built_in } else { PathBuf::from("examples").join("krakend.json") }
}

/// Parses the flags (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut options = Options::new();
    let mut requests_given = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg =
            arg.into_string().map_err(|raw| UsageError(format!("argument {raw:?} is not valid UTF-8")))?;
        // `--flag=value` and `--flag value` both work.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |what: &str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| UsageError(format!("{flag} needs a value: {what}"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--config" => options.config = PathBuf::from(value("a file path")?),
            "--listen" => {
                let text = value("an address such as 127.0.0.1:8080")?;
                options.listen = text.parse().map_err(|_| {
                    UsageError(format!(
                        "--listen takes an IP address and port such as 127.0.0.1:8080, found {text:?}"
                    ))
                })?;
                options.listen_explicit = true;
            }
            "--agent-address" => {
                options.agent_address = Some(value("the agent's host:port, such as localhost:55678")?);
            }
            "--requests" => {
                let text = value("a number of requests")?;
                options.requests = number(&flag, &text, 1, u64::MAX)?;
                requests_given = true;
            }
            "--concurrency" => {
                let text = value("a number of requests in flight")?;
                options.concurrency = number(&flag, &text, 1, MAX_CONCURRENCY as u64)? as usize;
            }
            "--serve" => {
                if inline.is_some() {
                    return Err(UsageError("--serve takes no value".into()));
                }
                options.serve = true;
            }
            "--soak" => {
                let text = value("a number of seconds")?;
                options.soak = Some(std::time::Duration::from_secs(number(&flag, &text, 1, 86_400)?));
            }
            "--no-faults" => {
                if inline.is_some() {
                    return Err(UsageError("--no-faults takes no value".into()));
                }
                options.no_faults = true;
            }
            "--max-queued-spans" => {
                let text = value("a number of spans")?;
                options.max_queued_spans = Some(number(&flag, &text, 1, u32::MAX.into())? as usize);
            }
            // The values these two take are the config's to judge (`setup::load_config`); here they only
            // have to fit the config's field.
            "--prometheus-port" => {
                let text = value("a port, 1..=65535")?;
                options.prometheus_port = Some(field(&flag, &text, "a port number from 1 to 65535")?);
            }
            "--sample-rate" => {
                let text = value("a percentage, 0..=100")?;
                options.sample_rate = Some(field(&flag, &text, "a whole percentage from 0 to 100")?);
            }
            "--disable-layer" => {
                let text = value("router, pipe or backend")?;
                let layer = Layer::ALL.into_iter().find(|l| l.name() == text).ok_or_else(|| {
                    UsageError(format!("--disable-layer takes router, pipe or backend, found {text:?}"))
                })?;
                if !options.disable_layers.contains(&layer) {
                    options.disable_layers.push(layer);
                }
            }
            other if other.starts_with('-') => {
                return Err(UsageError(format!("unknown flag {other}")));
            }
            other => {
                return Err(UsageError(format!("unexpected argument {other:?}: every setting is a flag")));
            }
        }
    }
    if options.serve && requests_given {
        return Err(UsageError(
            "--requests and --serve exclude each other: --serve sends no load, it serves until Ctrl-C".into(),
        ));
    }
    if options.soak.is_some() && (options.serve || requests_given) {
        return Err(UsageError(
            "--soak excludes --serve and --requests: it sends load for the given number of seconds".into(),
        ));
    }
    if options.no_faults && options.soak.is_none() {
        return Err(UsageError("--no-faults only applies to --soak".into()));
    }
    Ok(Command::Run(options))
}

/// An integer flag value within `min..=max`.
fn number(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, UsageError> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(UsageError(format!("{flag} takes a whole number from {min} to {max}, found {text:?}"))),
    }
}

/// A flag value read into the type of the config field it overrides. `what` describes the value; whether
/// the config accepts it is for `Config::validate` to say.
fn field<T: std::str::FromStr>(flag: &str, text: &str, what: &str) -> Result<T, UsageError> {
    text.parse().map_err(|_| UsageError(format!("{flag} takes {what}, found {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, UsageError> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(options) => Ok(options),
            Command::Help => Err(UsageError("help".into())),
        }
    }

    #[test]
    fn flags_take_values_inline_or_next() {
        let options = run(&[
            "--requests=20",
            "--concurrency",
            "3",
            "--sample-rate",
            "10",
            "--disable-layer",
            "pipe",
            "--disable-layer=pipe",
            "--agent-address",
            "[::1]:55678",
        ])
        .expect("valid flags");
        assert_eq!((options.requests, options.concurrency, options.sample_rate), (20, 3, Some(10)));
        assert_eq!(options.disable_layers, [Layer::Pipe]);
        assert_eq!(options.agent_address.as_deref(), Some("[::1]:55678"));
        assert!(!options.listen_explicit);
    }

    #[test]
    fn mistakes_name_the_flag() {
        let message = |args: &[&str]| run(args).expect_err("invalid").0;
        assert_eq!(
            message(&["--sample-rate", "ten"]),
            "--sample-rate takes a whole percentage from 0 to 100, found \"ten\""
        );
        assert_eq!(
            message(&["--prometheus-port", "70000"]),
            "--prometheus-port takes a port number from 1 to 65535, found \"70000\""
        );
        assert_eq!(message(&["--requests"]), "--requests needs a value: a number of requests");
        assert_eq!(message(&["--bogus"]), "unknown flag --bogus");
        assert!(message(&["--disable-layer", "proxy"]).contains("router, pipe or backend"));
        assert!(message(&["--serve", "--requests", "5"]).contains("exclude each other"));
        assert!(message(&["--soak", "60", "--serve"]).contains("--soak excludes"));
        assert!(message(&["--no-faults"]).contains("only applies to --soak"));
        assert_eq!(message(&["--soak", "0"]), "--soak takes a whole number from 1 to 86400, found \"0\"");
    }
}
