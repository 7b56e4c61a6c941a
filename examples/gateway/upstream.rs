//! Two small upstream services behind the gateway, `users` and `orders`, each on its own loopback port.
//!
//! They behave like real services under load: most answers take a few milliseconds, some take tens, and
//! now and then one fails with a 5xx. Their handlers carry `#[trace_layer(router)]` too, as a service
//! instrumented with oclayer would: the layer reads the trace context the gateway's backend call put in
//! the headers, so each upstream span joins the gateway's trace as a child of the backend span.
//! `skip_measures` keeps them out of the router views, which then count only the gateway's own traffic
//! (in a real deployment they would be other processes with views of their own).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::routes::json_response;

/// Users that exist: `/users/{id}` answers 404 for any other id.
pub const KNOWN_USERS: std::ops::RangeInclusive<u64> = 1..=1000;

/// The running upstream services. Dropping this stops them.
pub struct Upstreams {
    /// Where `users` listens.
    pub users: SocketAddr,
    /// Where `orders` listens.
    pub orders: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        // Nothing is in flight by the time the demo stops them; a hard stop is enough.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts both services on free loopback ports.
pub async fn start() -> std::io::Result<Upstreams> {
    let users = Router::new().route("/users/{id}", get(get_user));
    let orders = Router::new().route("/orders/by-user/{id}", get(get_orders));
    let (users, users_task) = serve(users).await?;
    let (orders, orders_task) = serve(orders).await?;
    Ok(Upstreams { users, orders, tasks: vec![users_task, orders_task] })
}

async fn serve(app: Router) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("upstream service on {addr} stopped: {e}");
        }
    });
    Ok((addr, task))
}

/// `GET /users/{id}` of the users service.
#[oclayer::trace_layer(
    router,
    name = "users-service /users/{id}",
    route = "/users/{id}",
    skip_measures,
    fields(service = "users")
)]
async fn get_user(Path(id): Path<u64>, req: Request) -> Response {
    // Most lookups hit a cache; one in twenty goes to a slow store.
    think(2..10, 30..60, 0.05).await;
    if fails(0.02) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "users store unavailable"}));
    }
    if !KNOWN_USERS.contains(&id) {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": format!("no user {id}")}));
    }
    let agent = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    json_response(
        StatusCode::OK,
        &json!({"id": id, "name": format!("user {id}"), "email": format!("user{id}@example.com"), "seen_by": agent}),
    )
}

/// `GET /orders/by-user/{id}` of the orders service.
#[oclayer::trace_layer(
    router,
    name = "orders-service /orders/by-user/{id}",
    route = "/orders/by-user/{id}",
    skip_measures,
    fields(service = "orders")
)]
async fn get_orders(Path(id): Path<u64>, req: Request) -> Response {
    // A query over the user's orders: slower than users, with a longer tail.
    think(4..20, 40..120, 0.05).await;
    if fails(0.03) {
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": "orders query failed"}));
    }
    let orders: Vec<_> = (0..id % 4)
        .map(|n| json!({"order_id": id * 10 + n, "total_cents": 1_000 + (id * 7 + n * 13) % 9_000}))
        .collect();
    json_response(StatusCode::OK, &json!({"user_id": id, "orders": orders}))
}

/// Sleeps a time drawn from `usual` milliseconds, or from `slow` with probability `slow_share`.
async fn think(usual: std::ops::Range<u64>, slow: std::ops::Range<u64>, slow_share: f64) {
    let millis = if fastrand::f64() < slow_share { fastrand::u64(slow) } else { fastrand::u64(usual) };
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// True with probability `share`.
fn fails(share: f64) -> bool {
    fastrand::f64() < share
}
