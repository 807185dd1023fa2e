//! L7: HTTP/1.1, HTTP/2 (h2c), gRPC and WebSocket through hyper, routed by the route table.

pub mod filters;
pub mod forward;
pub mod hash;
pub mod headers;
pub mod path;
pub mod record;
pub mod replay;
pub mod reply;
pub mod router;
pub mod routes;
pub mod server;
pub mod service;
pub mod stream_limits;
pub mod upgrade;
pub mod xfcc;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cluster::ClusterManager;
use crate::config::listener::HttpConnectionManager;

/// What every request on one downstream connection shares.
#[derive(Debug)]
pub struct ConnCtx {
    /// The HTTP config of the chain that accepted the connection.
    pub hcm: Arc<HttpConnectionManager>,
    /// Clusters.
    pub clusters: Arc<ClusterManager>,
    /// RDS route tables.
    pub routes: Arc<routes::RouteRegistry>,
    /// Downstream peer.
    pub peer: SocketAddr,
    /// Local (original destination) address.
    pub local: SocketAddr,
    /// The pre-NAT destination (ORIGINAL_DST clusters), when traffic was redirected here.
    pub original_dst: Option<SocketAddr>,
    /// `source_workload` label (node cluster).
    pub source: Arc<str>,
    /// Set when the chain terminated TLS: the client's certificate and ours (XFCC, logs).
    pub tls: Option<crate::tls::context::PeerInfo>,
    /// The listener serves inbound traffic (Istio's `reporter="destination"`).
    pub inbound: bool,
    /// Served by an outbound listener (egress spans).
    pub outbound: bool,
    /// The client's SPIFFE id, when it presented a certificate (metric labels).
    pub peer_principal: Option<Arc<str>>,
    /// The SNI the client sent (RBAC `requested_server_name`).
    pub sni: Option<String>,
}
