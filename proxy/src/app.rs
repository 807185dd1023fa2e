//! Wiring: metrics, clusters, routes, listeners and admin from one config, xDS when the
//! bootstrap asks for it, and one drain signal for shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::build::Snapshot;
use crate::cluster::ClusterManager;
use crate::dynamic::{self, dump::DumpStore, NoXdsEndpoint, Targets};
use crate::listener::manager::ListenerManager;
use crate::listener::{BindError, Shared};

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
    /// `dynamic_resources` points at a cluster without a usable address.
    #[error(transparent)]
    Xds(#[from] NoXdsEndpoint),
}

/// Run-time options from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long shutdown waits for in-flight work.
    pub drain_time: Duration,
    /// Extra readiness listener (Istio's 15021 `/healthz/ready`).
    pub readiness: Option<SocketAddr>,
    /// The command line, for `/server_info`.
    pub command_line: serde_json::Value,
}

/// A started proxy.
pub struct Running {
    /// Listeners (static and LDS).
    pub listener_manager: Arc<ListenerManager>,
    /// Admin addresses bound.
    pub admin: Vec<SocketAddr>,
    /// Fire to shut down (signals and `/quitquitquit` do).
    pub shutdown: CancellationToken,
    clusters: Arc<ClusterManager>,
    /// `static_resources.secrets`: their slots live as long as the proxy.
    _secrets: Vec<Arc<crate::tls::secrets::Slot>>,
    xds: Option<xds_client::XdsClient>,
    drain: CancellationToken,
    tracker: TaskTracker,
    drain_time: Duration,
}

/// SIGTERM and SIGINT, caught from the moment this is made. Made before [`start`], so that a
/// signal sent as soon as the proxy reports ready (an agent stopping a pod that just started)
/// drains it and exits 0 instead of killing it by the default action before a handler exists.
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers; must run inside the runtime. A handler that cannot be installed
    /// leaves that signal's default action (logged).
    pub fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let catch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| tracing::warn!(signal = name, error = %e, "cannot catch the signal")).ok()
        };
        Signals { term: catch(SignalKind::terminate(), "SIGTERM"), int: catch(SignalKind::interrupt(), "SIGINT") }
    }

    /// Resolves on the next delivery; never, if the handler is missing.
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Binds static listeners (failing fast on a busy port), starts admin, resolves DNS
/// clusters, starts xDS if configured, then serves. Readiness turns true at once for a static
/// config and after the first full xDS config otherwise.
pub async fn start(snapshot: Snapshot, opts: Options) -> Result<Running, StartError> {
    let Snapshot { bootstrap, secrets, clusters, listeners: ready_listeners, xds_tls } = snapshot;
    let prometheus = crate::telemetry::metrics::install();
    let metadata = bootstrap
        .node_proto
        .metadata
        .as_ref()
        .map(crate::config::convert::struct_to_json)
        .unwrap_or(serde_json::Value::Null);
    crate::telemetry::istio_labels::set_local(crate::telemetry::istio_labels::Workload::from_node(
        &metadata,
        &bootstrap.node.cluster,
    ));
    let clusters = Arc::new(ClusterManager::new(&clusters, crate::locality::NodeView::from_bootstrap(&bootstrap)));
    crate::telemetry::trace::set_local(crate::telemetry::trace::Local {
        node_id: bootstrap.node.id.clone(),
        zone: bootstrap.node.locality.zone.clone(),
        cluster: bootstrap.node.cluster.clone(),
        tracer: bootstrap.tracer.clone(),
    });
    crate::telemetry::trace::queue::install(clusters.clone());
    let routes = Arc::new(crate::l7::routes::RouteRegistry::default());
    let shutdown = CancellationToken::new();
    let drain = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shared = Shared {
        clusters: clusters.clone(),
        routes: routes.clone(),
        drain: drain.clone(),
        drain_time: opts.drain_time,
        tracker: tracker.clone(),
        source: Arc::from(bootstrap.node.cluster.as_str()),
        virtuals: Arc::default(),
        connections: Arc::new(crate::listener::accept::ConnectionLimit::new(
            bootstrap.overload.max_downstream_connections,
        )),
    };
    let listeners = Arc::new(ListenerManager::new(shared));
    for l in ready_listeners {
        listeners.upsert(l)?;
    }
    if let Some(handle) = prometheus.clone() {
        let (clusters, listeners) = (clusters.clone(), listeners.clone());
        let live = move || crate::telemetry::series::Live {
            clusters: clusters.all().iter().map(|c| c.config.name.clone()).collect(),
            listeners: listeners.names(),
            secrets: crate::tls::secrets::registry().all().iter().map(|s| s.name.clone()).collect(),
        };
        tokio::spawn(crate::telemetry::series::run(handle, Arc::new(live)));
    }
    if let Some(heap) = bootstrap.overload.heap.clone() {
        tokio::spawn(crate::overload::run(heap));
    }
    tokio::spawn(crate::overload::release_free_heap());
    let ready = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(DumpStore::default());
    let state = Arc::new(AdminState {
        ready: ready.clone(),
        prometheus,
        bootstrap: bootstrap.clone(),
        applied: SystemTime::now(),
        clusters: clusters.clone(),
        listeners: listeners.clone(),
        dynamic: dump.clone(),
        shutdown: shutdown.clone(),
        command_line: opts.command_line.clone(),
    });
    let admin_addrs: Vec<(SocketAddr, admin::Scope)> = bootstrap
        .admin
        .iter()
        .map(|a| (a.address, admin::Scope::Full))
        .chain(opts.readiness.map(|r| (r, admin::Scope::ReadyOnly)))
        .collect();
    let admin = admin::start(&admin_addrs, state)
        .map_err(|source| StartError::Admin { addr: format!("{admin_addrs:?}"), source })?;
    for a in &admin {
        info!(addr = %a, "admin listening");
    }
    clusters.resolve_all(&drain).await;
    let targets =
        Targets { clusters: clusters.clone(), routes, listeners: listeners.clone(), ready: ready.clone(), dump };
    let xds = dynamic::start(&bootstrap, xds_tls.as_ref(), targets)?;
    tokio::spawn(crate::dynamic::sds::follow(xds.clone(), bootstrap.clone(), drain.clone()));
    tokio::spawn(crate::tls::files::watch(drain.clone()));
    // The start-up config is converted: the descriptor pool is rebuilt by the first push or
    // config dump that needs it, and until then its ~4.5 MB go back with the parse trees'.
    xds_client::json::release_pool(Duration::ZERO);
    crate::overload::trim();
    if xds.is_none() {
        ready.store(true, Ordering::Release);
        crate::telemetry::server_stats::stats().set_workers_started();
        info!(listeners = bootstrap.listeners.len(), "ready");
    }
    Ok(Running {
        listener_manager: listeners,
        admin,
        shutdown,
        clusters,
        _secrets: secrets,
        xds,
        drain,
        tracker,
        drain_time: opts.drain_time,
    })
}

impl Running {
    /// The bound address of a listener by name.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listener_manager.addresses().into_iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Waits for SIGTERM/SIGINT (caught by `signals` since before start-up) or
    /// `/quitquitquit`, then drains.
    pub async fn run_until_signal(self, mut signals: Signals) {
        tokio::select! {
            _ = Signals::recv(&mut signals.term) => info!("SIGTERM: draining"),
            _ = Signals::recv(&mut signals.int) => info!("SIGINT: draining"),
            _ = self.shutdown.cancelled() => info!("shutdown requested: draining"),
        }
        self.drain().await;
    }

    /// Stops accepting (new connections are refused), lets in-flight requests and
    /// connections finish for up to the drain time, then returns.
    pub async fn drain(self) {
        crate::telemetry::server_stats::stats().set_draining();
        if let Some(x) = &self.xds {
            x.shutdown();
        }
        self.clusters.shutdown();
        self.drain.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.drain_time, self.tracker.wait()).await.is_err() {
            info!(remaining = self.tracker.len(), "drain time over; closing remaining connections");
        } else {
            info!("drained");
        }
        // The last connections' access-log lines are on their way to the writer threads.
        let _ = tokio::task::spawn_blocking(|| {
            crate::telemetry::log_writer::flush(std::time::Duration::from_secs(2));
        })
        .await;
    }
}
