//! The whole static config: who this proxy is, where admin listens, and its static resources.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Cluster, Listener};

/// The proxy's identity, sent to control planes and used for locality-aware routing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Node {
    /// `node.id` (Envoy `--service-node`).
    pub id: String,
    /// `node.cluster` (Envoy `--service-cluster`).
    pub cluster: String,
    /// Where this proxy runs; decides "local" for locality-aware balancing.
    pub locality: Locality,
}

/// Region / zone / sub-zone, compared as a whole and by prefix for failover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Locality {
    /// e.g. `us-east1`.
    pub region: String,
    /// e.g. `us-east1-b`.
    pub zone: String,
    /// Finer grouping (rack, node pool).
    pub sub_zone: String,
}

/// The admin interface's listener.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Admin {
    /// Where `/stats/prometheus`, `/config_dump`, `/ready`… are served.
    pub address: SocketAddr,
}

/// Where and how to fetch LDS/CDS (and the RDS/EDS they name) over ADS.
#[derive(Debug, Clone)]
pub struct Dynamic {
    /// `ads_config.api_type`: GRPC (SotW) or DELTA_GRPC.
    pub delta: bool,
    /// The static cluster that reaches the control plane (`envoy_grpc.cluster_name`).
    pub cluster: String,
    /// `lds_config: {ads: {}}` present.
    pub lds: bool,
    /// `cds_config: {ads: {}}` present.
    pub cds: bool,
    /// Does-not-exist timer for RDS/EDS names (`initial_fetch_timeout`, default 15 s; 0s
    /// disables).
    pub initial_fetch_timeout: Option<std::time::Duration>,
    /// TLS to the control plane, from the xDS cluster's `transport_socket`.
    pub tls: Option<super::tls::XdsTlsSpec>,
    /// `envoy_grpc.max_receive_message_length` (`None`: the client's 64 MiB default).
    pub max_message_size: Option<usize>,
}

/// A complete, validated config. Immutable; replaced whole on change.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// Identity.
    pub node: Node,
    /// Admin listener, if configured (Envoy runs without one too).
    pub admin: Option<Admin>,
    /// Static listeners, in file order.
    pub listeners: Vec<Arc<Listener>>,
    /// Static clusters, in file order.
    pub clusters: Vec<Arc<Cluster>>,
    /// `static_resources.secrets`, for `tls_certificate_sds_secret_configs: [{name}]`
    /// references (installed by the builder before anything that names them is built).
    pub secrets: Vec<super::tls::SecretSpec>,
    /// `cluster_manager.local_cluster_name`: the proxy's own service, for zone-aware routing.
    pub local_cluster: Option<String>,
    /// ADS settings from `dynamic_resources`, when the config comes from a control plane.
    pub dynamic: Option<Dynamic>,
    /// `tracing.http`: the tracer of HCMs whose `tracing` names none.
    pub tracer: Option<Arc<super::listener::Tracer>>,
    /// `overload_manager`: the global connection limit (connections past it, over all
    /// listeners, are closed at accept) and the heap monitor's actions.
    pub overload: super::overload::Overload,
    /// The node as configured, sent to the control plane (metadata included).
    pub node_proto: xds_client::protos::envoy::config::core::v3::Node,
    /// The document as loaded, for `/config_dump`.
    pub source: serde_json::Value,
}
