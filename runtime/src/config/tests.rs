//! Config from JSON and from the builder: defaults, the shapes of the document, one test per error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// The block's path in a whole krakend.json.
const P: &str = r#"extra_config."telemetry/opencensus""#;

/// `block` inside a whole krakend.json.
fn whole(block: &str) -> String {
    format!(r#"{{"version": 3, "endpoints": [], "extra_config": {{"telemetry/opencensus": {block}}}}}"#)
}

/// The path and message of the error that `json` produces.
fn config_err(json: &str) -> (String, String) {
    match Config::from_json_str(json) {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("expected Error::Config for {json}, got {other:?}"),
    }
}

/// Asserts the error of `json` names `path` and says each of `phrases`.
#[track_caller]
fn assert_err(json: &str, path: &str, phrases: &[&str]) {
    let (got_path, message) = config_err(json);
    assert_eq!(got_path, path, "path for {json} (message: {message})");
    for phrase in phrases {
        assert!(message.contains(phrase), "message for {json} lacks {phrase:?}: {message}");
    }
}

/// Asserts the error of the block `block`, read as a whole file, at `P.suffix`.
#[track_caller]
fn assert_block_err(block: &str, suffix: &str, phrases: &[&str]) {
    let path = if suffix.is_empty() { P.to_owned() } else { format!("{P}.{suffix}") };
    assert_err(&whole(block), &path, phrases);
}

fn parse(json: &str) -> Config {
    Config::from_json_str(json).unwrap_or_else(|e| panic!("{json} should parse: {e}"))
}

const PROMETHEUS_ONLY: &str = r#"{"exporters": {"prometheus": {"port": 9091}}}"#;

// ---------------------------------------------------------------------------------------------------------
// Defaults and shapes

#[test]
fn minimal_block_gets_the_defaults() {
    let config = parse(PROMETHEUS_ONLY);
    assert_eq!(config.sample_rate, 0);
    assert_eq!(config.reporting_period, Duration::from_secs(10));
    assert_eq!(config.enabled_layers, EnabledLayers::ALL);
    assert_eq!(config.ocagent, None);
    assert_eq!(config.zpages, None);
    let prometheus = config.prometheus.as_ref().expect("prometheus");
    assert_eq!(prometheus.port, 9091);
    assert_eq!(prometheus.namespace, "");
    assert_eq!(prometheus.listen_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(!prometheus.legacy_names);
    assert!(config.warnings().is_empty());
}

#[test]
fn zpages_listen_on_loopback_unless_told() {
    // The pages show span attributes; Prometheus is scraped from other hosts, the pages are for the operator.
    let zpages = parse(r#"{"exporters": {"zpages": {"port": 8081}}}"#).zpages.expect("zpages");
    assert_eq!(zpages.listen_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let open = parse(r#"{"exporters": {"zpages": {"port": 8081, "listen_address": "0.0.0.0"}}}"#);
    assert_eq!(open.zpages.expect("zpages").listen_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
}

#[test]
fn ocagent_defaults() {
    let ocagent = parse(r#"{"exporters": {"ocagent": {}}}"#).ocagent.expect("ocagent");
    assert_eq!(ocagent.address, "localhost:55678");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(ocagent.service_name, exe.file_stem().unwrap().to_string_lossy());
    assert_eq!(ocagent.reconnection, Duration::from_secs(2));
    assert!(!ocagent.insecure);
    assert!(!ocagent.enable_compression);
    assert!(ocagent.headers.is_empty());
    assert_eq!(ocagent, OcAgentConfig::default());
}

#[test]
fn every_key_is_read() {
    let config = parse(&whole(
        r#"{
            "sample_rate": 25,
            "reporting_period": 30,
            "enabled_layers": {"router": true, "pipe": false, "backend": true},
            "exporters": {
                "ocagent": {
                    "address": "collector.internal:4000",
                    "service_name": "edge",
                    "reconnection": "1m30s",
                    "insecure": true,
                    "enable_compression": true,
                    "headers": {"X-Api-Key": "s3cret", "tenant": "blue"}
                },
                "prometheus": {"port": 9100, "namespace": "krakend", "listen_address": "127.0.0.1",
                               "legacy_names": true},
                "zpages": {"port": 55679, "listen_address": "::1"}
            }
        }"#,
    ));
    let expected = Config::builder()
        .sample_rate(25)
        .reporting_period(Duration::from_secs(30))
        .enabled_layers(EnabledLayers { router: true, pipe: false, backend: true })
        .ocagent(
            OcAgentConfig::new()
                .with_address("collector.internal:4000")
                .with_service_name("edge")
                .with_reconnection(Duration::from_secs(90))
                .with_insecure(true)
                .with_enable_compression(true)
                .with_header("x-api-key", "s3cret")
                .with_header("tenant", "blue"),
        )
        .prometheus(
            PrometheusConfig::new(9100)
                .with_namespace("krakend")
                .with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .with_legacy_names(true),
        )
        .zpages(ZPagesConfig::new(55679).with_listen_address(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        .build()
        .unwrap();
    assert_eq!(config, expected);
    assert!(config.warnings().is_empty());
}

#[test]
fn whole_file_extra_config_and_bare_block_agree() {
    let block = r#"{"sample_rate": 50, "exporters": {"zpages": {"port": 8081}}}"#;
    let from_file = parse(&whole(block));
    let from_extra = parse(&format!(r#"{{"telemetry/opencensus": {block}}}"#));
    let bare = parse(block);
    assert_eq!(from_file, bare);
    assert_eq!(from_extra, bare);
    assert_eq!(from_file.path_of("exporters.zpages.port"), format!("{P}.exporters.zpages.port"));
    assert_eq!(from_extra.path_of("sample_rate"), r#""telemetry/opencensus".sample_rate"#);
    assert_eq!(bare.path_of("exporters.zpages.port"), "exporters.zpages.port");
}

#[test]
fn bare_block_errors_start_at_its_keys() {
    assert_err(
        r#"{"sample_rate": 101, "exporters": {"zpages": {"port": 8081}}}"#,
        "sample_rate",
        &["found 101"],
    );
    assert_err(
        r#"{"exporters": {"ocagent": {"reconnection": "-1s"}}}"#,
        "exporters.ocagent.reconnection",
        &["cannot be negative"],
    );
}

#[test]
fn legacy_namespace_is_accepted_and_named_in_errors() {
    let legacy = r#"{"extra_config": {"github_com/devopsfaith/krakend-opencensus": {"sample_rate": 100,
        "exporters": {"prometheus": {"port": 9091}}}}}"#;
    let config = parse(legacy);
    assert_eq!(config.sample_rate, 100);
    assert_eq!(
        config.path_of("sample_rate"),
        r#"extra_config."github_com/devopsfaith/krakend-opencensus".sample_rate"#
    );
    assert_err(
        r#"{"extra_config": {"github_com/devopsfaith/krakend-opencensus": {"sample_rate": true}}}"#,
        r#"extra_config."github_com/devopsfaith/krakend-opencensus".sample_rate"#,
        &["expected an integer percentage from 0 to 100", "found true (a boolean)"],
    );
}

#[test]
fn other_extra_config_namespaces_are_left_alone() {
    let config = parse(
        r#"{"version": 3, "extra_config": {"security/cors": {"allow_origins": ["*"]},
            "telemetry/opencensus": {"exporters": {"prometheus": {"port": 9091}}}}}"#,
    );
    assert!(config.warnings().is_empty());
}

#[test]
fn null_means_missing() {
    let config = parse(
        r#"{"sample_rate": null, "reporting_period": null, "enabled_layers": null,
            "exporters": {"zipkin": null, "ocagent": {"address": null, "reconnection": null,
                          "headers": {"a": null}}}}"#,
    );
    assert_eq!(config.sample_rate, 0);
    assert_eq!(config.reporting_period, DEFAULT_REPORTING_PERIOD);
    assert_eq!(config.enabled_layers, EnabledLayers::ALL);
    assert_eq!(config.ocagent, Some(OcAgentConfig::new()));
}

// ---------------------------------------------------------------------------------------------------------
// Finding the block

#[test]
fn both_namespaces_is_an_error() {
    assert_err(
        r#"{"extra_config": {"telemetry/opencensus": {}, "github_com/devopsfaith/krakend-opencensus": {}}}"#,
        r#"extra_config."github_com/devopsfaith/krakend-opencensus""#,
        &["remove this legacy block", "only one block"],
    );
    assert_err(
        r#"{"telemetry/opencensus": {}, "github_com/devopsfaith/krakend-opencensus": {}}"#,
        r#""github_com/devopsfaith/krakend-opencensus""#,
        &["remove this legacy block"],
    );
}

#[test]
fn missing_block_says_where_it_looked() {
    assert_err(
        r#"{"version": 3, "extra_config": {"security/cors": {}}}"#,
        "extra_config",
        &[
            r#"looked for extra_config."telemetry/opencensus""#,
            r#"legacy extra_config."github_com/devopsfaith/krakend-opencensus""#,
            "at least one exporter",
        ],
    );
    assert_err(r#"{"version": 3, "extra_config": null}"#, "extra_config", &["missing: no telemetry block"]);
}

#[test]
fn krakend_file_without_extra_config() {
    assert_err(
        r#"{"version": 3, "port": 8080, "endpoints": []}"#,
        "extra_config",
        &["looks like a whole krakend.json", "has no extra_config"],
    );
}

#[test]
fn extra_config_that_is_not_an_object() {
    assert_err(r#"{"extra_config": []}"#, "extra_config", &["expected an object", "found an empty array"]);
}

#[test]
fn document_that_is_not_an_object() {
    assert_err("[1, 2]", "(root)", &["expected a JSON object", "found an array"]);
    assert_err("42", "(root)", &["found 42"]);
}

#[test]
fn document_with_no_known_key() {
    assert_err(
        r#"{"samplerate": 5}"#,
        "(root)",
        &["found neither extra_config", r#"keys seen: "samplerate""#],
    );
    assert_err("{}", "(root)", &["the object is empty"]);
}

#[test]
fn block_that_is_not_an_object() {
    assert_block_err("true", "", &["expected an object with the keys sample_rate", "found true (a boolean)"]);
}

#[test]
fn invalid_json_reports_line_and_column() {
    let err = Config::from_json_str("{\n  \"sample_rate\": 10,\n  \"exporters\": {,}\n}").unwrap_err();
    let Error::ConfigSyntax { line, column, message } = &err else { panic!("got {err:?}") };
    assert_eq!((*line, *column), (3, 17));
    assert_eq!(message, "key must be a string");
    assert_eq!(
        err.to_string(),
        "telemetry config is not valid JSON at line 3, column 17: key must be a string"
    );
    let Error::ConfigSyntax { line, .. } = Config::from_json_str("").unwrap_err() else { panic!() };
    assert_eq!(line, 1);
}

// ---------------------------------------------------------------------------------------------------------
// sample_rate, reporting_period, enabled_layers

#[test]
fn sample_rate_bounds() {
    for (rate, want) in [(0, 0), (1, 1), (100, 100)] {
        let config =
            parse(&format!(r#"{{"sample_rate": {rate}, "exporters": {{"zpages": {{"port": 1}}}}}}"#));
        assert_eq!(config.sample_rate, want);
    }
}

#[test]
fn sample_rate_above_100() {
    assert_block_err(
        r#"{"sample_rate": 150, "exporters": {"zpages": {"port": 1}}}"#,
        "sample_rate",
        &["expected an integer percentage from 0 to 100, found 150", "KrakenD would clamp"],
    );
    assert_block_err(
        r#"{"sample_rate": 18446744073709551615}"#,
        "sample_rate",
        &["found 18446744073709551615"],
    );
}

#[test]
fn sample_rate_negative() {
    assert_block_err(r#"{"sample_rate": -1}"#, "sample_rate", &["from 0 to 100, found -1"]);
}

#[test]
fn sample_rate_fraction() {
    assert_block_err(r#"{"sample_rate": 50.5}"#, "sample_rate", &["found 50.5"]);
    assert_block_err(r#"{"sample_rate": 50.0}"#, "sample_rate", &["found 50.0"]);
}

#[test]
fn sample_rate_as_string() {
    assert_block_err(
        r#"{"sample_rate": "50"}"#,
        "sample_rate",
        &[r#"found "50" (a string); write the number without quotes"#],
    );
}

#[test]
fn reporting_period_values() {
    for (seconds, want) in [(0, 10), (1, 1), (60, 60)] {
        let config =
            parse(&format!(r#"{{"reporting_period": {seconds}, "exporters": {{"zpages": {{"port": 1}}}}}}"#));
        assert_eq!(config.reporting_period, Duration::from_secs(want));
    }
    let config = parse(r#"{"reporting_period": 9223372036, "exporters": {"zpages": {"port": 1}}}"#);
    assert_eq!(config.reporting_period, Duration::from_secs(9_223_372_036));
}

#[test]
fn reporting_period_negative() {
    assert_block_err(r#"{"reporting_period": -5}"#, "reporting_period", &["0 or more", "found -5"]);
}

#[test]
fn reporting_period_as_duration_string() {
    assert_block_err(
        r#"{"reporting_period": "10s"}"#,
        "reporting_period",
        &[r#"found "10s" (a string)"#, "not a duration string: write 10"],
    );
}

#[test]
fn reporting_period_fraction() {
    assert_block_err(
        r#"{"reporting_period": 1.5}"#,
        "reporting_period",
        &["a whole number of seconds", "found 1.5"],
    );
}

#[test]
fn reporting_period_beyond_go() {
    assert_block_err(
        r#"{"reporting_period": 9223372037, "exporters": {"zpages": {"port": 1}}}"#,
        "reporting_period",
        &["at most 9223372036", "found 9223372037 seconds"],
    );
}

#[test]
fn enabled_layers_present_turns_off_what_it_omits() {
    let config = parse(r#"{"enabled_layers": {"backend": true}, "exporters": {"zpages": {"port": 1}}}"#);
    assert_eq!(config.enabled_layers, EnabledLayers { router: false, pipe: false, backend: true });
    assert_eq!(config.enabled_layers.describe(), "router off, pipe off, backend on");
    let config = parse(r#"{"enabled_layers": {}, "exporters": {"zpages": {"port": 1}}}"#);
    assert_eq!(config.enabled_layers, EnabledLayers::NONE);
    assert_eq!(EnabledLayers::ALL.describe(), "router on, pipe on, backend on");
}

#[test]
fn enabled_layers_wrong_types() {
    assert_block_err(
        r#"{"enabled_layers": {"router": "true"}}"#,
        "enabled_layers.router",
        &[r#"expected true or false, found "true" (a string); write it without quotes"#],
    );
    assert_block_err(r#"{"enabled_layers": {"pipe": 1}}"#, "enabled_layers.pipe", &["found 1"]);
    assert_block_err(r#"{"enabled_layers": true}"#, "enabled_layers", &["expected an object such as"]);
}

// ---------------------------------------------------------------------------------------------------------
// exporters

#[test]
fn no_exporter_at_all() {
    for block in [r#"{"sample_rate": 10}"#, r#"{"exporters": {}}"#, r#"{"exporters": {"ocagent": null}}"#] {
        assert_block_err(
            block,
            "exporters",
            &["no exporter configured: expected at least one of ocagent, prometheus and zpages"],
        );
    }
}

#[test]
fn exporters_not_an_object() {
    assert_block_err(
        r#"{"exporters": ["prometheus"]}"#,
        "exporters",
        &["expected an object naming", "found an array"],
    );
}

#[test]
fn krakend_exporters_we_do_not_support() {
    for name in ["zipkin", "jaeger", "influxdb", "xray", "stackdriver", "datadog", "logger"] {
        assert_block_err(
            &format!(r#"{{"exporters": {{"prometheus": {{"port": 9091}}, "{name}": {{}}}}}}"#),
            &format!("exporters.{name}"),
            &["not supported by oclayer", "supported: ocagent, prometheus and zpages"],
        );
    }
    let (_, message) = config_err(&whole(r#"{"exporters": {"jaeger": {}}}"#));
    assert!(message.contains("can forward to jaeger"), "{message}");
}

#[test]
fn unknown_exporter() {
    assert_block_err(
        r#"{"exporters": {"prometeus": {"port": 9091}}}"#,
        "exporters.prometeus",
        &[
            r#"unknown exporter "prometeus"; supported: ocagent, prometheus and zpages (did you mean "prometheus"?)"#,
        ],
    );
    assert_block_err(
        r#"{"exporters": {"statsd": {}}}"#,
        "exporters.statsd",
        &["unknown exporter \"statsd\""],
    );
}

#[test]
fn exporter_settings_not_an_object() {
    assert_block_err(
        r#"{"exporters": {"ocagent": true}}"#,
        "exporters.ocagent",
        &["expected an object with the keys address"],
    );
    assert_block_err(r#"{"exporters": {"prometheus": 9091}}"#, "exporters.prometheus", &["found 9091"]);
    assert_block_err(r#"{"exporters": {"zpages": "on"}}"#, "exporters.zpages", &["found \"on\" (a string)"]);
}

// ---------------------------------------------------------------------------------------------------------
// ocagent

fn ocagent_block(settings: &str) -> String {
    format!(r#"{{"exporters": {{"ocagent": {settings}}}}}"#)
}

fn ocagent_of(settings: &str) -> OcAgentConfig {
    parse(&ocagent_block(settings)).ocagent.expect("ocagent")
}

#[test]
fn reconnection_accepts_go_durations() {
    for (text, want) in [
        ("2s", Duration::from_secs(2)),
        ("500ms", Duration::from_millis(500)),
        ("1m30s", Duration::from_secs(90)),
        ("1.5h", Duration::from_secs(5400)),
        ("250\u{00B5}s", Duration::from_micros(250)),
        ("+3s", Duration::from_secs(3)),
        ("0", DEFAULT_RECONNECTION),
        ("0s", DEFAULT_RECONNECTION),
        ("-0", DEFAULT_RECONNECTION),
    ] {
        let settings = format!(r#"{{"reconnection": "{text}"}}"#);
        assert_eq!(ocagent_of(&settings).reconnection, want, "{text}");
    }
}

#[test]
fn reconnection_negative() {
    assert_block_err(
        &ocagent_block(r#"{"reconnection": "-2s"}"#),
        "exporters.ocagent.reconnection",
        &[r#"found "-2s": a reconnection delay cannot be negative"#],
    );
}

#[test]
fn reconnection_without_unit() {
    assert_block_err(
        &ocagent_block(r#"{"reconnection": "2"}"#),
        "exporters.ocagent.reconnection",
        &[r#"expected a Go duration string such as "2s""#, r#"found "2": a number needs a unit"#],
    );
}

#[test]
fn reconnection_unknown_unit() {
    assert_block_err(
        &ocagent_block(r#"{"reconnection": "1d"}"#),
        "exporters.ocagent.reconnection",
        &[r#"found "1d": unknown unit "d""#, "write 24h"],
    );
}

#[test]
fn reconnection_unparsable() {
    assert_block_err(
        &ocagent_block(r#"{"reconnection": "soon"}"#),
        "exporters.ocagent.reconnection",
        &[r#"found "soon": not a Go duration"#],
    );
}

#[test]
fn reconnection_overflow() {
    assert_block_err(
        &ocagent_block(r#"{"reconnection": "3000000h"}"#),
        "exporters.ocagent.reconnection",
        &["out of range"],
    );
}

#[test]
fn reconnection_as_number() {
    assert_block_err(
        &ocagent_block(r#"{"reconnection": 2}"#),
        "exporters.ocagent.reconnection",
        &[r#"found 2; add a unit and quotes, e.g. "2s""#],
    );
}

#[test]
fn address_forms() {
    for address in
        ["collector:55678", "10.0.0.7:4000", "[::1]:55678", "[2001:db8::1]:1", "my_agent.local:65535"]
    {
        assert_eq!(ocagent_of(&format!(r#"{{"address": "{address}"}}"#)).address, address);
    }
}

#[test]
fn address_invalid() {
    for (address, phrase) in [
        ("", "it is empty"),
        ("collector", "the port is missing"),
        ("http://collector:55678", "without a scheme"),
        ("::1:55678", "needs brackets"),
        ("[::1]", "the port is missing"),
        ("[::1:55678", "no closing ]"),
        ("[nope]:1", "not an IPv6 address"),
        (":55678", "the host is missing"),
        ("collector:0", "from 1 to 65535, not \"0\""),
        ("collector:70000", "not \"70000\""),
        ("collector:+80", "not \"+80\""),
        ("collector:", "not \"\""),
        ("my collector:1", "\" \" is not allowed"),
    ] {
        let (path, message) = config_err(&whole(&ocagent_block(&format!(r#"{{"address": "{address}"}}"#))));
        assert_eq!(path, format!("{P}.exporters.ocagent.address"));
        assert!(message.starts_with(r#"expected host:port such as "localhost:55678""#), "{message}");
        assert!(message.contains(phrase), "{address}: {message}");
    }
}

#[test]
fn address_wrong_type() {
    assert_block_err(
        &ocagent_block(r#"{"address": 55678}"#),
        "exporters.ocagent.address",
        &["expected a string, host:port", "found 55678"],
    );
}

#[test]
fn service_name_empty_means_default() {
    assert_eq!(ocagent_of(r#"{"service_name": ""}"#).service_name, OcAgentConfig::new().service_name);
    assert_block_err(
        &ocagent_block(r#"{"service_name": ["a"]}"#),
        "exporters.ocagent.service_name",
        &["found an array"],
    );
}

#[test]
fn booleans_must_be_booleans() {
    assert_block_err(
        &ocagent_block(r#"{"insecure": "yes"}"#),
        "exporters.ocagent.insecure",
        &["expected true or false"],
    );
    assert_block_err(
        &ocagent_block(r#"{"enable_compression": 0}"#),
        "exporters.ocagent.enable_compression",
        &["expected true or false, found 0"],
    );
}

#[test]
fn header_names_are_lowercased() {
    let headers = ocagent_of(r#"{"headers": {"X-Api-Key": "k", "Tenant.ID_2": "t"}}"#).headers;
    assert_eq!(
        headers.into_iter().collect::<Vec<_>>(),
        [("tenant.id_2".to_owned(), "t".to_owned()), ("x-api-key".to_owned(), "k".to_owned())]
    );
}

#[test]
fn header_name_invalid() {
    for (name, phrase) in [
        ("x api", r#"found "x api" with " ""#),
        ("", "found an empty name"),
        ("x:y", r#"with ":""#),
        ("clé", r#"with "é""#),
        ("grpc-timeout", "reserved"),
        ("trace-bin", "binary metadata"),
        ("Content-Type", "set by the gRPC transport"),
        ("connection", "forbidden in HTTP/2"),
    ] {
        let json = whole(&ocagent_block(&format!(r#"{{"headers": {{"{name}": "v"}}}}"#)));
        let (path, message) = config_err(&json);
        assert_eq!(
            path,
            format!("{P}.exporters.ocagent.headers.{}", report::JsonPath::root().key(name)),
            "{name}"
        );
        assert!(message.contains(phrase), "{name}: {message}");
    }
}

#[test]
fn header_value_invalid_and_never_shown() {
    for (value, phrase) in [
        ("line\\nbreak-SECRET", "a control character"),
        ("tab\\tSECRET", "a control character"),
        ("caf\u{e9}-SECRET", "a non-ASCII character"),
    ] {
        let json = whole(&ocagent_block(&format!(r#"{{"headers": {{"authorization": "{value}"}}}}"#)));
        let (path, message) = config_err(&json);
        assert_eq!(path, format!("{P}.exporters.ocagent.headers.authorization"));
        assert!(message.contains(phrase), "{message}");
        assert!(message.contains("the value is not shown"), "{message}");
        assert!(!message.contains("SECRET"), "the value leaked: {message}");
    }
}

#[test]
fn header_value_wrong_type_is_not_shown() {
    let (path, message) = config_err(&whole(&ocagent_block(r#"{"headers": {"x-key": 123456789}}"#)));
    assert_eq!(path, format!("{P}.exporters.ocagent.headers.\"x-key\""));
    assert!(message.contains("expected a string value, found a number"), "{message}");
    assert!(!message.contains("123456789"), "the value leaked: {message}");
}

#[test]
fn header_names_clash_once_lowercased() {
    assert_block_err(
        &ocagent_block(r#"{"headers": {"X-Key": "a", "x-key": "b"}}"#),
        r#"exporters.ocagent.headers."x-key""#,
        &[r#"the same header as "X-Key" once lowercased"#],
    );
}

#[test]
fn headers_not_an_object() {
    assert_block_err(
        &ocagent_block(r#"{"headers": ["x-key: v"]}"#),
        "exporters.ocagent.headers",
        &["expected an object of header names to string values"],
    );
}

#[test]
fn debug_never_shows_header_values() {
    let config = parse(&ocagent_block(r#"{"headers": {"authorization": "Bearer SECRET"}}"#));
    let debug = format!("{config:?}");
    assert!(debug.contains("authorization"), "{debug}");
    assert!(!debug.contains("SECRET"), "{debug}");
}

// ---------------------------------------------------------------------------------------------------------
// prometheus and zpages

#[test]
fn prometheus_port_missing() {
    assert_block_err(
        r#"{"exporters": {"prometheus": {"namespace": "krakend"}}}"#,
        "exporters.prometheus.port",
        &["missing: expected a port number from 1 to 65535 to serve /metrics on"],
    );
}

#[test]
fn prometheus_port_zero() {
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 0}}}"#,
        "exporters.prometheus.port",
        &["from 1 to 65535, found 0", "random port"],
    );
}

#[test]
fn prometheus_port_out_of_range() {
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 65536}}}"#,
        "exporters.prometheus.port",
        &["found 65536"],
    );
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": -80}}}"#,
        "exporters.prometheus.port",
        &["found -80"],
    );
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": "9091"}}}"#,
        "exporters.prometheus.port",
        &["without quotes"],
    );
}

#[test]
fn prometheus_namespace() {
    assert_eq!(
        parse(r#"{"exporters": {"prometheus": {"port": 1, "namespace": "_k8s_gw"}}}"#)
            .prometheus
            .unwrap()
            .namespace,
        "_k8s_gw"
    );
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 1, "namespace": "my-gateway"}}}"#,
        "exporters.prometheus.namespace",
        &[r#"found "my-gateway"; "my_gateway" would do"#],
    );
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 1, "namespace": "2fast"}}}"#,
        "exporters.prometheus.namespace",
        &[r#""_2fast" would do"#],
    );
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 1, "namespace": 7}}}"#,
        "exporters.prometheus.namespace",
        &["expected a string, found 7"],
    );
}

#[test]
fn listen_address_invalid() {
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 1, "listen_address": "localhost"}}}"#,
        "exporters.prometheus.listen_address",
        &["expected an IP address to listen on", "write 127.0.0.1"],
    );
    assert_block_err(
        r#"{"exporters": {"zpages": {"port": 1, "listen_address": "127.0.0.1:8080"}}}"#,
        "exporters.zpages.listen_address",
        &["the port goes in `port`"],
    );
    assert_block_err(
        r#"{"exporters": {"zpages": {"port": 1, "listen_address": 0}}}"#,
        "exporters.zpages.listen_address",
        &["found 0"],
    );
}

#[test]
fn legacy_names_must_be_boolean() {
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 1, "legacy_names": "yes"}}}"#,
        "exporters.prometheus.legacy_names",
        &["expected true or false"],
    );
}

#[test]
fn zpages_port() {
    assert_block_err(
        r#"{"exporters": {"zpages": {}}}"#,
        "exporters.zpages.port",
        &["missing", "/debug pages"],
    );
    assert_block_err(r#"{"exporters": {"zpages": {"port": 0}}}"#, "exporters.zpages.port", &["found 0"]);
    assert_block_err(
        r#"{"exporters": {"zpages": {"port": 1e3}}}"#,
        "exporters.zpages.port",
        &["found 1000.0"],
    );
}

#[test]
fn zpages_and_prometheus_on_one_port() {
    assert_block_err(
        r#"{"exporters": {"prometheus": {"port": 9091}, "zpages": {"port": 9091}}}"#,
        "exporters.zpages.port",
        &[&format!("port 9091 is already taken by {P}.exporters.prometheus.port")],
    );
    // Distinct addresses may share a port.
    let config = parse(
        r#"{"exporters": {"prometheus": {"port": 9091, "listen_address": "127.0.0.1"},
                          "zpages": {"port": 9091, "listen_address": "127.0.0.2"}}}"#,
    );
    assert!(config.zpages.is_some());
}

// ---------------------------------------------------------------------------------------------------------
// Unknown keys are warnings

#[test]
fn unknown_keys_are_warnings_with_paths() {
    let config = parse(&whole(
        r#"{"sample_rate": 1, "samplingRate": 5,
            "enabled_layers": {"router": true, "proxy": true},
            "exporters": {"ocagent": {"adress": "x:1", "timeout": "1s"},
                          "prometheus": {"port": 9091, "tag_host": true},
                          "zpages": {"port": 8081, "path": "/z"}}}"#,
    ));
    let warnings: Vec<(&str, &str)> =
        config.warnings().iter().map(|w| (w.path.as_str(), w.message.as_str())).collect();
    let paths: Vec<String> = warnings.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        paths,
        [
            format!("{P}.samplingRate"),
            format!("{P}.enabled_layers.proxy"),
            format!("{P}.exporters.ocagent.adress"),
            format!("{P}.exporters.ocagent.timeout"),
            format!("{P}.exporters.prometheus.tag_host"),
            format!("{P}.exporters.zpages.path"),
        ]
    );
    assert_eq!(
        warnings[0].1,
        "unknown key, ignored (this block knows sample_rate, reporting_period, enabled_layers and exporters) \
         (did you mean \"sample_rate\"?)"
    );
    assert!(warnings[2].1.ends_with("(did you mean \"address\"?)"), "{}", warnings[2].1);
    assert!(!warnings[3].1.contains("did you mean"), "{}", warnings[3].1);
    assert!(warnings[4].1.starts_with("KrakenD's tag_* options are ignored"), "{}", warnings[4].1);
    assert_eq!(
        config.warnings()[1].to_string(),
        format!(
            "telemetry config at {P}.enabled_layers.proxy: unknown key, ignored (this block knows router, pipe \
             and backend)"
        )
    );
    // The unknown ocagent key did not get in the way of the known one.
    assert_eq!(config.ocagent.unwrap().address, "localhost:55678");
}

// ---------------------------------------------------------------------------------------------------------
// The builder

#[test]
fn builder_defaults_and_equality_with_json() {
    let built = Config::builder().prometheus(PrometheusConfig::new(9091)).build().unwrap();
    assert_eq!(built, parse(PROMETHEUS_ONLY));
    assert_eq!(built.reporting_period, DEFAULT_REPORTING_PERIOD);
    assert_eq!(built.enabled_layers, EnabledLayers::ALL);
    assert!(built.warnings().is_empty());
    assert_eq!(built.path_of("sample_rate"), "sample_rate");
}

#[test]
fn builder_allows_sub_second_reporting() {
    let config = Config::builder().reporting_period(Duration::from_millis(50)).build().unwrap();
    assert_eq!(config.reporting_period, Duration::from_millis(50));
}

fn builder_err(builder: ConfigBuilder) -> (String, String) {
    match builder.build() {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

/// Exporters may be added in code (`TelemetryBuilder::exporter`), so a built config may name none; `init`
/// checks that there is one from either side.
#[test]
fn builder_accepts_a_config_without_exporters() {
    let config = Config::builder().sample_rate(100).build().expect("no exporter is fine in Rust");
    assert_eq!((config.ocagent, config.prometheus, config.zpages), (None, None, None));
    assert_eq!(config.sample_rate, 100);
    assert_eq!(config.reporting_period, DEFAULT_REPORTING_PERIOD, "validated and normalized all the same");
}

#[test]
fn builder_checks_sample_rate() {
    let (path, message) = builder_err(Config::builder().sample_rate(101));
    assert_eq!(path, "sample_rate");
    assert!(message.contains("from 0 to 100, found 101"), "{message}");
}

#[test]
fn builder_checks_reporting_period_bound() {
    let (path, message) = builder_err(Config::builder().reporting_period(Duration::from_secs(u64::MAX)));
    assert_eq!(path, "reporting_period");
    assert!(message.contains("at most 9223372036"), "{message}");
}

#[test]
fn builder_checks_ports() {
    let (path, message) = builder_err(Config::builder().prometheus(PrometheusConfig::new(0)));
    assert_eq!(path, "exporters.prometheus.port");
    assert!(message.contains("found 0"), "{message}");
    let (path, _) = builder_err(Config::builder().zpages(ZPagesConfig::new(0)));
    assert_eq!(path, "exporters.zpages.port");
    let (path, message) =
        builder_err(Config::builder().prometheus(PrometheusConfig::new(9)).zpages(ZPagesConfig::new(9)));
    assert_eq!(path, "exporters.zpages.port");
    assert!(message.contains("already taken by exporters.prometheus.port"), "{message}");
}

#[test]
fn builder_checks_ocagent() {
    let (path, message) = builder_err(Config::builder().ocagent(OcAgentConfig::new().with_address("agent")));
    assert_eq!(path, "exporters.ocagent.address");
    assert!(message.contains("the port is missing"), "{message}");

    let (path, message) =
        builder_err(Config::builder().ocagent(OcAgentConfig::new().with_header("X Y", "SECRET-VALUE")));
    assert_eq!(path, r#"exporters.ocagent.headers."X Y""#);
    assert!(!message.contains("SECRET-VALUE"), "{message}");

    let (path, _) = builder_err(Config::builder().ocagent(OcAgentConfig::new().with_header("k", "a\rb")));
    assert_eq!(path, "exporters.ocagent.headers.k");

    let (path, message) = builder_err(
        Config::builder().ocagent(OcAgentConfig::new().with_reconnection(Duration::from_secs(u64::MAX))),
    );
    assert_eq!(path, "exporters.ocagent.reconnection");
    assert!(message.contains("at most 2562047h47m16.854775807s"), "{message}");
}

#[test]
fn builder_normalizes_like_json() {
    let config = Config::builder()
        .ocagent(
            OcAgentConfig::new()
                .with_service_name("")
                .with_reconnection(Duration::ZERO)
                .with_headers([("X-Tenant", "blue")]),
        )
        .build()
        .unwrap();
    let ocagent = config.ocagent.unwrap();
    assert_eq!(ocagent.service_name, OcAgentConfig::new().service_name);
    assert_eq!(ocagent.reconnection, DEFAULT_RECONNECTION);
    assert_eq!(ocagent.headers.get("x-tenant").map(String::as_str), Some("blue"));
}

#[test]
fn builder_checks_namespace() {
    let (path, _) = builder_err(Config::builder().prometheus(PrometheusConfig::new(1).with_namespace("a.b")));
    assert_eq!(path, "exporters.prometheus.namespace");
}

// ---------------------------------------------------------------------------------------------------------
// validate: a config changed after it was read or built

/// The path and message of `config.validate()`'s error.
fn validate_err(config: &Config) -> (String, String) {
    match config.validate() {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[test]
fn validate_checks_changed_fields_where_the_file_has_them() {
    let read = parse(&whole(
        r#"{"exporters": {"prometheus": {"port": 9091}, "ocagent": {"address": "agent:55678"}}}"#,
    ));
    assert_eq!(read.validate().ok(), Some(()));

    let mut config = read.clone();
    config.sample_rate = 150;
    let (path, message) = validate_err(&config);
    assert_eq!(path, format!("{P}.sample_rate"));
    assert!(message.contains("from 0 to 100, found 150"), "{message}");

    let mut config = read.clone();
    config.prometheus.as_mut().expect("prometheus").port = 0;
    assert_eq!(validate_err(&config).0, format!("{P}.exporters.prometheus.port"));

    let mut config = read.clone();
    config.zpages = Some(ZPagesConfig::new(9091));
    let (path, message) = validate_err(&config);
    assert_eq!(path, format!("{P}.exporters.zpages.port"));
    assert!(message.contains("already taken"), "{message}");

    let mut config = read.clone();
    config.ocagent.as_mut().expect("ocagent").address = "http://agent:55678".to_owned();
    let (path, message) = validate_err(&config);
    assert_eq!(path, format!("{P}.exporters.ocagent.address"));
    assert!(message.contains("without a scheme"), "{message}");

    // Values that stand for a default pass, as in the builder; so does a config left with no exporter
    // (one may be added in code; `init` checks that there is one).
    let mut config = read;
    config.reporting_period = Duration::ZERO;
    config.ocagent.as_mut().expect("ocagent").reconnection = Duration::ZERO;
    config.enabled_layers.pipe = false;
    assert_eq!(config.validate().ok(), Some(()));
    config.ocagent = None;
    config.prometheus = None;
    assert_eq!(config.validate().ok(), Some(()));
}

#[test]
fn validate_names_builder_settings_by_their_keys() {
    let mut config = Config::builder().prometheus(PrometheusConfig::new(9091)).build().expect("valid");
    config.sample_rate = 101;
    assert_eq!(validate_err(&config).0, "sample_rate");
    config.sample_rate = 100;
    config.prometheus = Some(PrometheusConfig::new(9091).with_namespace("my-gateway"));
    assert_eq!(validate_err(&config).0, "exporters.prometheus.namespace");
}

#[test]
fn validated_fills_the_defaults_as_reading_does() {
    let mut config = parse(PROMETHEUS_ONLY);
    config.reporting_period = Duration::ZERO;
    config.ocagent =
        Some(OcAgentConfig::new().with_reconnection(Duration::ZERO).with_header("X-Tenant", "blue"));
    let config = config.validated().expect("valid");
    assert_eq!(config.reporting_period, DEFAULT_REPORTING_PERIOD);
    let ocagent = config.ocagent.expect("ocagent");
    assert_eq!(ocagent.reconnection, DEFAULT_RECONNECTION);
    assert_eq!(ocagent.headers.keys().collect::<Vec<_>>(), ["x-tenant"]);
}

// ---------------------------------------------------------------------------------------------------------
// Files

#[test]
fn example_krakend_json_parses() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/krakend.json");
    let config = Config::from_file(&file).unwrap();
    assert_eq!(config.sample_rate, 100);
    assert_eq!(config.reporting_period, Duration::from_secs(1));
    assert_eq!(config.enabled_layers, EnabledLayers::ALL);
    let ocagent = config.ocagent.as_ref().expect("ocagent");
    assert_eq!(ocagent.address, "localhost:55678");
    assert_eq!(ocagent.service_name, "oclayer-gateway");
    assert_eq!(ocagent.reconnection, Duration::from_secs(2));
    assert!(ocagent.insecure);
    assert!(!ocagent.enable_compression);
    assert!(ocagent.headers.is_empty());
    let prometheus = config.prometheus.as_ref().expect("prometheus");
    assert_eq!((prometheus.port, prometheus.namespace.as_str()), (9091, "krakend"));
    assert_eq!(config.zpages, None);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert_eq!(config.path_of("exporters.prometheus.port"), format!("{P}.exporters.prometheus.port"));
}

#[test]
fn missing_file_names_the_file() {
    let err = Config::from_file("/nonexistent/krakend.json").unwrap_err();
    let Error::ConfigFile { path, source } = &err else { panic!("got {err:?}") };
    assert_eq!(path, Path::new("/nonexistent/krakend.json"));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().starts_with("cannot read telemetry config file /nonexistent/krakend.json: "));
}

/// README's Configuration section: its JSON example is the example file's block, and its two error
/// messages are what the code says.
#[test]
fn readme_configuration_section_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("## Configuration").expect("README has a Configuration section")..];
    let json_start = section.find("```json\n").expect("a JSON example") + "```json\n".len();
    let json_len = section[json_start..].find("```").expect("the JSON example ends");
    let from_readme = parse(&section[json_start..json_start + json_len]);
    assert_eq!(from_readme, Config::from_file(root.join("examples/krakend.json")).unwrap());

    for block in [
        r#"{"exporters": {"ocagent": {"reconnection": "1d"}}}"#,
        r#"{"exporters": {"jaeger": {"endpoint": "http://jaeger:14268"}}}"#,
    ] {
        let err = Config::from_json_str(&whole(block)).unwrap_err();
        assert!(section.contains(&format!("```text\n{err}\n```")), "README lacks: {err}");
    }
}

/// Two messages in full, so that a change of wording is a reviewed diff.
#[test]
fn error_messages_in_full() {
    let err =
        Config::from_json_str(&whole(r#"{"exporters": {"ocagent": {"reconnection": "1d"}}}"#)).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid telemetry config at extra_config."telemetry/opencensus".exporters.ocagent.reconnection: expected a Go duration string such as "2s", "500ms" or "1m30s", found "1d": unknown unit "d" (the units are ns, us, µs, ms, s, m and h; there is no d for days: write 24h)"#
    );
    let err =
        Config::from_json_str(&whole(r#"{"exporters": {"jaeger": {"endpoint": "http://jaeger:14268"}}}"#))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid telemetry config at extra_config."telemetry/opencensus".exporters.jaeger: the jaeger exporter of KrakenD is not supported by oclayer; supported: ocagent, prometheus and zpages; an OpenCensus agent or collector fed by the ocagent exporter can forward to jaeger"#
    );
}

// ---------------------------------------------------------------------------------------------------------
// Arbitrary input never panics

/// JSON values whose keys are mostly the ones the reader looks for, so that the generator reaches deep.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("extra_config".to_owned()),
        Just(NAMESPACE.to_owned()),
        Just(LEGACY_NAMESPACE.to_owned()),
        Just("version".to_owned()),
        Just("sample_rate".to_owned()),
        Just("reporting_period".to_owned()),
        Just("enabled_layers".to_owned()),
        Just("router".to_owned()),
        Just("exporters".to_owned()),
        Just("ocagent".to_owned()),
        Just("prometheus".to_owned()),
        Just("zpages".to_owned()),
        Just("zipkin".to_owned()),
        Just("address".to_owned()),
        Just("reconnection".to_owned()),
        Just("headers".to_owned()),
        Just("port".to_owned()),
        Just("namespace".to_owned()),
        Just("listen_address".to_owned()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..70_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("2s".to_owned()),
            Just("-1h".to_owned()),
            Just("localhost:55678".to_owned()),
            Just("0.0.0.0".to_owned()),
            ".{0,16}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics_and_ok_means_valid(document in arbitrary_json()) {
        match Config::from_value(&document) {
            Ok(config) => {
                prop_assert!(config.sample_rate <= 100);
                prop_assert!(!config.reporting_period.is_zero());
                prop_assert!(config.ocagent.is_some() || config.prometheus.is_some() || config.zpages.is_some());
                prop_assert!(config.prometheus.as_ref().is_none_or(|p| p.port != 0));
                prop_assert!(config.zpages.as_ref().is_none_or(|z| z.port != 0));
                if let Some(ocagent) = &config.ocagent {
                    prop_assert!(!ocagent.reconnection.is_zero());
                    prop_assert!(!ocagent.service_name.is_empty());
                    prop_assert!(ocagent.headers.keys().all(|k| k.bytes().all(|b| !b.is_ascii_uppercase())));
                }
            }
            Err(Error::Config { path, message }) => {
                prop_assert!(!path.is_empty());
                prop_assert!(!message.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = Config::from_json_str(&text);
    }

    /// Text and value doors agree. Only the error paths are compared: a float may come back from text one
    /// unit in the last place off, which changes a message's "found" but never a path.
    #[test]
    fn serialized_arbitrary_json_reads_like_the_value(document in arbitrary_json()) {
        let path_of = |result: Result<Config, Error>| match result {
            Ok(config) => Ok(config),
            Err(Error::Config { path, .. }) => Err(path),
            Err(other) => Err(format!("unexpected error kind: {other:?}")),
        };
        let from_text = path_of(Config::from_json_str(&document.to_string()));
        let from_value = path_of(Config::from_value(&document));
        match (from_text, from_value) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.sample_rate, b.sample_rate),
            (a, b) => prop_assert_eq!(a.err(), b.err()),
        }
    }
}

#[test]
fn ocagent_ca_file_is_read_with_the_config() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let file = std::env::temp_dir().join(format!("oclayer-ca-{}.pem", std::process::id()));
    std::fs::write(&file, pem).unwrap();
    let block = format!(r#"{{"exporters": {{"ocagent": {{"ca_file": {}}}}}}}"#, serde_json::json!(file));
    let ocagent = parse(&block).ocagent.expect("ocagent");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(ocagent.ca_certificate_pem.as_deref(), Some(pem));

    assert_block_err(
        r#"{"exporters": {"ocagent": {"ca_file": "/nonexistent/ca.pem"}}}"#,
        "exporters.ocagent.ca_file",
        &["cannot read the CA file \"/nonexistent/ca.pem\""],
    );
    // A device or a directory would never end or cannot be read: refused before reading.
    for special in ["/dev/zero", "/"] {
        assert_block_err(
            &format!(r#"{{"exporters": {{"ocagent": {{"ca_file": "{special}"}}}}}}"#),
            "exporters.ocagent.ca_file",
            &["it is not a regular file"],
        );
    }
    let not_pem = std::env::temp_dir().join(format!("oclayer-not-pem-{}.txt", std::process::id()));
    std::fs::write(&not_pem, "hello").unwrap();
    let block = format!(r#"{{"exporters": {{"ocagent": {{"ca_file": {}}}}}}}"#, serde_json::json!(not_pem));
    let err = Config::from_json_str(&whole(&block)).unwrap_err().to_string();
    std::fs::remove_file(&not_pem).unwrap();
    assert!(err.contains("exporters.ocagent.ca_file") && err.contains("holds no PEM certificate"), "{err}");
}

#[test]
fn ocagent_queue_bounds() {
    let block = r#"{"exporters": {"ocagent": {"max_queued_spans": 1000, "max_queued_reports": 3}}}"#;
    let ocagent = parse(block).ocagent.expect("ocagent");
    assert_eq!((ocagent.max_queued_spans, ocagent.max_queued_reports), (1000, 3));
    assert_block_err(
        r#"{"exporters": {"ocagent": {"max_queued_spans": "1000"}}}"#,
        "exporters.ocagent.max_queued_spans",
        &["expected a whole number of items (0 for the default), found \"1000\"", "without quotes"],
    );
    assert_block_err(
        r#"{"exporters": {"ocagent": {"max_queued_reports": -1}}}"#,
        "exporters.ocagent.max_queued_reports",
        &["expected a whole number of items"],
    );
}
