//! The admin interface, on its own thread and runtime so a busy data plane cannot starve it:
//! `/ready`, `/healthz/ready`, `/stats`, `/stats/prometheus`, `/server_info`, `/config_dump`,
//! `/clusters`, `/listeners`, `/logging`, `/drain_listeners`, `/quitquitquit`.

mod config_dump;
mod pages;
mod redact;
mod stats;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterManager;
use crate::config::Bootstrap;

/// What admin pages read.
pub struct AdminState {
    /// True once listeners are bound, clusters resolved and (with xDS) the first full
    /// config applied.
    pub ready: Arc<AtomicBool>,
    /// Renders Prometheus text.
    pub prometheus: Option<PrometheusHandle>,
    /// The config in force.
    pub bootstrap: Arc<Bootstrap>,
    /// When it was applied.
    pub applied: SystemTime,
    /// Clusters for `/clusters`.
    pub clusters: Arc<ClusterManager>,
    /// Listeners for `/listeners`.
    pub listeners: Arc<crate::listener::manager::ListenerManager>,
    /// Dynamic resources for `/config_dump`.
    pub dynamic: Arc<crate::dynamic::dump::DumpStore>,
    /// Fired by `/quitquitquit`.
    pub shutdown: CancellationToken,
    /// The command line as Envoy's `/server_info` `command_line_options` shows it.
    pub command_line: serde_json::Value,
}

/// What an admin address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every admin page (keep it on loopback).
    Full,
    /// Only `/healthz/ready` and `/ready`: the readiness port is reachable from outside the
    /// pod (kubelet probes it), so it must not expose config dumps or `/quitquitquit`.
    ReadyOnly,
}

/// Binds each address now (so a port clash fails start-up) and serves them on a dedicated
/// thread. Returns the bound addresses.
pub fn start(addrs: &[(SocketAddr, Scope)], state: Arc<AdminState>) -> std::io::Result<Vec<SocketAddr>> {
    let mut listeners = Vec::new();
    for (a, scope) in addrs {
        let l = std::net::TcpListener::bind(a)?;
        l.set_nonblocking(true)?;
        listeners.push((l, *scope));
    }
    let bound = listeners.iter().map(|(l, _)| l.local_addr()).collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("isthmus-admin".into()).spawn(move || {
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for (l, scope) in listeners {
                if let Ok(l) = tokio::net::TcpListener::from_std(l) {
                    tasks.push(tokio::spawn(accept(l, state.clone(), scope)));
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    })?;
    Ok(bound)
}

async fn accept(l: tokio::net::TcpListener, state: Arc<AdminState>, scope: Scope) {
    let mut acceptor = crate::listener::accept::Acceptor::new(match scope {
        Scope::Full => "admin",
        _ => "readiness",
    });
    loop {
        let (s, _) = acceptor.accept(&l).await;
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let st = st.clone();
                async move {
                    let ready_page = matches!(req.uri().path(), "/healthz/ready" | "/ready");
                    Ok::<_, Infallible>(if scope == Scope::Full || ready_page {
                        pages::route(&st, &req)
                    } else {
                        text(404, "only /healthz/ready is served on the readiness port\n", "text/plain")
                    })
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

fn text(status: u16, body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}
