//! xDS resource types: their type URLs, whether they are wildcard, and how to read a
//! resource's name without decoding all of it.

/// `envoy.config.listener.v3.Listener` (LDS).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `envoy.config.route.v3.RouteConfiguration` (RDS).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// `envoy.config.cluster.v3.Cluster` (CDS).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Every type this client knows, in Envoy's safe push order (CDS, EDS, LDS, RDS, SDS).
pub const ALL: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET];

/// LDS and CDS are wildcard (the server sends everything for this node); RDS, EDS and SDS
/// are subscribed by name.
pub fn is_wildcard(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

/// A short label for metrics and logs (`cds`, `eds`, …).
pub fn short(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "lds",
        ROUTE => "rds",
        CLUSTER => "cds",
        ENDPOINT => "eds",
        SECRET => "sds",
        _ => "unknown",
    }
}

/// Only field 1, which is the name in all five resource types (`name`, or `cluster_name` for
/// ClusterLoadAssignment); prost skips the rest without allocating it.
#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// The resource's name, read from field 1 of its encoded bytes.
pub fn resource_name(encoded: &[u8]) -> Result<String, prost::DecodeError> {
    <NameOnly as prost::Message>::decode(encoded).map(|n| n.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protos::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use prost::Message;

    #[test]
    fn reads_the_name_of_each_type() {
        let cla = ClusterLoadAssignment { cluster_name: "outbound|80||a".into(), ..Default::default() };
        assert_eq!(resource_name(&cla.encode_to_vec()).unwrap(), "outbound|80||a");
        assert!(resource_name(b"\xff\xff\xff").is_err());
        assert!(is_wildcard(CLUSTER) && !is_wildcard(ENDPOINT));
    }
}
