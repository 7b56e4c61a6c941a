//! Reads the JSON shapes KrakenD users have into a [`Config`]: finds the block, checks every value's type
//! and syntax, collects warnings for unknown keys, then hands the typed result to `validate`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::parse_go_duration;
use super::report::{JsonPath, config_error, did_you_mean, found, kind, list, quoted};
use super::validate::{self, PORT, REPORTING_PERIOD, SAMPLE_RATE};
use super::{
    Config, ConfigWarning, EnabledLayers, LEGACY_NAMESPACE, NAMESPACE, OcAgentConfig, PrometheusConfig,
    SUPPORTED_EXPORTERS, ZPagesConfig,
};
use crate::Error;

const BLOCK_KEYS: [&str; 4] = ["sample_rate", "reporting_period", "enabled_layers", "exporters"];
const LAYER_KEYS: [&str; 3] = ["router", "pipe", "backend"];
const OCAGENT_KEYS: [&str; 9] = [
    "address",
    "service_name",
    "reconnection",
    "insecure",
    "enable_compression",
    "headers",
    "ca_file",
    "max_queued_spans",
    "max_queued_reports",
];
const PROMETHEUS_KEYS: [&str; 4] = ["port", "namespace", "listen_address", "legacy_names"];
const ZPAGES_KEYS: [&str; 2] = ["port", "listen_address"];

/// KrakenD's exporters that oclayer does not have.
const UNSUPPORTED_EXPORTERS: [&str; 7] =
    ["zipkin", "jaeger", "influxdb", "xray", "stackdriver", "datadog", "logger"];

/// Keys of a whole `krakend.json` that tell it apart from a mistyped block.
const KRAKEND_FILE_KEYS: [&str; 2] = ["version", "endpoints"];

pub(super) fn parse_str(text: &str) -> Result<Config, Error> {
    let document: Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        // serde_json appends " at line L column C"; the variant carries them as fields instead.
        let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m).to_owned();
        Error::ConfigSyntax { line: e.line(), column: e.column(), message }
    })?;
    parse_value(&document)
}

pub(super) fn parse_value(document: &Value) -> Result<Config, Error> {
    let (block, path) = locate_block(document)?;
    let mut reader = Reader::default();
    let mut config = reader.block(block, &path)?;
    validate::config(&mut config, &path)?;
    // KrakenD's rule for its config files; a Rust config may add its exporters in code instead.
    if !config.names_an_exporter() {
        return Err(config_error(
            &path.key("exporters"),
            format!(
                "no exporter configured: expected at least one of {}, e.g. {{\"prometheus\": {{\"port\": 9091}}}}",
                list(&SUPPORTED_EXPORTERS)
            ),
        ));
    }
    config.block_path = path;
    config.warnings = reader.warnings;
    Ok(config)
}

/// Finds the block: in `extra_config` of a whole file, in an `extra_config`-like object, or the document
/// itself when it is the bare block.
fn locate_block(document: &Value) -> Result<(&Value, JsonPath), Error> {
    let root = JsonPath::root();
    let Value::Object(map) = document else {
        return Err(config_error(
            &root,
            format!(
                "expected a JSON object: a whole krakend.json, or the {} block itself; found {}",
                quoted(NAMESPACE),
                found(document)
            ),
        ));
    };
    if let Some(extra) = map.get("extra_config") {
        let extra_path = root.key("extra_config");
        return match extra {
            Value::Object(extra) => find_namespace(extra, &extra_path),
            Value::Null => Err(missing_block(&extra_path)),
            other => Err(config_error(
                &extra_path,
                format!("expected an object of namespaces to their settings, found {}", found(other)),
            )),
        };
    }
    if map.contains_key(NAMESPACE) || map.contains_key(LEGACY_NAMESPACE) {
        return find_namespace(map, &root);
    }
    if BLOCK_KEYS.iter().any(|key| map.contains_key(*key)) {
        return Ok((document, root));
    }
    if let Some(key) = KRAKEND_FILE_KEYS.iter().find(|key| map.contains_key(**key)) {
        return Err(config_error(
            &root.key("extra_config"),
            format!(
                "missing: this looks like a whole krakend.json (it has {}) but it has no extra_config; add \
                 extra_config.{} with at least one exporter",
                quoted(key),
                quoted(NAMESPACE)
            ),
        ));
    }
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys.truncate(10);
    let seen = if keys.is_empty() {
        "the object is empty".to_owned()
    } else {
        format!("keys seen: {}", keys.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", "))
    };
    Err(config_error(
        &root,
        format!(
            "found neither extra_config (a whole krakend.json) nor any key of the {} block ({}); {seen}",
            quoted(NAMESPACE),
            list(&BLOCK_KEYS)
        ),
    ))
}

fn find_namespace<'a>(map: &'a Map<String, Value>, at: &JsonPath) -> Result<(&'a Value, JsonPath), Error> {
    match (present(map, NAMESPACE), present(map, LEGACY_NAMESPACE)) {
        (Some(_), Some(_)) => Err(config_error(
            &at.key(LEGACY_NAMESPACE),
            format!(
                "remove this legacy block: {} is present too, and only one block may configure telemetry",
                quoted(NAMESPACE)
            ),
        )),
        (Some(block), None) => Ok((block, at.key(NAMESPACE))),
        (None, Some(block)) => Ok((block, at.key(LEGACY_NAMESPACE))),
        (None, None) => Err(missing_block(at)),
    }
}

fn missing_block(at: &JsonPath) -> Error {
    let (current, legacy) = if at.is_root() {
        (quoted(NAMESPACE), quoted(LEGACY_NAMESPACE))
    } else {
        (at.key(NAMESPACE).to_string(), at.key(LEGACY_NAMESPACE).to_string())
    };
    config_error(
        at,
        format!(
            "missing: no telemetry block; looked for {current} and the legacy {legacy}; add the first, with at \
             least one exporter, e.g. {{\"exporters\": {{\"prometheus\": {{\"port\": 9091}}}}}}"
        ),
    )
}

/// A key's value, `None` when absent or `null` (Go's decoder keeps the default for `null`, and so do we).
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|value| !value.is_null())
}

/// Walks the block and remembers the warnings.
#[derive(Default)]
struct Reader {
    warnings: Vec<ConfigWarning>,
}

impl Reader {
    fn warn(&mut self, path: &JsonPath, message: String) {
        tracing::warn!(path = %path, "telemetry config: {message}");
        self.warnings.push(ConfigWarning { path: path.to_string(), message });
    }

    /// Warns about every key of `map` outside `known`, in sorted order so the output is stable.
    fn unknown_keys(
        &mut self,
        map: &Map<String, Value>,
        path: &JsonPath,
        known: &[&str],
        hint: fn(&str) -> Option<&'static str>,
    ) {
        let mut unknown: Vec<&str> =
            map.keys().map(String::as_str).filter(|key| !known.contains(key)).collect();
        unknown.sort_unstable();
        for key in unknown {
            let message = hint(key).map(str::to_owned).unwrap_or_else(|| {
                format!("unknown key, ignored (this block knows {}){}", list(known), did_you_mean(key, known))
            });
            self.warn(&path.key(key), message);
        }
    }

    fn block(&mut self, value: &Value, path: &JsonPath) -> Result<Config, Error> {
        let map = object(value, path, &format!("an object with the keys {}", list(&BLOCK_KEYS)))?;
        self.unknown_keys(map, path, &BLOCK_KEYS, |_| None);

        let mut config = Config {
            sample_rate: 0,
            // Zero becomes the default in `validate`, for the builder's sake as well.
            reporting_period: Duration::ZERO,
            enabled_layers: EnabledLayers::ALL,
            ocagent: None,
            prometheus: None,
            zpages: None,
            block_path: JsonPath::root(),
            warnings: Vec::new(),
        };
        if let Some(v) = present(map, "sample_rate") {
            config.sample_rate = sample_rate(v, &path.key("sample_rate"))?;
        }
        if let Some(v) = present(map, "reporting_period") {
            config.reporting_period = reporting_period(v, &path.key("reporting_period"))?;
        }
        if let Some(v) = present(map, "enabled_layers") {
            config.enabled_layers = self.enabled_layers(v, &path.key("enabled_layers"))?;
        }
        // A missing or empty `exporters` is reported once the rest is checked, by `parse_value`.
        if let Some(v) = present(map, "exporters") {
            self.exporters(v, &path.key("exporters"), &mut config)?;
        }
        Ok(config)
    }

    fn enabled_layers(&mut self, value: &Value, path: &JsonPath) -> Result<EnabledLayers, Error> {
        let map =
            object(value, path, "an object such as {\"router\": true, \"pipe\": true, \"backend\": true}")?;
        self.unknown_keys(map, path, &LAYER_KEYS, |_| None);
        // KrakenD's rule: once the block is present, a layer it does not name is off.
        let flag = |key: &str| present(map, key).map_or(Ok(false), |v| boolean(v, &path.key(key)));
        Ok(EnabledLayers { router: flag("router")?, pipe: flag("pipe")?, backend: flag("backend")? })
    }

    fn exporters(&mut self, value: &Value, path: &JsonPath, config: &mut Config) -> Result<(), Error> {
        let map = object(
            value,
            path,
            &format!("an object naming at least one exporter ({})", list(&SUPPORTED_EXPORTERS)),
        )?;
        let mut names: Vec<&String> = map.keys().collect();
        names.sort_unstable();
        for name in names {
            let here = path.key(name);
            let Some(settings) = present(map, name) else { continue };
            match name.as_str() {
                "ocagent" => config.ocagent = Some(self.ocagent(settings, &here)?),
                "prometheus" => config.prometheus = Some(self.prometheus(settings, &here)?),
                "zpages" => config.zpages = Some(self.zpages(settings, &here)?),
                other if UNSUPPORTED_EXPORTERS.contains(&other) => {
                    let forward = if other == "logger" {
                        String::new()
                    } else {
                        format!(
                            "; an OpenCensus agent or collector fed by the ocagent exporter can forward to {other}"
                        )
                    };
                    return Err(config_error(
                        &here,
                        format!(
                            "the {other} exporter of KrakenD is not supported by oclayer; supported: {}{forward}",
                            list(&SUPPORTED_EXPORTERS)
                        ),
                    ));
                }
                other => {
                    return Err(config_error(
                        &here,
                        format!(
                            "unknown exporter {}; supported: {}{}",
                            quoted(other),
                            list(&SUPPORTED_EXPORTERS),
                            did_you_mean(other, &SUPPORTED_EXPORTERS)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn ocagent(&mut self, value: &Value, path: &JsonPath) -> Result<OcAgentConfig, Error> {
        let map = object(value, path, &format!("an object with the keys {}", list(&OCAGENT_KEYS)))?;
        self.unknown_keys(map, path, &OCAGENT_KEYS, |_| None);
        let mut ocagent = OcAgentConfig::new();
        if let Some(v) = present(map, "address") {
            let expected = format!("a string, {}", validate::ADDRESS);
            ocagent.address = string(v, &path.key("address"), &expected)?.to_owned();
        }
        if let Some(v) = present(map, "service_name") {
            ocagent.service_name = string(v, &path.key("service_name"), "a string")?.to_owned();
        }
        if let Some(v) = present(map, "reconnection") {
            ocagent.reconnection = reconnection(v, &path.key("reconnection"))?;
        }
        if let Some(v) = present(map, "insecure") {
            ocagent.insecure = boolean(v, &path.key("insecure"))?;
        }
        if let Some(v) = present(map, "enable_compression") {
            ocagent.enable_compression = boolean(v, &path.key("enable_compression"))?;
        }
        if let Some(v) = present(map, "headers") {
            ocagent.headers = headers(v, &path.key("headers"))?;
        }
        if let Some(v) = present(map, "ca_file") {
            ocagent.ca_certificate_pem = Some(ca_file(v, &path.key("ca_file"))?);
        }
        if let Some(v) = present(map, "max_queued_spans") {
            ocagent.max_queued_spans = queue_bound(v, &path.key("max_queued_spans"))?;
        }
        if let Some(v) = present(map, "max_queued_reports") {
            ocagent.max_queued_reports = queue_bound(v, &path.key("max_queued_reports"))?;
        }
        Ok(ocagent)
    }

    fn prometheus(&mut self, value: &Value, path: &JsonPath) -> Result<PrometheusConfig, Error> {
        let map = object(value, path, &format!("an object with the keys {}", list(&PROMETHEUS_KEYS)))?;
        self.unknown_keys(map, path, &PROMETHEUS_KEYS, prometheus_hint);
        let port = required_port(map, path, "/metrics", 9091)?;
        let mut prometheus = PrometheusConfig::new(port);
        if let Some(v) = present(map, "namespace") {
            prometheus.namespace = string(v, &path.key("namespace"), "a string")?.to_owned();
        }
        if let Some(v) = present(map, "listen_address") {
            prometheus.listen_address = listen_address(v, &path.key("listen_address"))?;
        }
        if let Some(v) = present(map, "legacy_names") {
            prometheus.legacy_names = boolean(v, &path.key("legacy_names"))?;
        }
        Ok(prometheus)
    }

    fn zpages(&mut self, value: &Value, path: &JsonPath) -> Result<ZPagesConfig, Error> {
        let map = object(value, path, &format!("an object with the keys {}", list(&ZPAGES_KEYS)))?;
        self.unknown_keys(map, path, &ZPAGES_KEYS, |_| None);
        let mut zpages = ZPagesConfig::new(required_port(map, path, "the /debug pages", 55679)?);
        if let Some(v) = present(map, "listen_address") {
            zpages.listen_address = listen_address(v, &path.key("listen_address"))?;
        }
        Ok(zpages)
    }
}

/// KrakenD's Prometheus options that oclayer replaces with fixed behaviour.
fn prometheus_hint(key: &str) -> Option<&'static str> {
    match key {
        "tag_host" | "tag_path" | "tag_method" | "tag_statuscode" => Some(
            "KrakenD's tag_* options are ignored: oclayer's views always carry the host, route pattern, method \
             and status tags",
        ),
        _ => None,
    }
}

fn object<'a>(value: &'a Value, path: &JsonPath, expected: &str) -> Result<&'a Map<String, Value>, Error> {
    value
        .as_object()
        .ok_or_else(|| config_error(path, format!("expected {expected}, found {}", found(value))))
}

fn boolean(value: &Value, path: &JsonPath) -> Result<bool, Error> {
    value.as_bool().ok_or_else(|| {
        let hint = match value.as_str() {
            Some("true" | "false") => "; write it without quotes",
            _ => "",
        };
        config_error(path, format!("expected true or false, found {}{hint}", found(value)))
    })
}

fn string<'a>(value: &'a Value, path: &JsonPath, expected: &str) -> Result<&'a str, Error> {
    value.as_str().ok_or_else(|| config_error(path, format!("expected {expected}, found {}", found(value))))
}

/// `; write the number without quotes` when a string holds a number.
fn unquote_hint(value: &Value) -> &'static str {
    match value.as_str() {
        Some(s) if s.trim().parse::<f64>().is_ok() => "; write the number without quotes",
        _ => "",
    }
}

fn sample_rate(value: &Value, path: &JsonPath) -> Result<u8, Error> {
    match value.as_u64() {
        Some(n) => validate::sample_rate(n).map_err(|m| config_error(path, m)),
        None => Err(config_error(
            path,
            format!("expected {SAMPLE_RATE}, found {}{}", found(value), unquote_hint(value)),
        )),
    }
}

/// KrakenD's `reporting_period` is a number of seconds; zero and the upper bound are `validate`'s.
fn reporting_period(value: &Value, path: &JsonPath) -> Result<Duration, Error> {
    if let Some(seconds) = value.as_u64() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut hint = unquote_hint(value).to_owned();
    if let Some(nanos) = value.as_str().and_then(|s| parse_go_duration(s).ok())
        && nanos >= 0
        && nanos % 1_000_000_000 == 0
    {
        hint = format!("; it is a number of seconds, not a duration string: write {}", nanos / 1_000_000_000);
    }
    Err(config_error(path, format!("expected {REPORTING_PERIOD}, found {}{hint}", found(value))))
}

/// A Go duration string, not negative; zero is turned into the default by `validate`.
fn reconnection(value: &Value, path: &JsonPath) -> Result<Duration, Error> {
    const EXPECTED: &str = "a Go duration string such as \"2s\", \"500ms\" or \"1m30s\"";
    let Some(text) = value.as_str() else {
        let hint = if value.is_number() {
            format!("; add a unit and quotes, e.g. \"{value}s\"")
        } else {
            String::new()
        };
        return Err(config_error(path, format!("expected {EXPECTED}, found {}{hint}", found(value))));
    };
    match parse_go_duration(text) {
        Ok(nanos) if nanos < 0 => Err(config_error(
            path,
            format!("expected {EXPECTED}, found {}: a reconnection delay cannot be negative", quoted(text)),
        )),
        Ok(nanos) => Ok(Duration::from_nanos(nanos.unsigned_abs())),
        Err(why) => Err(config_error(path, format!("expected {EXPECTED}, found {}: {why}", quoted(text)))),
    }
}

/// Header names and string values; the names and values themselves are checked by `validate`. A value
/// that is not a string is reported by kind only: values are secrets.
fn headers(value: &Value, path: &JsonPath) -> Result<BTreeMap<String, String>, Error> {
    let map = object(value, path, "an object of header names to string values")?;
    let mut headers = BTreeMap::new();
    for (name, value) in map {
        match value {
            Value::String(text) => {
                headers.insert(name.clone(), text.clone());
            }
            Value::Null => {}
            other => {
                return Err(config_error(
                    &path.key(name),
                    format!(
                        "expected a string value, found {} (the value is not shown, as header values are often \
                         secrets)",
                        kind(other)
                    ),
                ));
            }
        }
    }
    Ok(headers)
}

/// The most a CA file may hold: the whole public web's roots in PEM are about 250 KB.
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// The CA file is read with the config, so that a wrong path fails at startup, naming the key and the file,
/// and not at the first connection. Relative paths are relative to the working directory, as KrakenD's.
/// Only a regular file of bounded size is read: a device such as `/dev/zero` or a pipe would never end.
fn ca_file(value: &Value, path: &JsonPath) -> Result<String, Error> {
    let file = string(value, path, "the path of a PEM file with the agent's CA certificate(s)")?;
    let cannot_read =
        |why: String| config_error(path, format!("cannot read the CA file {}: {why}", quoted(file)));
    let metadata = std::fs::metadata(file).map_err(|e| cannot_read(e.to_string()))?;
    if !metadata.is_file() {
        return Err(cannot_read("it is not a regular file".to_owned()));
    }
    if metadata.len() > MAX_CA_FILE_BYTES {
        return Err(cannot_read(format!(
            "it holds {} bytes, more than the {MAX_CA_FILE_BYTES} a CA bundle needs",
            metadata.len()
        )));
    }
    let pem = std::fs::read_to_string(file).map_err(|e| cannot_read(e.to_string()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(config_error(
            path,
            format!(
                "the CA file {} holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)",
                quoted(file)
            ),
        ));
    }
    Ok(pem)
}

/// A number of queued items; 0 keeps the default, as the builder's setters.
fn queue_bound(value: &Value, path: &JsonPath) -> Result<usize, Error> {
    value.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
        config_error(
            path,
            format!(
                "expected a whole number of items (0 for the default), found {}{}",
                found(value),
                unquote_hint(value)
            ),
        )
    })
}

fn required_port(
    map: &Map<String, Value>,
    path: &JsonPath,
    serves: &str,
    example: u16,
) -> Result<u16, Error> {
    let here = path.key("port");
    let Some(value) = present(map, "port") else {
        return Err(config_error(
            &here,
            format!("missing: expected {PORT} to serve {serves} on, e.g. {example}"),
        ));
    };
    match value.as_u64() {
        Some(n) => validate::port(n).map_err(|m| config_error(&here, m)),
        None => Err(config_error(
            &here,
            format!("expected {PORT}, found {}{}", found(value), unquote_hint(value)),
        )),
    }
}

fn listen_address(value: &Value, path: &JsonPath) -> Result<IpAddr, Error> {
    const EXPECTED: &str =
        "an IP address to listen on, such as \"0.0.0.0\" (all interfaces) or \"127.0.0.1\"";
    let parsed = value.as_str().map(|text| (text, text.parse::<IpAddr>()));
    match parsed {
        Some((_, Ok(address))) => Ok(address),
        Some((text, Err(_))) => {
            let hint = if text.eq_ignore_ascii_case("localhost") {
                "; host names are not accepted: write 127.0.0.1"
            } else if text.parse::<SocketAddr>().is_ok() {
                "; the port goes in `port`, not here"
            } else {
                ""
            };
            Err(config_error(path, format!("expected {EXPECTED}, found {}{hint}", found(value))))
        }
        None => Err(config_error(path, format!("expected {EXPECTED}, found {}", found(value)))),
    }
}
