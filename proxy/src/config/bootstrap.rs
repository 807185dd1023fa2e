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
    /// Whether `dynamic_resources` asked for ADS; served by the xDS issue, kept so validate
    /// mode and `/config_dump` can tell the operator.
    pub dynamic_resources: Option<serde_json::Value>,
    /// The document as loaded, for `/config_dump`.
    pub source: serde_json::Value,
}
