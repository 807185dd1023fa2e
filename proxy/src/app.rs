//! Wiring: metrics, clusters, admin and listeners from one config; one drain signal for
//! shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::cluster::ClusterManager;
use crate::config::Bootstrap;
use crate::listener::{self, BindError, Shared};

/// Start-up failures; each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The admin or readiness port could not bind.
    #[error("admin: cannot bind {addr}: {source}")]
    Admin {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Run-time options from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long shutdown waits for in-flight work.
    pub drain_time: Duration,
    /// Extra readiness listener (Istio's 15021 `/healthz/ready`).
    pub readiness: Option<SocketAddr>,
}

/// A started proxy.
pub struct Running {
    /// Listener names and the addresses they bound (port 0 resolved).
    pub listeners: Vec<(String, SocketAddr)>,
    /// Admin addresses bound.
    pub admin: Vec<SocketAddr>,
    /// Fire to shut down (signals and `/quitquitquit` do).
    pub shutdown: CancellationToken,
    drain: CancellationToken,
    tracker: TaskTracker,
    drain_time: Duration,
}

/// Binds everything (failing fast on a busy port), resolves DNS clusters, then serves.
pub async fn start(bootstrap: Bootstrap, opts: Options) -> Result<Running, StartError> {
    let prometheus = crate::telemetry::metrics::install();
    let bootstrap = Arc::new(bootstrap);
    let clusters = Arc::new(ClusterManager::new(&bootstrap.clusters));
    let shutdown = CancellationToken::new();
    let drain = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut sockets = Vec::new();
    for l in &bootstrap.listeners {
        let s = listener::bind(l)?;
        let addr = s.local_addr().unwrap_or(l.address);
        sockets.push((l.clone(), s, addr));
    }
    let state = Arc::new(AdminState {
        ready: false.into(),
        prometheus,
        bootstrap: bootstrap.clone(),
        applied: SystemTime::now(),
        clusters: clusters.clone(),
        shutdown: shutdown.clone(),
    });
    let admin_addrs: Vec<SocketAddr> = bootstrap.admin.iter().map(|a| a.address).chain(opts.readiness).collect();
    let admin = admin::start(&admin_addrs, state.clone())
        .map_err(|source| StartError::Admin { addr: format!("{admin_addrs:?}"), source })?;
    for a in &admin {
        info!(addr = %a, "admin listening");
    }
    clusters.resolve_all(&drain).await;
    let shared = Shared {
        clusters,
        drain: drain.clone(),
        tracker: tracker.clone(),
        source: Arc::from(bootstrap.node.cluster.as_str()),
    };
    let mut listeners = Vec::new();
    for (l, s, addr) in sockets {
        info!(listener = %l.name, %addr, "listening");
        listeners.push((l.name.clone(), addr));
        tokio::spawn(listener::serve(l, s, shared.clone()));
    }
    state.ready.store(true, Ordering::Release);
    info!(listeners = listeners.len(), "ready");
    Ok(Running { listeners, admin, shutdown, drain, tracker, drain_time: opts.drain_time })
}

impl Running {
    /// The bound address of a listener by name.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Waits for SIGTERM/SIGINT or `/quitquitquit`, then drains: stop accepting (new
    /// connections are refused), let in-flight requests and connections finish for up to the
    /// drain time, then return.
    pub async fn run_until_signal(self) {
        let sigterm = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigterm => info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: draining"),
            _ = self.shutdown.cancelled() => info!("shutdown requested: draining"),
        }
        self.drain().await;
    }

    /// Stops accepting and waits for connections, up to the drain time.
    pub async fn drain(self) {
        self.drain.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.drain_time, self.tracker.wait()).await.is_err() {
            info!(remaining = self.tracker.len(), "drain time over; closing remaining connections");
        } else {
            info!("drained");
        }
    }
}
