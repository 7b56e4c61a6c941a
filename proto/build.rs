//! Generates the message types and the tonic client and server stubs from the `.proto` files under
//! `opencensus/`, into `OUT_DIR` (nothing generated is committed).
//!
//! `protoc` comes from `protoc-bin-vendored`, so a build never depends on a system `protoc`; its
//! bundled include directory supplies `google/protobuf/*.proto`, whose Rust types map to
//! `prost-types` (prost's default for the well-known types).

use std::path::PathBuf;

/// Every file we declare, relative to the proto root. The service files import the others, but
/// listing all of them keeps `rerun-if-changed` complete.
const PROTOS: &[&str] = &[
    "opencensus/proto/agent/common/v1/common.proto",
    "opencensus/proto/agent/metrics/v1/metrics_service.proto",
    "opencensus/proto/agent/trace/v1/trace_service.proto",
    "opencensus/proto/metrics/v1/metrics.proto",
    "opencensus/proto/resource/v1/resource.proto",
    "opencensus/proto/trace/v1/trace.proto",
    "opencensus/proto/trace/v1/trace_config.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()
        .map_err(|e| format!("proto/build.rs: no vendored protoc for this platform ({e})"))?;
    let well_known = protoc_bin_vendored::include_path()
        .map_err(|e| format!("proto/build.rs: vendored protoc has no include directory ({e})"))?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Maps (attributes, labels) as BTreeMap: encoding, printing and comparing then follow key order
    // instead of a per-process hash seed, so the same message always yields the same bytes.
    config.btree_map(["."]);

    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &protos,
        &[root, well_known],
    )?;
    Ok(())
}
