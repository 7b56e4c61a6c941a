//! Shared by the Prometheus and `/debug` integration tests: a runtime on a background thread, as the
//! telemetry runtime runs, and a minimal HTTP/1.1 client over a raw `TcpStream`, so that the tests see
//! exactly what goes over the wire.
#![allow(dead_code)] // each test crate uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A current-thread runtime with IO and time, driven on its own thread until dropped.
pub struct BackgroundRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundRuntime {
    pub fn start() -> BackgroundRuntime {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime builds");
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            })
        });
        BackgroundRuntime { handle, stop: Some(stop), thread: Some(thread) }
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs a future to completion on a separate, throwaway executor: what a user's `shutdown().await`
    /// from another runtime looks like.
    pub fn block_on_elsewhere<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a throwaway runtime builds")
            .block_on(future)
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
    // A safety net so a broken server fails the test instead of hanging it; no assertion depends on it.
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout set");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("request written");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response read");
    let raw = String::from_utf8(raw).expect("the response is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Response { status, headers, body: body.to_owned() }
}

pub fn get(addr: SocketAddr, target: &str) -> Response {
    request(addr, "GET", target, &[])
}
