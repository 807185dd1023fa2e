//! Upstream clusters: how endpoints are found, balanced, limited and spoken to.

use std::net::SocketAddr;
use std::time::Duration;

use super::bootstrap::Locality;
use super::tls::UpstreamSpec;

/// A named group of upstream endpoints.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Unique name, referenced by routes and tcp_proxy.
    pub name: String,
    /// How endpoints are found.
    pub discovery: Discovery,
    /// TCP connect limit per attempt.
    pub connect_timeout: Duration,
    /// Host selection policy.
    pub lb_policy: LbPolicy,
    /// Static endpoints (STATIC / DNS), grouped by locality and priority.
    pub endpoints: Vec<LocalityEndpoints>,
    /// How load is spread over priorities (static `load_assignment`; EDS sends its own).
    pub policy: AssignmentPolicy,
    /// Passive health checking, when configured.
    pub outlier: Option<crate::outlier::OutlierConfig>,
    /// `common_lb_config.locality_weighted_lb_config`: pick a locality by weight first.
    pub locality_weighted: bool,
    /// Istio `localityLbSetting` from `metadata.filter_metadata["isthmus.io/locality_lb"]`:
    /// the proxy computes failover priorities itself.
    pub locality_lb: Option<crate::locality::setting::LocalityLbSetting>,
    /// `upstream_bind_config.source_address`: connect from this address (Istio's inbound
    /// passthrough uses 127.0.0.6 so the app sees the connection as local, not looped).
    pub source_address: Option<std::net::IpAddr>,
    /// Zone-aware routing knobs (used when the bootstrap names a local cluster).
    pub zone_aware: ZoneAware,
    /// Active health checking, when configured.
    pub health_check: Option<crate::health::HealthCheckConfig>,
    /// Limits (default priority thresholds).
    pub circuit_breakers: CircuitBreakers,
    /// Protocol towards HTTP upstreams.
    pub upstream_protocol: UpstreamProtocol,
    /// `common_lb_config.healthy_panic_threshold` (percent; default 50).
    pub healthy_panic_threshold: f64,
    /// How often DNS clusters re-resolve (default 5 s).
    pub dns_refresh_rate: Duration,
    /// Close pooled upstream connections idle for this long (default 1 h).
    pub idle_timeout: Option<Duration>,
    /// `max_requests_per_connection` (cluster or `common_http_protocol_options`): only `1` is
    /// accepted, served by never pooling a connection.
    pub max_requests_per_connection: Option<u32>,
    /// Least-request choice count (default 2).
    pub choice_count: u32,
    /// `transport_socket` and `transport_socket_matches`: TLS or plaintext per endpoint.
    pub transport: Transport<UpstreamSpec>,
    /// `http2_protocol_options.connection_keepalive`: PING idle HTTP/2 connections.
    pub h2_keepalive: Option<H2Keepalive>,
    /// `upstream_connection_options.tcp_keepalive`.
    pub tcp_keepalive: Option<TcpKeepalive>,
}

/// How connections to a cluster's hosts are secured: specs in the model (`T` =
/// [`UpstreamSpec`]), built contexts in the cluster runtime (`T` = `tls::context::UpstreamTls`).
#[derive(Debug)]
pub struct Transport<T = UpstreamSpec> {
    /// `transport_socket` (`None` = plaintext).
    pub default: Option<std::sync::Arc<T>>,
    /// `transport_socket_matches`, in order: the first whose `match` is a subset of the
    /// endpoint's `envoy.transport_socket_match` metadata wins (Istio's auto mTLS).
    pub matches: Vec<SocketMatch<T>>,
}

// Manual: cloning shares the `Arc`s, whatever `T` is (rustls contexts are not `Clone`).
impl<T> Clone for Transport<T> {
    fn clone(&self) -> Self {
        Transport { default: self.default.clone(), matches: self.matches.clone() }
    }
}

impl<T> Clone for SocketMatch<T> {
    fn clone(&self) -> Self {
        SocketMatch { name: self.name.clone(), labels: self.labels.clone(), tls: self.tls.clone() }
    }
}

impl<T> Default for Transport<T> {
    fn default() -> Self {
        Transport { default: None, matches: Vec::new() }
    }
}

/// One `transport_socket_matches` entry.
#[derive(Debug)]
pub struct SocketMatch<T = UpstreamSpec> {
    /// Entry name (stats).
    pub name: String,
    /// Required metadata (string values).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The socket (`None` = raw_buffer).
    pub tls: Option<std::sync::Arc<T>>,
}

impl<T> Transport<T> {
    /// The TLS context for an endpoint with this `envoy.transport_socket_match` metadata.
    pub fn for_endpoint(&self, metadata: &std::collections::BTreeMap<String, String>) -> Option<&std::sync::Arc<T>> {
        match self.matches.iter().find(|m| m.labels.iter().all(|(k, v)| metadata.get(k) == Some(v))) {
            Some(m) => m.tls.as_ref(),
            None => self.default.as_ref(),
        }
    }

    /// Whether any host may need TLS.
    pub fn any_tls(&self) -> bool {
        self.default.is_some() || self.matches.iter().any(|m| m.tls.is_some())
    }

    /// The same choices with each socket turned into something else (the builder's step
    /// from specs to contexts).
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<std::sync::Arc<U>, E>) -> Result<Transport<U>, E> {
        let mut one = |t: &Option<std::sync::Arc<T>>| t.as_deref().map(&mut f).transpose();
        let default = one(&self.default)?;
        let mut matches = Vec::with_capacity(self.matches.len());
        for m in &self.matches {
            matches.push(SocketMatch { name: m.name.clone(), labels: m.labels.clone(), tls: one(&m.tls)? });
        }
        Ok(Transport { default, matches })
    }
}

/// Endpoint discovery type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Endpoints are addresses in the config.
    Static,
    /// Every address each hostname resolves to is a host; re-resolved periodically.
    StrictDns,
    /// One host per hostname: the first address it resolves to.
    LogicalDns,
    /// Endpoints come from EDS (`service_name`, or the cluster name).
    Eds {
        /// The ClusterLoadAssignment name to ask for.
        service_name: String,
    },
    /// The connection's original destination is the host.
    OriginalDst,
}

/// Host selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    /// Envoy's Ketama ring over xxHash64 (route `hash_policy` gives the key).
    RingHash {
        /// `minimum_ring_size` (default 1024).
        min: u64,
        /// `maximum_ring_size` (default 8M).
        max: u64,
    },
    /// Envoy's Maglev table.
    Maglev {
        /// `table_size` (prime, default 65537).
        table_size: u64,
    },
    /// Weighted round robin (earliest-deadline-first over weights).
    RoundRobin,
    /// Power of N choices by active requests.
    LeastRequest,
    /// Uniform random among (weighted) hosts.
    Random,
    /// The cluster's own rule (ORIGINAL_DST: the original destination).
    ClusterProvided,
    /// Linkerd's latency-aware P2C over Peak-EWMA cost (opt-in: cluster metadata
    /// `isthmus.io/lb: {policy: PEAK_EWMA}`).
    PeakEwma,
}

/// `common_lb_config.zone_aware_lb_config`, with Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneAware {
    /// Percent of requests that zone routing applies to (default 100).
    pub routing_enabled: f64,
    /// Minimum healthy upstream hosts in P0 (default 6).
    pub min_cluster_size: u64,
    /// Fail instead of using all hosts when P0 is in panic.
    pub fail_traffic_on_panic: bool,
}

impl Default for ZoneAware {
    fn default() -> Self {
        ZoneAware { routing_enabled: 100.0, min_cluster_size: 6, fail_traffic_on_panic: false }
    }
}

/// `ClusterLoadAssignment.policy`: the knobs of Envoy's priority load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentPolicy {
    /// `overprovisioning_factor` (percent; default 140).
    pub overprovisioning_factor: u32,
    /// `weighted_priority_health`: availability by endpoint weight sums, not counts.
    pub weighted_priority_health: bool,
}

impl Default for AssignmentPolicy {
    fn default() -> Self {
        AssignmentPolicy { overprovisioning_factor: 140, weighted_priority_health: false }
    }
}

/// Endpoints and policy of one ClusterLoadAssignment.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// Endpoints by locality and priority.
    pub endpoints: Vec<LocalityEndpoints>,
    /// Priority-load knobs.
    pub policy: AssignmentPolicy,
}

/// Connection and request limits, with overflow counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Open upstream connections (default 1024).
    pub max_connections: u64,
    /// Requests waiting for a connection (default 1024).
    pub max_pending_requests: u64,
    /// Requests in flight (default 1024).
    pub max_requests: u64,
    /// Retries in flight (default 3).
    pub max_retries: u64,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers { max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3 }
    }
}

/// HTTP version towards the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (Envoy default).
    Http1,
    /// HTTP/2 prior knowledge (h2c), required for gRPC upstreams.
    Http2,
    /// Whatever the downstream spoke (`use_downstream_protocol_config`).
    Downstream,
}

/// Endpoints that share a locality and priority.
#[derive(Debug, Clone)]
pub struct LocalityEndpoints {
    /// Where they run.
    pub locality: Locality,
    /// 0 is most preferred.
    pub priority: u32,
    /// `load_balancing_weight` for locality-weighted balancing.
    pub weight: Option<u32>,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint as configured.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where it is.
    pub address: EndpointAddress,
    /// Relative weight (default 1).
    pub weight: u32,
    /// Health reported by the config source.
    pub health: HealthStatus,
    /// Hostname for logs (`endpoint.hostname`).
    pub hostname: String,
    /// Labels for `failover_priority` (`metadata.filter_metadata["isthmus.io/labels"]`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// `metadata.filter_metadata["envoy.transport_socket_match"]` (e.g. `tlsMode: istio`).
    pub transport_match: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

/// An endpoint address before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAddress {
    /// A literal IP and port.
    Socket(SocketAddr),
    /// A Unix socket (`pipe`), e.g. istio-agent's xDS and SDS sockets.
    Pipe(std::path::PathBuf),
    /// A name to resolve (DNS clusters).
    Dns {
        /// Hostname.
        host: String,
        /// Port.
        port: u16,
    },
    /// `envoy_internal_address`: an internal listener of this process (Istio waypoints).
    Internal {
        /// `server_listener_name`.
        listener: String,
        /// `endpoint_id`.
        endpoint_id: String,
        /// The endpoint's `envoy.filters.listener.original_dst` `local` metadata: the
        /// destination the internal listener sees.
        original_dst: Option<SocketAddr>,
    },
}

impl EndpointAddress {
    /// The address a host of this endpoint is keyed (and dialled) by: the socket address, or
    /// the synthetic one of an internal endpoint; none for pipes and unresolved names.
    pub fn host_addr(&self) -> Option<SocketAddr> {
        match self {
            EndpointAddress::Socket(a) => Some(*a),
            EndpointAddress::Internal { listener, endpoint_id, original_dst } => {
                Some(crate::listener::internal::endpoint_addr(crate::listener::internal::Target {
                    listener: listener.clone(),
                    endpoint_id: endpoint_id.clone(),
                    original_dst: *original_dst,
                }))
            }
            EndpointAddress::Pipe(_) | EndpointAddress::Dns { .. } => None,
        }
    }
}

/// Health as told by the control plane (`health_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HealthStatus {
    /// Serving (UNKNOWN and HEALTHY).
    Healthy,
    /// Serving, but preferred less.
    Degraded,
    /// Not serving (UNHEALTHY, DRAINING, TIMEOUT).
    Unhealthy,
}

/// One cluster, or a weighted choice between several (canary splits).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterTarget {
    /// Always this cluster.
    Single(String),
    /// Choose by weight; weights are relative.
    Weighted(Vec<WeightedCluster>),
}

/// A cluster with a relative weight and its own header edits.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedCluster {
    /// Cluster name.
    pub name: String,
    /// Relative weight (> 0 to receive traffic).
    pub weight: u32,
}

/// HTTP/2 PING keepalive (`KeepaliveSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Keepalive {
    /// `interval`: how often to PING.
    pub interval: Duration,
    /// `timeout`: how long a PING may go unanswered before the connection is closed.
    pub timeout: Duration,
}

/// `SO_KEEPALIVE` settings (`TcpKeepalive`); unset fields keep the kernel's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    /// `keepalive_time`: idle time before the first probe.
    pub time: Option<Duration>,
    /// `keepalive_interval`: time between probes.
    pub interval: Option<Duration>,
    /// `keepalive_probes`: unanswered probes before the connection is dropped.
    pub probes: Option<u32>,
}
