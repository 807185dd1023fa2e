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
#[derive(Debug, Clone, PartialEq)]
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
    pub tls: Option<XdsTls>,
}

/// What the ADS client needs to reach a control plane over TLS (istiod's 15012 port).
#[derive(Clone, PartialEq)]
pub struct XdsTls {
    /// Trusted roots, PEM (`validation_context.trusted_ca`).
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and key, PEM, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server certificate must carry (`sni`, else the endpoint host).
    pub server_name: String,
}

impl std::fmt::Debug for XdsTls {
    // The private key never reaches a log or `/config_dump`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsTls")
            .field("server_name", &self.server_name)
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
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
    /// `static_resources.secrets`, held so their slots stay registered for
    /// `tls_certificate_sds_secret_configs: [{name}]` references.
    pub secrets: Vec<Arc<crate::tls::secrets::Slot>>,
    /// `cluster_manager.local_cluster_name`: the proxy's own service, for zone-aware routing.
    pub local_cluster: Option<String>,
    /// ADS settings from `dynamic_resources`, when the config comes from a control plane.
    pub dynamic: Option<Dynamic>,
    /// The node as configured, sent to the control plane (metadata included).
    pub node_proto: xds_client::protos::envoy::config::core::v3::Node,
    /// The document as loaded, for `/config_dump`.
    pub source: serde_json::Value,
}
