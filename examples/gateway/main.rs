//! The oclayer demo gateway: `cargo run --release --example gateway` (`--help` for the flags).
//!
//! Two upstream services (`users`, `orders`) and an axum gateway in front of them run on loopback. The
//! gateway's handlers are annotated with `#[oclayer::trace_layer(router)]`, its pipes with `pipe` and its
//! upstream calls with `backend` (see `routes.rs` and `backend.rs`); the telemetry config is KrakenD's
//! `examples/krakend.json`. An embedded OpenCensus agent receives what the ocagent exporter sends over
//! gRPC, so after the load the demo prints one request as the agent received it, as a trace tree, and the
//! top rows of the latency view.
//!
//! Modules: `cli` (flags), `setup` (config and `init`), `upstream` (the services), `routes` (router and
//! pipe layers), `backend` (backend layer), `load` (the load generator), `summary` (the report), `demo`
//! (start, run and stop in order) and `soak` (the load and fault soak, `--soak`). `tests/gateway.rs`
//! includes the same modules to drive the demo in-process.

mod backend;
mod cli;
mod demo;
mod load;
mod routes;
mod setup;
mod soak;
mod summary;
mod upstream;

use std::process::ExitCode;

use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Command::Run(options)) => options,
        Ok(cli::Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    // oclayer logs through `tracing`: show its warnings (an agent that cannot be reached, dropped spans).
    let _ =
        tracing_subscriber::fmt().with_max_level(LevelFilter::WARN).with_writer(std::io::stderr).try_init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async move {
        match options.soak {
            Some(duration) => {
                let faults = !options.no_faults;
                soak::run(options, duration, faults).await
            }
            None => demo::run(options).await,
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
