//! One request end to end through the demo gateway (`examples/gateway/`), over real HTTP on loopback:
//! the client sends `GET /users/{id}/orders`, the gateway's router handler runs its pipe, which calls the
//! users and orders upstreams concurrently through two backend fns, and merges their JSON. That is one
//! router, one pipe and two backend spans per request, and every layer's measures.
//!
//! The gateway's routes and backend calls are the demo's own files (`#[path]` below), so the bench times the
//! code users read. Its upstreams are replaced by two services that answer at once: the demo's sleep for
//! milliseconds, which would hide the instrumentation in their noise; here the gateway's own work is most of
//! the time, so the overhead measured is the worst case, not a diluted one.
//!
//! - `gateway/disabled`: `init` with every layer off (`enabled_layers: {}`): the baseline.
//! - `gateway/unsampled`: every layer on, `sample_rate` 0: measures only, spans unsampled.
//! - `gateway/sampled`: every layer on, `sample_rate` 100: every span exported (to a discarding exporter).
//!
//! Each variant is timed twice: `gateway/*` by the wall clock, one request at a time (its median is the
//! p50 latency), and `gateway_cpu/*` by the CPU time the whole process spends per request (client, gateway,
//! upstreams, telemetry threads), which other processes on a shared machine do not inflate.
//! Target: the instrumented p50 at most 2 % above the disabled one.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use http_body_util::BodyExt;
use oclayer::config::{Config, EnabledLayers};
use oclayer_benches::{oclayer_discarding, process_cpu_time};
use serde_json::json;
use tokio::net::TcpListener;

#[path = "../../examples/gateway/backend.rs"]
mod backend;
#[path = "../../examples/gateway/routes.rs"]
mod routes;

/// `GET /users/{id}` of the stand-in users service: answers at once.
async fn user(Path(id): Path<u64>) -> Response {
    routes::json_response(StatusCode::OK, &json!({"id": id, "name": format!("user {id}")}))
}

/// `GET /orders/by-user/{id}` of the stand-in orders service: answers at once.
async fn orders(Path(id): Path<u64>) -> Response {
    let orders: Vec<_> =
        (0..id % 4).map(|n| json!({"order_id": id * 10 + n, "total_cents": 1_000 + n})).collect();
    routes::json_response(StatusCode::OK, &json!({"user_id": id, "orders": orders}))
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("service on {addr} stopped: {error}");
        }
    });
    addr
}

/// The gateway and its upstreams on a two-worker runtime, as a small gateway runs; returns the gateway's
/// address and the runtime (dropping it stops everything).
fn start() -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the gateway's runtime");
    let addr = runtime.block_on(async {
        let users = serve(Router::new().route("/users/{id}", get(user))).await;
        let orders = serve(Router::new().route("/orders/by-user/{id}", get(orders))).await;
        let gateway = routes::Gateway { client: backend::client(), users, orders };
        serve(routes::router(gateway)).await
    });
    (addr, runtime)
}

/// The telemetry of one variant: every layer on or off, and the sample rate.
fn telemetry(layers: EnabledLayers, sample_rate: u8) -> oclayer::Telemetry {
    let config =
        Config::builder().enabled_layers(layers).sample_rate(sample_rate).build().expect("a valid config");
    oclayer_discarding(config)
}

/// Sends `iters` requests one after another and returns the time they took by `clock`.
fn requests(
    client: &backend::Client,
    runtime: &tokio::runtime::Runtime,
    gateway: SocketAddr,
    iters: u64,
    clock: fn() -> Duration,
) -> Duration {
    runtime.block_on(async {
        let start = clock();
        for i in 0..iters {
            let request =
                backend::get(gateway, &format!("/users/{}/orders", 1 + i % 1000)).expect("a request");
            let response = client.request(request).await.expect("the gateway answers");
            assert_eq!(response.status(), StatusCode::OK, "the gateway answers 200 with fast upstreams");
            black_box(response.into_body().collect().await.expect("the whole answer").to_bytes());
        }
        clock() - start
    })
}

fn wall() -> Duration {
    // A fixed origin, so that differences are durations as criterion expects.
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

fn gateway(c: &mut criterion::Criterion) {
    let (addr, _servers) = start();
    // The client runs on the bench thread, off the gateway's workers, as a remote client would.
    let client_runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the client's runtime");
    let client = client_runtime.block_on(async { backend::client() });

    let variants = [
        ("disabled", EnabledLayers::NONE, 0),
        ("unsampled", EnabledLayers::ALL, 0),
        ("sampled", EnabledLayers::ALL, 100),
    ];
    for (name, layers, sample_rate) in variants {
        let telemetry = telemetry(layers, sample_rate);
        let mut group = c.benchmark_group("gateway");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| requests(&client, &client_runtime, addr, iters, wall))
        });
        group.finish();
        let mut group = c.benchmark_group("gateway_cpu");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| requests(&client, &client_runtime, addr, iters, process_cpu_time))
        });
        group.finish();
        drop(telemetry);
    }
}

criterion::criterion_group!(benches, gateway);
criterion::criterion_main!(benches);
