//! The `/metrics` endpoint: a `tiny_http` listener on its own thread serving the latest
//! published [`Snapshot`]. The live loop publishes with [`Publisher::publish`] (a pointer
//! swap under a lock held for nanoseconds, once per refresh); the server encodes on each
//! scrape from its own copy of the pointer, so neither side ever waits on the other's work.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::{encode, Snapshot, CONTENT_TYPE};

/// Where the latest snapshot is handed over.
#[derive(Debug, Default)]
struct Latest(Mutex<Arc<Snapshot>>);

impl Latest {
    fn get(&self) -> Arc<Snapshot> {
        Arc::clone(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
    fn set(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
}

/// The live loop's handle: publishes a new snapshot for the next scrapes.
#[derive(Clone, Debug)]
pub struct Publisher(Arc<Latest>);

impl Publisher {
    pub fn publish(&self, snapshot: Snapshot) {
        self.0.set(snapshot);
    }
}

/// The running endpoint. Dropping it (or [`MetricsServer::shutdown`]) stops the thread.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    latest: Arc<Latest>,
    addr: SocketAddr,
}

/// `HOST:PORT`, or `:PORT` for every interface (as Prometheus exporters write it).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    let bad = || {
        format!("--prometheus {text}: not an address to listen on (HOST:PORT, e.g. 127.0.0.1:9464, or :9464 for every interface)")
    };
    full.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

impl MetricsServer {
    /// Listen on `addr` and serve until shut down. Fails (naming the address and the
    /// reason) when the address is not valid or cannot be bound, before any capture.
    pub fn bind(addr: &str) -> Result<MetricsServer, String> {
        let wanted = parse_listen_addr(addr)?;
        let server = tiny_http::Server::http(wanted)
            .map_err(|e| format!("--prometheus {addr}: cannot listen on {wanted}: {e}"))?;
        let addr = server.server_addr().to_ip().unwrap_or(wanted);
        let server = Arc::new(server);
        let latest = Arc::new(Latest::default());
        let thread = {
            let server = Arc::clone(&server);
            let latest = Arc::clone(&latest);
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&server, &latest))
                .map_err(|e| format!("cannot start the metrics thread: {e}"))?
        };
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            latest,
            addr,
        })
    }

    /// The address actually bound (the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn publisher(&self) -> Publisher {
        Publisher(Arc::clone(&self.latest))
    }

    /// Stop accepting scrapes and wait for the thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(server: &tiny_http::Server, latest: &Latest) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                text(200, encode(latest.get()), CONTENT_TYPE)
            }
            (tiny_http::Method::Get | tiny_http::Method::Head, "/") => text(
                200,
                "conn-attrib live: metrics at /metrics\n".into(),
                "text/plain; charset=utf-8",
            ),
            (tiny_http::Method::Get | tiny_http::Method::Head, _) => {
                text(404, "not found: try /metrics\n".into(), "text/plain")
            }
            _ => text(405, "only GET\n".into(), "text/plain"),
        };
        // A scraper that went away is its own problem; the next one is served.
        let _ = request.respond(response);
    }
}

fn text(
    status: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes("Content-Type", content_type)
        .expect("a constant ASCII header");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}
