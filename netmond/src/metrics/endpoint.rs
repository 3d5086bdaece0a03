//! The metrics endpoint: HTTP/1.1 (hyper) on `[metrics] listen`, answering
//! `GET`/`HEAD /metrics` with the collector's text. Bounded: connections
//! served at once, request head size and time, and one deadline for each
//! whole exchange, so a client that reads slowly cannot hold a slot.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};
use tracing::{debug, info, warn};

use super::{Collector, MetricsError};
use crate::config::MetricsConfig;
use crate::engine::Engine;
use crate::sync::lock;

/// Largest request head accepted (hyper's smallest buffer limit); larger
/// heads are answered 431.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole exchange: the head, the scrape and the client reading it.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// OpenMetrics text, which Prometheus negotiates and parses.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running endpoint: a frame feeder and an HTTP listener, both ending
/// when `stop` turns true.
pub struct Endpoint {
    pub addr: SocketAddr,
}

/// Binds `cfg.listen` and serves until `stop`. Errors only on bind.
pub async fn start(
    engine: Arc<Engine>,
    cfg: &MetricsConfig,
    stop: watch::Receiver<bool>,
) -> Result<Option<Endpoint>, MetricsError> {
    let Some(addr) = cfg.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    if !addr.ip().is_loopback() {
        warn!(addr = %local, "metrics endpoint listens beyond loopback: anyone who can reach it sees per-process traffic, outside the group-restricted socket");
    }
    info!(addr = %local, top_processes = cfg.top_processes, include_hosts = cfg.include_hosts, "metrics endpoint listening");
    let collector = Arc::new(Mutex::new(Collector::new(
        cfg.top_processes,
        cfg.include_hosts,
    )));
    tokio::spawn(feed(engine.clone(), collector.clone(), stop.clone()));
    tokio::spawn(serve(engine, collector, listener, stop));
    Ok(Some(Endpoint { addr: local }))
}

/// Folds every frame the engine publishes into the collector.
async fn feed(
    engine: Arc<Engine>,
    collector: Arc<Mutex<Collector>>,
    mut stop: watch::Receiver<bool>,
) {
    let (first, mut rx) = engine.subscribe();
    drop(engine);
    lock(&collector).observe(&first);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = rx.recv() => match r {
                Ok(f) => lock(&collector).observe(&f),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!(skipped = n, "metrics feeder behind; per-tick figures of skipped frames are lost");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn serve(
    engine: Arc<Engine>,
    collector: Arc<Mutex<Collector>>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Over the limit: close at once rather than queue.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (engine, collector) = (engine.clone(), collector.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, engine.clone(), collector.clone()));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(EXCHANGE_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, %peer, "metrics request failed"),
                Err(_) => debug!(%peer, "metrics client too slow; connection dropped"),
            }
            drop(permit);
        });
    }
    info!("metrics endpoint stopped");
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    BadMethod,
}

fn route(method: &Method, path: &str) -> Route {
    if method != Method::GET && method != Method::HEAD {
        Route::BadMethod
    } else if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// One response; hyper leaves the body out for HEAD and keeps its length.
async fn answer(
    req: Request<hyper::body::Incoming>,
    engine: Arc<Engine>,
    collector: Arc<Mutex<Collector>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = match route(req.method(), req.uri().path()) {
        Route::Metrics => {
            let body = tokio::task::spawn_blocking(move || {
                let frame = engine.latest_frame();
                let status = engine.status();
                lock(&collector).render(&frame, &status)
            })
            .await;
            match body {
                Ok(Ok(body)) => text(StatusCode::OK, CONTENT_TYPE, body.into()),
                Ok(Err(e)) => {
                    warn!(error = %e, "metrics scrape failed");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
                }
                Err(e) => {
                    warn!(%e, "metrics scrape panicked");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            }
        }
        Route::NotFound => plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
        Route::BadMethod => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    };
    Ok(reply)
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    text(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn text(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::POST, "/metrics"), Route::BadMethod);
    }
}
