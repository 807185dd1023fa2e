//! Clusters at run time: host sets (swapped atomically), balancing, connection limits and the
//! pooled HTTP clients that reach the hosts.

pub mod connector;
mod dns;
pub mod h1pool;
pub mod h2pool;
mod health_checks;
pub mod host;
pub mod hostset;
pub mod limits;
mod manager;
mod original_dst;
mod outlier_detection;
pub mod stats;
pub mod upstream_body;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use self::connector::Connector;
use self::host::Host;
pub use self::hostset::HostSet;
use self::limits::Gauge;
pub use self::manager::ClusterManager;
use self::stats::ClusterStats;
use crate::config::cluster::Transport;
use crate::config::{Cluster, Discovery};

/// Errors carried by proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream and returned downstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// A pooled upstream HTTP client.
/// A cluster config with its TLS contexts built (`tls::build::cluster`): what a runtime is
/// made from. Building is where files are read and certificates checked, so a bad one is
/// refused before the config is accepted.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The converted config.
    pub config: Arc<Cluster>,
    /// `transport_socket(_matches)` with their contexts.
    pub transport: Transport<crate::tls::context::UpstreamTls>,
}

/// One cluster's run-time state.
#[derive(Debug)]
pub struct ClusterRuntime {
    /// The config it was built from.
    pub config: Arc<Cluster>,
    /// Metric handles.
    pub stats: Arc<ClusterStats>,
    hosts: ArcSwap<HostSet>,
    /// HTTP/1.1 connections, pooled per worker.
    pub h1: h1pool::H1Pool,
    /// HTTP/2 (h2c) pool.
    pub h2: h2pool::H2Pool,
    /// Requests in flight (`max_requests`).
    pub requests: Arc<Gauge>,
    /// Retries in flight (`max_retries`).
    pub retries: Arc<Gauge>,
    /// Open connections (`max_connections`), shared with the connector and tcp_proxy.
    pub connections: Arc<Gauge>,
    /// Fired when the cluster is removed or replaced (stops its DNS refresh and detector).
    pub stop: tokio_util::sync::CancellationToken,
    /// Consecutive-error detections for the outlier detector task.
    outlier_tx: Option<tokio::sync::mpsc::UnboundedSender<(SocketAddr, Option<crate::outlier::EjectionType>)>>,
    /// Requests served from a priority in panic.
    pub healthy_panic: metrics::Counter,
    /// The proxy's locality (proxy-side failover priorities).
    node: Arc<crate::locality::NodeView>,
    /// `transport_socket(_matches)`, built.
    transport: Transport<crate::tls::context::UpstreamTls>,
    /// Hosts reached over TLS and their context (from `transport_socket(_matches)`), shared
    /// with the connector; rebuilt with the host set.
    pub tls_hosts: Arc<ArcSwap<std::collections::HashMap<SocketAddr, Arc<crate::tls::context::UpstreamTls>>>>,
    /// ORIGINAL_DST clusters: one kept host per destination.
    original_dst: original_dst::OriginalDstHosts,
}

impl ClusterRuntime {
    /// Builds the run-time cluster with its static (IP) hosts and starts its outlier detector
    /// (when configured); DNS hosts come from [`ClusterManager::resolve_all`].
    pub fn new(ready: Ready, node: Arc<crate::locality::NodeView>) -> Arc<Self> {
        let Ready { config, transport } = ready;
        let stats = Arc::new(ClusterStats::new(&config.name));
        let cb = config.circuit_breakers;
        let connections = Gauge::new(cb.max_connections);
        let tls_hosts: Arc<ArcSwap<std::collections::HashMap<_, _>>> = Arc::default();
        let connector = Connector {
            timeout: config.connect_timeout,
            limit: connections.clone(),
            stats: stats.clone(),
            source: config.source_address,
            tls: tls_hosts.clone(),
            purpose: crate::tls::context::Purpose::Http1,
            default_tls: transport.for_endpoint(&Default::default()).cloned(),
            tcp_keepalive: config.tcp_keepalive,
        };
        // `max_requests_per_connection: 1`: nothing goes back to the pool.
        let h1 =
            h1pool::H1Pool::new(connector.clone(), config.idle_timeout, config.max_requests_per_connection == Some(1));
        // PING idle HTTP/2 connections when asked: a dead upstream is found before a request
        // lands on it (`http2_protocol_options.connection_keepalive`).
        let h2 = h2pool::H2Pool::new(
            Connector { purpose: crate::tls::context::Purpose::Http2, ..connector },
            config.h2_keepalive,
            config.idle_timeout,
        );
        let hosts = static_hosts(&config, &node);
        let (tx, rx) = match &config.outlier {
            Some(_) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let rt = Arc::new(ClusterRuntime {
            hosts: ArcSwap::from_pointee(HostSet::new(Vec::new(), &config, config.policy)),
            stats,
            h1,
            h2,
            requests: Gauge::new(cb.max_requests.min(cb.max_pending_requests.saturating_add(cb.max_requests))),
            retries: Gauge::new(cb.max_retries),
            connections,
            stop: tokio_util::sync::CancellationToken::new(),
            outlier_tx: tx,
            node,
            tls_hosts,
            transport,
            original_dst: original_dst::OriginalDstHosts::default(),
            healthy_panic: metrics::counter!("envoy_cluster_lb_healthy_panic", "envoy_cluster_name" => config.name.clone()),
            config,
        });
        rt.store(rt.build(hosts, rt.config.policy));
        if let (Some(rx), Some(cfg), Ok(handle)) =
            (rx, rt.config.outlier.clone(), tokio::runtime::Handle::try_current())
        {
            handle.spawn(outlier_detection::run(Arc::downgrade(&rt), cfg, rx, rt.stop.clone()));
        }
        if let (Some(cfg), Ok(handle)) = (rt.config.health_check.clone(), tokio::runtime::Handle::try_current()) {
            handle.spawn(health_checks::run(Arc::downgrade(&rt), cfg, rt.stop.clone()));
        }
        rt
    }

    /// The current host set.
    pub fn hosts(&self) -> arc_swap::Guard<Arc<HostSet>> {
        self.hosts.load()
    }

    /// Replaces the hosts (DNS refresh, EDS). Requests in flight keep their host.
    pub fn set_hosts(&self, hosts: Vec<Arc<Host>>) {
        let policy = self.hosts.load().policy;
        self.store(self.build(hosts, policy));
    }

    /// Builds a host set, with zone-aware routing when the bootstrap names a local cluster and
    /// this is not it (and it is not locality-weighted or hash-based, which Envoy keeps apart).
    fn build(&self, hosts: Vec<Arc<Host>>, policy: crate::config::AssignmentPolicy) -> HostSet {
        let c = &self.config;
        let zone = match &self.node.local_cluster {
            Some(local)
                if *local != c.name
                    && !c.locality_weighted
                    && !matches!(
                        c.lb_policy,
                        crate::config::LbPolicy::RingHash { .. } | crate::config::LbPolicy::Maglev { .. }
                    ) =>
            {
                Some(hostset::ZoneInput {
                    own: self.node.locality.clone(),
                    local: self.node.local_hosts.load_full(),
                    cfg: c.zone_aware,
                })
            }
            _ => None,
        };
        HostSet::with_zone(hosts, c, policy, zone)
    }

    /// Publishes a new host set and its per-priority loads (gauges, and a log line when the
    /// loads change).
    fn store(&self, set: HostSet) {
        let before = self.hosts.load().load.healthy.clone();
        for (i, p) in set.priorities.iter().enumerate() {
            for (class, v) in [("healthy", set.load.healthy.get(i)), ("degraded", set.load.degraded.get(i))] {
                metrics::gauge!("isthmus_cluster_priority_load", "envoy_cluster_name" => self.config.name.clone(), "priority" => p.to_string(), "class" => class)
                    .set(f64::from(v.copied().unwrap_or(0)));
            }
        }
        if !before.is_empty() && before != set.load.healthy {
            tracing::info!(cluster = %self.config.name, loads = ?set.load.healthy, panic = ?set.load.panic, "priority loads changed");
        }
        if self.node.local_cluster.as_deref() == Some(self.config.name.as_str()) {
            let mut per: Vec<(crate::config::bootstrap::Locality, u64)> = Vec::new();
            for h in set.all.iter().filter(|h| h.is_healthy()) {
                match per.iter_mut().find(|(l, _)| *l == h.locality) {
                    Some((_, n)) => *n += 1,
                    None => per.push((h.locality.clone(), 1)),
                }
            }
            self.node.local_hosts.store(Arc::new(per));
        }
        if self.transport.any_tls() {
            let map = set
                .all
                .iter()
                .filter_map(|h| self.transport.for_endpoint(&h.transport_match).map(|t| (h.addr, t.clone())))
                .collect();
            self.tls_hosts.store(Arc::new(map));
        }
        self.hosts.store(Arc::new(set));
    }

    /// Tells the outlier detector that a health check returned `addr` early.
    pub fn uneject_notice(&self, addr: SocketAddr) {
        if let Some(tx) = &self.outlier_tx {
            let _ = tx.send((addr, None));
        }
    }

    /// The configured endpoints as this proxy sees them (failover priorities applied).
    pub fn view_endpoints(&self) -> Vec<crate::config::LocalityEndpoints> {
        self.node.view(&self.config, &self.config.endpoints)
    }

    /// Recomputes loads after a health change (ejection, return).
    pub fn rebuild(&self) {
        let all = self.hosts.load().all.clone();
        self.set_hosts(all);
    }

    /// Feeds an attempt's result to outlier detection (lock-free; detections are queued to
    /// the cluster's detector task).
    pub fn record(&self, host: &Host, outcome: crate::outlier::Outcome) {
        let (Some(cfg), Some(tx)) = (&self.config.outlier, &self.outlier_tx) else { return };
        for kind in host.counters.record(cfg, outcome).into_iter().flatten() {
            let _ = tx.send((host.addr, Some(kind)));
        }
    }

    /// Replaces the hosts from EDS endpoints. Hosts whose address, weight, priority and
    /// health are unchanged keep their `Host` (and its counters and active requests).
    pub fn set_endpoints(&self, assignment: &crate::config::Assignment) {
        let endpoints = &self.node.view(&self.config, &assignment.endpoints);
        let prev: std::collections::HashMap<SocketAddr, Arc<Host>> =
            self.hosts().all.iter().map(|h| (h.addr, h.clone())).collect();
        let mut out = Vec::new();
        for le in endpoints {
            for e in &le.endpoints {
                if let Some(addr) = e.address.host_addr() {
                    let host = match prev.get(&addr) {
                        Some(h)
                            if h.weight == e.weight
                                && h.priority == le.priority
                                && h.health == e.health
                                && h.locality == le.locality
                                && h.locality_weight == le.weight
                                && h.transport_match == e.transport_match =>
                        {
                            h.clone()
                        }
                        _ => Arc::new(
                            Host::new(addr, e.weight, le.locality.clone(), le.priority, e.health, e.hostname.clone())
                                .with_locality_weight(le.weight)
                                .with_transport_match(e.transport_match.clone()),
                        ),
                    };
                    out.push(host);
                }
            }
        }
        self.store(self.build(out, assignment.policy));
    }

    /// The TLS context for connections to `host` (`None` = plaintext).
    pub fn upstream_tls(&self, host: &Host) -> Option<Arc<crate::tls::context::UpstreamTls>> {
        if !self.transport.any_tls() {
            return None;
        }
        if self.config.discovery == Discovery::OriginalDst {
            // Original-destination hosts carry no metadata: the same choice the connector
            // falls back to.
            return self.transport.for_endpoint(&Default::default()).cloned();
        }
        self.tls_hosts.load().get(&host.addr).cloned()
    }

    /// Every host, for `/clusters`: the host set, plus the destinations an ORIGINAL_DST cluster
    /// has dialled.
    pub fn listed_hosts(&self) -> Vec<Arc<Host>> {
        let mut v: Vec<Arc<Host>> = self.hosts().all.to_vec();
        v.extend(self.original_dst.all());
        v
    }

    /// Picks a host. `original_dst` is the connection's original destination, used by
    /// ORIGINAL_DST clusters; `avoid` filters previously tried hosts when it can.
    pub fn pick(
        &self,
        original_dst: Option<SocketAddr>,
        avoid: &dyn Fn(&Host) -> bool,
        attempts: u32,
    ) -> Option<Arc<Host>> {
        self.pick_hashed(original_dst, None, 0, avoid, attempts)
    }

    /// [`ClusterRuntime::pick`] with a request hash (RING_HASH/MAGLEV) and the try number.
    pub fn pick_hashed(
        &self,
        original_dst: Option<SocketAddr>,
        hash: Option<u64>,
        attempt: u32,
        avoid: &dyn Fn(&Host) -> bool,
        attempts: u32,
    ) -> Option<Arc<Host>> {
        if self.config.discovery == Discovery::OriginalDst {
            return original_dst.map(|a| self.original_dst.get(a));
        }
        let mut panicked = false;
        let h = self.hosts.load().pick_hashed(hash, attempt, avoid, attempts, &mut panicked);
        if panicked {
            self.healthy_panic.increment(1);
        }
        if h.is_none() {
            self.stats.no_healthy_host.increment(1);
        }
        h
    }
}

fn static_hosts(c: &Cluster, node: &crate::locality::NodeView) -> Vec<Arc<Host>> {
    let mut out = Vec::new();
    for le in &node.view(c, &c.endpoints) {
        for e in &le.endpoints {
            if let Some(addr) = e.address.host_addr() {
                out.push(Arc::new(
                    Host::new(addr, e.weight, le.locality.clone(), le.priority, e.health, e.hostname.clone())
                        .with_locality_weight(le.weight)
                        .with_transport_match(e.transport_match.clone()),
                ));
            }
        }
    }
    out
}
