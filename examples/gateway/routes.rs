//! The gateway: two endpoints, each a router handler, a pipe and one backend call per upstream, as KrakenD
//! runs them.
//!
//! - `GET /users/{id}`: one backend, the users service.
//! - `GET /users/{id}/orders`: the pipe calls users and orders concurrently and merges the two JSON answers.
//!
//! Upstream answers map to the client as a proxy maps them: 2xx and 404 pass through, a 5xx or no answer
//! becomes 502 (504 when the time ran out), and an id that is not a number is the client's error, 400.

use std::fmt;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::backend::{self, BackendError, Client};

/// What the gateway needs to reach its upstreams.
#[derive(Clone)]
pub struct Gateway {
    /// The pooled HTTP client for backend calls.
    pub client: Client,
    /// The users service.
    pub users: SocketAddr,
    /// The orders service.
    pub orders: SocketAddr,
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/orders", get(get_user_orders))
        .with_state(gateway)
}

/// A JSON answer with its `Content-Length` set, so the router's response-size view sees the size (axum
/// would leave the length to the connection, after the layer has recorded).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = Bytes::from(body.to_string());
    let length = HeaderValue::from(bytes.len());
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CONTENT_LENGTH, length);
    response
}

// ---- router: one server span per request, continuing the caller's trace if it sent one --------------------

/// `GET /users/{id}`.
#[oclayer::trace_layer(router, route = "/users/{id}", fields(user.id = id.as_str()))]
async fn get_user(State(gateway): State<Gateway>, Path(id): Path<String>, req: Request) -> Response {
    match id.parse() {
        Ok(id) => answer(user_pipe(&gateway, id).await),
        Err(_) => bad_id(&id),
    }
}

/// `GET /users/{id}/orders`.
#[oclayer::trace_layer(router, route = "/users/{id}/orders", fields(user.id = id.as_str()))]
async fn get_user_orders(State(gateway): State<Gateway>, Path(id): Path<String>, req: Request) -> Response {
    match id.parse() {
        Ok(id) => answer(user_orders_pipe(&gateway, id).await),
        Err(_) => bad_id(&id),
    }
}

/// The client's mistake: the gateway answers without calling the pipe.
fn bad_id(id: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": format!("user id {id:?} is not a number")}))
}

fn answer(result: Result<(StatusCode, Value), PipeError>) -> Response {
    match result {
        Ok((status, body)) => json_response(status, &body),
        Err(error) => json_response(error.status, &json!({"error": error.to_string()})),
    }
}

// ---- pipe: the endpoint's work, between the router and its backends ---------------------------------------

/// Why a pipe could not answer: what the client gets (502 or 504) and why.
#[derive(Debug)]
pub struct PipeError {
    /// The status the gateway answers with.
    pub status: StatusCode,
    /// What went wrong, for the pipe span's `error` attribute and the client.
    pub message: String,
}

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<BackendError> for PipeError {
    fn from(error: BackendError) -> Self {
        let status = if error.timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
        PipeError { status, message: error.to_string() }
    }
}

impl From<http::Error> for PipeError {
    fn from(error: http::Error) -> Self {
        PipeError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("cannot build the backend request: {error}"),
        }
    }
}

/// The pipe of `GET /users/{id}`: one backend call.
#[oclayer::trace_layer(pipe, route = "/users/{id}", err)]
async fn user_pipe(gateway: &Gateway, id: u64) -> Result<(StatusCode, Value), PipeError> {
    let request = backend::get(gateway.users, &format!("/users/{id}"))?;
    let user = backend::fetch_user(&gateway.client, request).await?;
    upstream_json("users", user)
}

/// The pipe of `GET /users/{id}/orders`: users and orders concurrently, merged into one object.
#[oclayer::trace_layer(pipe, route = "/users/{id}/orders", err)]
async fn user_orders_pipe(gateway: &Gateway, id: u64) -> Result<(StatusCode, Value), PipeError> {
    let user_request = backend::get(gateway.users, &format!("/users/{id}"))?;
    let orders_request = backend::get(gateway.orders, &format!("/orders/by-user/{id}"))?;
    // Both calls run in this task, so both backend spans are children of this pipe span.
    let (user, orders) = tokio::join!(
        backend::fetch_user(&gateway.client, user_request),
        backend::fetch_orders(&gateway.client, orders_request),
    );
    let (status, mut user) = upstream_json("users", user?)?;
    if status != StatusCode::OK {
        // No such user: the orders do not matter.
        return Ok((status, user));
    }
    let (_, orders) = upstream_json("orders", orders?)?;
    if let Value::Object(fields) = &mut user {
        fields.insert("orders".into(), orders.get("orders").cloned().unwrap_or(Value::Array(Vec::new())));
    }
    Ok((StatusCode::OK, user))
}

/// An upstream answer as the gateway passes it on: 2xx and 404 with their JSON body; anything else is the
/// upstream's failure.
fn upstream_json(upstream: &str, response: http::Response<Bytes>) -> Result<(StatusCode, Value), PipeError> {
    let status = response.status();
    if !(status.is_success() || status == StatusCode::NOT_FOUND) {
        return Err(PipeError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("{upstream} upstream answered {status}"),
        });
    }
    let body = serde_json::from_slice(response.body()).map_err(|e| PipeError {
        status: StatusCode::BAD_GATEWAY,
        message: format!("{upstream} upstream sent invalid JSON: {e}"),
    })?;
    Ok((status, body))
}
