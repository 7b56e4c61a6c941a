//! The rules every [`Config`] obeys, whether it came from JSON or from the builder. The JSON reader checks
//! types and syntax; everything about the values themselves is here, so both doors apply the same rules
//! with the same words.

use std::collections::BTreeMap;
use std::time::Duration;

use super::report::{JsonPath, config_error, quoted};
use super::{
    Config, DEFAULT_RECONNECTION, DEFAULT_REPORTING_PERIOD, OcAgentConfig, PrometheusConfig, ZPagesConfig,
};
use crate::Error;

/// What `sample_rate` must be.
pub(super) const SAMPLE_RATE: &str = "an integer percentage from 0 to 100";
/// What `reporting_period` must be.
pub(super) const REPORTING_PERIOD: &str = "a whole number of seconds, 0 or more (missing or 0 means 10)";
/// What a port must be.
pub(super) const PORT: &str = "a port number from 1 to 65535";
/// What `exporters.ocagent.address` must be.
pub(super) const ADDRESS: &str = "host:port such as \"localhost:55678\"";

/// Go's largest `time.Duration`, the bound KrakenD's configs live within.
pub(super) const MAX_GO_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Headers that the gRPC transport sets itself, or that HTTP/2 forbids (connection-specific headers).
const TRANSPORT_HEADERS: [&str; 7] =
    ["content-type", "te", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

/// Checks `config` and fills the defaults that depend on the value (zero periods). `block` is where the
/// settings live in the document (the root for the builder), so that errors name the full path.
pub(super) fn config(config: &mut Config, block: &JsonPath) -> Result<(), Error> {
    sample_rate(u64::from(config.sample_rate)).map_err(|m| config_error(&block.key("sample_rate"), m))?;
    config.reporting_period = reporting_period(config.reporting_period)
        .map_err(|m| config_error(&block.key("reporting_period"), m))?;

    // No exporter at all is not checked here: a Rust config may leave them to `TelemetryBuilder::exporter`.
    // The JSON reader requires one (KrakenD's rule), and `init` requires one from either side.
    let exporters = block.key("exporters");
    if let Some(ocagent) = &mut config.ocagent {
        ocagent_config(ocagent, &exporters.key("ocagent"))?;
    }
    if let Some(prometheus) = &config.prometheus {
        prometheus_config(prometheus, &exporters.key("prometheus"))?;
    }
    if let Some(zpages) = &config.zpages {
        port(u64::from(zpages.port)).map_err(|m| config_error(&exporters.key("zpages").key("port"), m))?;
    }
    if let (Some(prometheus), Some(zpages)) = (&config.prometheus, &config.zpages) {
        ports_apart(prometheus, zpages, &exporters)?;
    }
    Ok(())
}

/// `sample_rate`, given as a wide integer so that the JSON reader can pass what it read.
pub(super) fn sample_rate(n: u64) -> Result<u8, String> {
    u8::try_from(n).ok().filter(|n| *n <= 100).ok_or_else(|| {
        format!(
            "expected {SAMPLE_RATE}, found {n} (KrakenD would clamp it to 100; oclayer refuses it, as it is \
             most likely a typo)"
        )
    })
}

/// `reporting_period`: zero means the default; more than Go can hold is refused.
pub(super) fn reporting_period(period: Duration) -> Result<Duration, String> {
    if period.is_zero() {
        return Ok(DEFAULT_REPORTING_PERIOD);
    }
    if period > MAX_GO_DURATION {
        return Err(format!(
            "expected {REPORTING_PERIOD}, at most {} (Go's largest duration), found {}",
            MAX_GO_DURATION.as_secs(),
            seconds(period)
        ));
    }
    Ok(period)
}

/// A port of a server we listen on: 0 would mean "any free port", which nobody could scrape.
pub(super) fn port(n: u64) -> Result<u16, String> {
    match n {
        0 => Err(format!("expected {PORT}, found 0 (KrakenD would listen on a random port nobody knows)")),
        1..=65535 => Ok(n as u16),
        _ => Err(format!("expected {PORT}, found {n}")),
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{} seconds", d.as_secs()) } else { format!("{d:?}") }
}

fn ocagent_config(ocagent: &mut OcAgentConfig, path: &JsonPath) -> Result<(), Error> {
    address(&ocagent.address).map_err(|m| config_error(&path.key("address"), m))?;
    if ocagent.service_name.is_empty() {
        ocagent.service_name = super::executable_name();
    }
    if ocagent.reconnection.is_zero() {
        ocagent.reconnection = DEFAULT_RECONNECTION;
    } else if ocagent.reconnection > MAX_GO_DURATION {
        return Err(config_error(
            &path.key("reconnection"),
            format!(
                "expected at most 2562047h47m16.854775807s (Go's largest duration), found {:?}",
                ocagent.reconnection
            ),
        ));
    }
    ocagent.headers = headers(&ocagent.headers, &path.key("headers"))?;
    Ok(())
}

/// `host:port`, `[v6 address]:port`. No scheme: TLS or not is `insecure`'s choice.
pub(super) fn address(address: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("expected {ADDRESS}, found {}: {why}", quoted(address)));
    if address.is_empty() {
        return fail("it is empty (leave the key out for the default, localhost:55678)");
    }
    if address.contains("://") {
        return fail("write it without a scheme; TLS or plain text is chosen by `insecure`");
    }
    if let Some(bad) = address.chars().find(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(*c)) {
        return fail(&format!("{} is not allowed in an address", quoted(&bad.to_string())));
    }
    let (host, port_text) = if let Some(rest) = address.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return fail("the IPv6 address has no closing ]");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return fail("the text between [ and ] is not an IPv6 address");
        }
        match after.strip_prefix(':') {
            Some(port_text) => (v6, port_text),
            None => return fail("the port is missing, e.g. [::1]:55678"),
        }
    } else {
        match address.rsplit_once(':') {
            None => return fail("the port is missing (the agent's usual port is 55678)"),
            Some((host, _)) if host.contains(':') => {
                return fail("an IPv6 address needs brackets, e.g. [::1]:55678");
            }
            Some(parts) => parts,
        }
    };
    if host.is_empty() {
        return fail("the host is missing");
    }
    // Digits only: `parse` alone would also take "+80".
    let digits = !port_text.is_empty() && port_text.bytes().all(|b| b.is_ascii_digit());
    match port_text.parse::<u16>() {
        Ok(1..=65535) if digits => Ok(()),
        _ => fail(&format!("the port must be from 1 to 65535, not {}", quoted(port_text))),
    }
}

/// Checks every header and returns them with lowercase names, as gRPC metadata names are (grpc-go
/// lowercases them too, so KrakenD configs with `X-Api-Key` keep working). Values are never quoted in
/// errors: they are usually credentials.
pub(super) fn headers(
    headers: &BTreeMap<String, String>,
    path: &JsonPath,
) -> Result<BTreeMap<String, String>, Error> {
    let mut normalized: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for (name, value) in headers {
        let here = path.key(name);
        let lower = name.to_ascii_lowercase();
        header_name(&lower).map_err(|m| config_error(&here, m))?;
        header_value(value).map_err(|m| config_error(&here, m))?;
        if let Some((_, first)) = normalized.get(&lower) {
            return Err(config_error(
                &here,
                format!(
                    "the same header as {} once lowercased (gRPC metadata names are lowercase); keep one",
                    quoted(first)
                ),
            ));
        }
        normalized.insert(lower, (value.clone(), name));
    }
    Ok(normalized.into_iter().map(|(name, (value, _))| (name, value)).collect())
}

/// A gRPC metadata name (already lowercased): `[0-9a-z_.-]+`, not reserved, not binary.
fn header_name(name: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected a gRPC metadata name (ASCII letters, digits, '-', '_' and '.')";
    if name.is_empty() {
        return Err(format!("{EXPECTED}, found an empty name"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
        return Err(format!("{EXPECTED}, found {} with {}", quoted(name), quoted(&bad.to_string())));
    }
    if name.starts_with("grpc-") {
        return Err(format!("{} is reserved: names starting with grpc- belong to gRPC itself", quoted(name)));
    }
    if name.ends_with("-bin") {
        return Err(format!(
            "{} is binary metadata (the -bin suffix), whose value must be base64 bytes; config headers are \
             text: drop the suffix",
            quoted(name)
        ));
    }
    if TRANSPORT_HEADERS.contains(&name) {
        return Err(format!(
            "{} is set by the gRPC transport itself or forbidden in HTTP/2; remove it",
            quoted(name)
        ));
    }
    Ok(())
}

/// A gRPC text metadata value: printable ASCII. The value itself never appears in the message.
fn header_value(value: &str) -> Result<(), String> {
    let what = if value.chars().any(|c| c.is_ascii_control()) {
        "a control character (such as a newline or a tab)"
    } else if !value.is_ascii() {
        "a non-ASCII character"
    } else {
        return Ok(());
    };
    Err(format!(
        "expected a value of printable ASCII characters (gRPC text metadata), but the value contains {what}; \
         the value is not shown, as header values are often secrets"
    ))
}

/// Prometheus `namespace`: it prefixes every metric name, so it must itself be one.
fn prometheus_config(prometheus: &PrometheusConfig, path: &JsonPath) -> Result<(), Error> {
    port(u64::from(prometheus.port)).map_err(|m| config_error(&path.key("port"), m))?;
    namespace(&prometheus.namespace).map_err(|m| config_error(&path.key("namespace"), m))
}

pub(super) fn namespace(namespace: &str) -> Result<(), String> {
    let mut chars = namespace.chars();
    let valid = match chars.next() {
        None => true,
        Some(first) => {
            (first.is_ascii_alphabetic() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
    };
    if valid {
        return Ok(());
    }
    let mut suggestion: String =
        namespace.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if suggestion.starts_with(|c: char| c.is_ascii_digit()) {
        suggestion.insert(0, '_');
    }
    Err(format!(
        "expected a Prometheus name prefix (ASCII letters, digits and '_', not starting with a digit), found \
         {}; {} would do",
        quoted(namespace),
        quoted(&suggestion)
    ))
}

/// Two servers cannot listen on the same port of overlapping addresses.
fn ports_apart(
    prometheus: &PrometheusConfig,
    zpages: &ZPagesConfig,
    exporters: &JsonPath,
) -> Result<(), Error> {
    let overlap = prometheus.listen_address == zpages.listen_address
        || prometheus.listen_address.is_unspecified()
        || zpages.listen_address.is_unspecified();
    if prometheus.port == zpages.port && overlap {
        return Err(config_error(
            &exporters.key("zpages").key("port"),
            format!(
                "port {} is already taken by {}; give the two servers different ports",
                zpages.port,
                exporters.key("prometheus").key("port")
            ),
        ));
    }
    Ok(())
}
