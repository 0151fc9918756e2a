//! The HTTP side of `--metrics`: `GET /metrics` (and `HEAD`) answers with [`render`]'s text;
//! any other path is 404, another method on `/metrics` 405.
//!
//! hyper's HTTP/1 server runs on a current-thread tokio runtime in a thread of its own, not
//! on the session's: the session's loop does blocking work (attaching for up to half a
//! minute, reading the symbol table), and a scrape must neither wait for it nor delay it.
//! The address is bound by [`MetricsServer::bind`] before anything is attached, so a taken
//! or foreign address is one error before tracing starts. A scraper gets little: at most
//! [`MAX_CONNECTIONS`] at once, [`HEADER_TIMEOUT`] to send its request, [`CONNECTION_TIMEOUT`]
//! in all, one request per connection.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{ALLOW, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use super::{
    Metrics, process,
    render::{self, render},
};

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a client has to send its request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may last in all.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait before accepting again after accept failed (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound metrics address, not served yet.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `metrics` from a new thread until the process exits.
    pub fn spawn(self, metrics: Metrics) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(self.listener)?
        };
        std::thread::Builder::new()
            .name("locktrace-metrics".into())
            .spawn(move || runtime.block_on(serve(listener, metrics)))?;
        Ok(())
    }
}

async fn serve(listener: TcpListener, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(request.method(), request.uri().path(), &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A client that goes away or stalls is its own problem: nothing to report.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

/// The answer to `method path`.
fn respond(method: &Method, path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    if path != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let text = render(&metrics.snapshot(), process::read());
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(render::CONTENT_TYPE));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP client that returns error statuses as responses.
    fn client() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    #[test]
    fn metrics_are_served_at_their_path_only() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let metrics = Metrics::new();
        metrics.publish(|figures| figures.probes_attached = 3);
        server.spawn(metrics.clone()).unwrap();
        let client = client();

        let mut response = client.get(format!("{base}/metrics")).call().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.body_mut().read_to_string().unwrap();
        assert!(text.contains("\nlocktrace_probes_attached 3\n"), "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");

        // What the session publishes next is what the next scrape shows.
        metrics.publish(|figures| figures.probes_attached = 4);
        let mut response = client.get(format!("{base}/metrics")).call().unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        assert!(text.contains("\nlocktrace_probes_attached 4\n"), "{text}");

        for path in ["/", "/metrics/", "/metricsx", "/other?x=/metrics"] {
            let response = client.get(format!("{base}{path}")).call().unwrap();
            assert_eq!(response.status(), 404, "{path}");
        }
        let response = client.post(format!("{base}/metrics")).send_empty().unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }
}
