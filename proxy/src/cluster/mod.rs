//! Clusters at run time: host sets (swapped atomically), balancing, connection limits and the
//! pooled HTTP clients that reach the hosts.

pub mod connector;
mod dns;
pub mod host;
pub mod limits;
mod manager;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use self::connector::Connector;
use self::host::Host;
use self::limits::Gauge;
pub use self::manager::ClusterManager;
use self::stats::ClusterStats;
use crate::balance::Picker;
use crate::config::cluster::{EndpointAddress, HealthStatus};
use crate::config::{Cluster, Discovery};

/// Errors carried by proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream and returned downstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// A pooled upstream HTTP client.
pub type HttpClient = Client<Connector, ProxyBody>;

/// The current hosts and the picker over the eligible ones.
#[derive(Debug)]
pub struct HostSet {
    /// Every host, for admin and health accounting.
    pub all: Vec<Arc<Host>>,
    /// Chooses among the hosts of the most preferred priority that has healthy ones (all hosts
    /// when none is healthy: panic mode). Envoy's full priority load is the locality issue's.
    pub picker: Picker,
}

impl HostSet {
    fn new(all: Vec<Arc<Host>>, cluster: &Cluster) -> Self {
        let serving = |h: &&Arc<Host>| h.health != HealthStatus::Unhealthy;
        let best = all.iter().filter(serving).map(|h| h.priority).min();
        let eligible: Vec<Arc<Host>> = match best {
            Some(p) => all.iter().filter(serving).filter(|h| h.priority == p).cloned().collect(),
            None => all.clone(),
        };
        HostSet { picker: Picker::new(eligible, cluster.lb_policy, cluster.choice_count), all }
    }
}

/// One cluster's run-time state.
#[derive(Debug)]
pub struct ClusterRuntime {
    /// The config it was built from.
    pub config: Arc<Cluster>,
    /// Metric handles.
    pub stats: Arc<ClusterStats>,
    hosts: ArcSwap<HostSet>,
    /// HTTP/1.1 pool.
    pub h1: HttpClient,
    /// HTTP/2 (h2c) pool.
    pub h2: HttpClient,
    /// Requests in flight (`max_requests`).
    pub requests: Arc<Gauge>,
    /// Retries in flight (`max_retries`).
    pub retries: Arc<Gauge>,
    /// Open connections (`max_connections`), shared with the connector and tcp_proxy.
    pub connections: Arc<Gauge>,
    /// Fired when the cluster is removed or replaced (stops its DNS refresh).
    pub stop: tokio_util::sync::CancellationToken,
}

impl ClusterRuntime {
    /// Builds the run-time cluster with its static (IP) hosts; DNS hosts come from
    /// [`ClusterManager::resolve_all`].
    pub fn new(config: Arc<Cluster>) -> Self {
        let stats = Arc::new(ClusterStats::new(&config.name));
        let cb = config.circuit_breakers;
        let connections = Gauge::new(cb.max_connections);
        let connector = Connector { timeout: config.connect_timeout, limit: connections.clone(), stats: stats.clone() };
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_timer(TokioTimer::new()).timer(TokioTimer::new()).pool_idle_timeout(config.idle_timeout);
        let h1 = b.build(connector.clone());
        let h2 = b.clone().http2_only(true).build(connector);
        let hosts = static_hosts(&config);
        ClusterRuntime {
            hosts: ArcSwap::from_pointee(HostSet::new(hosts, &config)),
            stats,
            h1,
            h2,
            requests: Gauge::new(cb.max_requests.min(cb.max_pending_requests.saturating_add(cb.max_requests))),
            retries: Gauge::new(cb.max_retries),
            connections,
            stop: tokio_util::sync::CancellationToken::new(),
            config,
        }
    }

    /// The current host set.
    pub fn hosts(&self) -> arc_swap::Guard<Arc<HostSet>> {
        self.hosts.load()
    }

    /// Replaces the hosts (DNS refresh, later EDS). Requests in flight keep their host.
    pub fn set_hosts(&self, hosts: Vec<Arc<Host>>) {
        self.hosts.store(Arc::new(HostSet::new(hosts, &self.config)));
    }

    /// Replaces the hosts from EDS endpoints. Hosts whose address, weight, priority and
    /// health are unchanged keep their `Host` (and its counters and active requests).
    pub fn set_endpoints(&self, endpoints: &[crate::config::LocalityEndpoints]) {
        let prev: std::collections::HashMap<SocketAddr, Arc<Host>> =
            self.hosts().all.iter().map(|h| (h.addr, h.clone())).collect();
        let mut out = Vec::new();
        for le in endpoints {
            for e in &le.endpoints {
                if let EndpointAddress::Socket(addr) = e.address {
                    let host = match prev.get(&addr) {
                        Some(h)
                            if h.weight == e.weight
                                && h.priority == le.priority
                                && h.health == e.health
                                && h.locality == le.locality =>
                        {
                            h.clone()
                        }
                        _ => Arc::new(Host::new(
                            addr,
                            e.weight,
                            le.locality.clone(),
                            le.priority,
                            e.health,
                            e.hostname.clone(),
                        )),
                    };
                    out.push(host);
                }
            }
        }
        self.set_hosts(out);
    }

    /// Picks a host. `original_dst` is the connection's original destination, used by
    /// ORIGINAL_DST clusters; `avoid` filters previously tried hosts when it can.
    pub fn pick(
        &self,
        original_dst: Option<SocketAddr>,
        avoid: &dyn Fn(&Host) -> bool,
        attempts: u32,
    ) -> Option<Arc<Host>> {
        if self.config.discovery == Discovery::OriginalDst {
            return original_dst.map(|a| Arc::new(Host::for_test(a, 1)));
        }
        let h = self.hosts.load().picker.pick(avoid, attempts);
        if h.is_none() {
            self.stats.no_healthy_host.increment(1);
        }
        h
    }
}

fn static_hosts(c: &Cluster) -> Vec<Arc<Host>> {
    let mut out = Vec::new();
    for le in &c.endpoints {
        for e in &le.endpoints {
            if let EndpointAddress::Socket(addr) = e.address {
                out.push(Arc::new(Host::new(
                    addr,
                    e.weight,
                    le.locality.clone(),
                    le.priority,
                    e.health,
                    e.hostname.clone(),
                )));
            }
        }
    }
    out
}
