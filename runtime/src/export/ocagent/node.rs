//! Who is exporting: the `Node` and the `Resource` that open every stream.
//!
//! The Node names the process (real host name, pid, start time), the library and the service. The
//! published `Language` enum has no Rust value, so the library says `LANGUAGE_UNSPECIFIED` and puts
//! `language: rust` in the Node's attributes (DESIGN.md).
//!
//! The Resource follows opencensus-go's `resource.FromEnv`: `OC_RESOURCE_TYPE` and `OC_RESOURCE_LABELS`
//! (`key=value,key="quoted value"`) when set, so deployments that describe themselves for Go services
//! describe this one the same way. Without them the resource is the host: type `host`, label
//! `host.hostname`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use oclayer_proto::agent::common::v1::{LibraryInfo, Node, ProcessIdentifier, ServiceInfo, library_info};
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::resource::v1::Resource;

/// This crate's version: both the exporter's and the core library's, which ship together.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The environment variables opencensus-go reads its resource from.
const RESOURCE_TYPE_ENV: &str = "OC_RESOURCE_TYPE";
const RESOURCE_LABELS_ENV: &str = "OC_RESOURCE_LABELS";

/// When the first exporter of this process started: the Node's start timestamp. Kept process-wide so that
/// a pipeline restarted in the same process still reports the same process start.
fn process_start() -> SystemTime {
    static START: OnceLock<SystemTime> = OnceLock::new();
    *START.get_or_init(SystemTime::now)
}

/// The host name as the operating system knows it (`gethostname`), not `$HOSTNAME`, which is a shell
/// variable that is often missing from a service's environment. Empty if the system does not say.
pub(super) fn host_name() -> String {
    match hostname::get() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(error) => {
            tracing::warn!(%error, "ocagent exporter: cannot read the host name; the Node carries none");
            String::new()
        }
    }
}

/// The Node of this process for `service_name`.
pub(super) fn node(service_name: &str, host_name: &str) -> Node {
    Node {
        identifier: Some(ProcessIdentifier {
            host_name: host_name.to_owned(),
            pid: std::process::id(),
            start_timestamp: Some(Timestamp::from(process_start())),
        }),
        library_info: Some(LibraryInfo {
            language: library_info::Language::Unspecified as i32,
            exporter_version: VERSION.to_owned(),
            core_library_version: VERSION.to_owned(),
        }),
        service_info: Some(ServiceInfo { name: service_name.to_owned() }),
        attributes: BTreeMap::from([
            ("language".to_owned(), "rust".to_owned()),
            ("library".to_owned(), "oclayer".to_owned()),
        ]),
    }
}

/// The Resource of this process: from the environment as opencensus-go reads it, else the host.
pub(super) fn resource(host_name: &str) -> Resource {
    let kind = std::env::var(RESOURCE_TYPE_ENV).unwrap_or_default();
    let labels = std::env::var(RESOURCE_LABELS_ENV).unwrap_or_default();
    resource_from(kind.trim(), &labels, host_name)
}

/// A resource with a type and a label, for tests elsewhere in the exporter.
#[cfg(test)]
pub(super) fn resource_for_tests() -> Resource {
    resource_from("test", "a=1", "host")
}

fn resource_from(kind: &str, labels: &str, host_name: &str) -> Resource {
    let labels = parse_labels(labels);
    if kind.is_empty() && labels.is_empty() {
        let labels = if host_name.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([("host.hostname".to_owned(), host_name.to_owned())])
        };
        return Resource { r#type: "host".to_owned(), labels };
    }
    Resource { r#type: kind.to_owned(), labels }
}

/// `OC_RESOURCE_LABELS`: comma-separated `key=value` pairs, values optionally in double quotes (which may
/// then hold commas). A malformed pair is skipped with a warning rather than failing the exporter.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after_key)) = rest.split_once('=') else {
            tracing::warn!(pair = rest, "ignoring a label without `=` in {RESOURCE_LABELS_ENV}");
            break;
        };
        let after_key = after_key.trim_start();
        let (value, next) = if let Some(quoted) = after_key.strip_prefix('"') {
            match quoted.split_once('"') {
                // Whatever follows the closing quote up to the next comma is not part of the value.
                Some((value, after)) => (value, after.split_once(',').map_or("", |(_, next)| next)),
                None => {
                    tracing::warn!(
                        key = key.trim(),
                        "ignoring a label with an unclosed quote in {RESOURCE_LABELS_ENV}"
                    );
                    break;
                }
            }
        } else {
            after_key.split_once(',').map_or((after_key, ""), |(value, after)| (value, after))
        };
        let key = key.trim();
        if key.is_empty() {
            tracing::warn!("ignoring a label with an empty key in {RESOURCE_LABELS_ENV}");
        } else {
            labels.insert(key.to_owned(), value.trim().to_owned());
        }
        rest = next.trim_start();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_process_library_and_service() {
        let node = node("gateway", "box-1");
        let id = node.identifier.expect("identifier");
        assert_eq!(id.host_name, "box-1");
        assert_eq!(id.pid, std::process::id());
        let start = id.start_timestamp.expect("start");
        assert!(start.seconds > 1_600_000_000, "a wall-clock time: {start:?}");
        let library = node.library_info.expect("library info");
        assert_eq!(library.language, library_info::Language::Unspecified as i32);
        assert_eq!(library.exporter_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(library.core_library_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(node.service_info.expect("service").name, "gateway");
        assert_eq!(node.attributes.get("language").map(String::as_str), Some("rust"));
    }

    #[test]
    fn the_start_time_is_stable_across_exporters() {
        let first = node("a", "h").identifier.and_then(|i| i.start_timestamp);
        let second = node("b", "h").identifier.and_then(|i| i.start_timestamp);
        assert_eq!(first, second);
    }

    #[test]
    fn the_host_name_is_the_systems() {
        // Whatever the OS says, never a shell variable; on every CI host it has one.
        assert!(!host_name().is_empty());
    }

    #[test]
    fn resource_defaults_to_the_host() {
        let resource = resource_from("", "", "box-1");
        assert_eq!(resource.r#type, "host");
        assert_eq!(resource.labels.get("host.hostname").map(String::as_str), Some("box-1"));
    }

    #[test]
    fn resource_from_the_environment_as_opencensus_go_reads_it() {
        let resource =
            resource_from("k8s.io/container", r#"k8s.pod.name=api-7f, team = "edge, core",zone=eu"#, "h");
        assert_eq!(resource.r#type, "k8s.io/container");
        let labels: Vec<(&str, &str)> =
            resource.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(labels, [("k8s.pod.name", "api-7f"), ("team", "edge, core"), ("zone", "eu")]);
    }

    #[test]
    fn malformed_labels_are_skipped_not_fatal() {
        assert!(parse_labels("novalue").is_empty());
        assert_eq!(parse_labels("a=1,=2,b=2").len(), 2);
        assert_eq!(parse_labels(r#"a="unclosed"#).len(), 0);
        assert_eq!(parse_labels("a=1,").get("a").map(String::as_str), Some("1"));
    }
}
