//! `ClusterLoadAssignment` → model (EDS, and a cluster's inline `load_assignment`): localities,
//! priorities, weights, health, endpoint addresses (socket, pipe, DNS name, internal listener)
//! and the endpoint metadata Isthmus reads (labels, transport-socket match, original
//! destination).

use xds_client::protos::envoy::config::core::v3 as core;
use xds_client::protos::envoy::config::endpoint::v3 as ep;

use super::common::host_port;
use super::fields::{check, FieldPolicy};
use crate::config::bootstrap::Locality;
use crate::config::cluster::*;
use crate::config::error::{ConfigError, Path};

pub(super) const LOCALITY_ENDPOINTS: FieldPolicy = FieldPolicy {
    message: "envoy.config.endpoint.v3.LocalityLbEndpoints",
    honoured: &["locality", "lb_endpoints", "load_balancing_weight", "priority"],
    ignored: &["metadata", "proximity"],
};

pub(super) const LB_ENDPOINT: FieldPolicy = FieldPolicy {
    message: "envoy.config.endpoint.v3.LbEndpoint",
    honoured: &["endpoint", "health_status", "load_balancing_weight", "metadata"],
    ignored: &[],
};

pub(super) const ENDPOINT: FieldPolicy = FieldPolicy {
    message: "envoy.config.endpoint.v3.Endpoint",
    honoured: &["address", "hostname"],
    ignored: &["health_check_config", "observability_name"],
};

pub(super) const CLA_POLICY: FieldPolicy = FieldPolicy {
    message: "envoy.config.endpoint.v3.ClusterLoadAssignment.Policy",
    honoured: &["overprovisioning_factor", "weighted_priority_health"],
    ignored: &["endpoint_stale_after", "drop_overloads"],
};

pub(super) const CLA: FieldPolicy = FieldPolicy {
    message: "envoy.config.endpoint.v3.ClusterLoadAssignment",
    honoured: &["cluster_name", "endpoints", "policy"],
    ignored: &["named_endpoints"],
};

/// Endpoint metadata namespace for labels (`failover_priority`).
pub const LABELS_KEY: &str = "isthmus.io/labels";

/// Endpoint metadata namespace read by `transport_socket_matches`.
pub const TRANSPORT_MATCH_KEY: &str = "envoy.transport_socket_match";

/// The string, bool and number fields of a metadata struct, as strings (socket matches, labels).
pub(super) fn string_fields(
    s: &xds_client::protos::google::protobuf::Struct,
) -> std::collections::BTreeMap<String, String> {
    use xds_client::protos::google::protobuf::value::Kind;
    s.fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(x)) => Some((k.clone(), x.clone())),
            Some(Kind::BoolValue(b)) => Some((k.clone(), b.to_string())),
            Some(Kind::NumberValue(n)) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect()
}

/// `ClusterLoadAssignment` → endpoints grouped by locality and priority, plus the
/// overprovisioning factor. Shared by static `load_assignment` and EDS.
pub fn load_assignment(la: &ep::ClusterLoadAssignment, path: &Path) -> Result<Assignment, ConfigError> {
    // The reflective `check` re-encodes the message it checks: on the assignment and its
    // localities that is the whole (100,000-endpoint) response again. CLA's policy covers every
    // field; LocalityLbEndpoints' all but its `lb_config` oneof, refused here. The
    // exhaustiveness test below keeps this equal to `check`.
    let mut out = Vec::with_capacity(la.endpoints.len());
    for (i, le) in la.endpoints.iter().enumerate() {
        let lp = path.field("endpoints").item(i, "");
        if le.lb_config.is_some() {
            return Err(lp.err("load_balancer_endpoints / leds_cluster_locality_config are not supported by Isthmus"));
        }
        let mut endpoints = Vec::with_capacity(le.lb_endpoints.len());
        for (j, lb) in le.lb_endpoints.iter().enumerate() {
            endpoints.push(lb_endpoint(lb, &lp.field("lb_endpoints").item(j, ""))?);
        }
        let locality = le
            .locality
            .as_ref()
            .map(|l| Locality { region: l.region.clone(), zone: l.zone.clone(), sub_zone: l.sub_zone.clone() })
            .unwrap_or_default();
        out.push(LocalityEndpoints {
            locality,
            priority: le.priority,
            weight: le.load_balancing_weight.map(|w| w.value),
            endpoints,
        });
    }
    let policy = match &la.policy {
        Some(p) => {
            let pp = path.field("policy");
            check(p, &CLA_POLICY, &pp)?;
            let opf = p.overprovisioning_factor.map(|v| v.value).unwrap_or(140);
            if opf == 0 {
                return Err(pp.err_at("overprovisioning_factor", "must be greater than 0"));
            }
            AssignmentPolicy { overprovisioning_factor: opf, weighted_priority_health: p.weighted_priority_health }
        }
        None => AssignmentPolicy::default(),
    };
    Ok(Assignment { endpoints: out, policy })
}

fn lb_endpoint(lb: &ep::LbEndpoint, path: &Path) -> Result<Endpoint, ConfigError> {
    use ep::lb_endpoint::HostIdentifier as H;
    // No reflective `check` per endpoint (it re-encodes each one; a 100,000-endpoint EDS paid
    // most of its time there): LB_ENDPOINT lists every field of LbEndpoint but `endpoint_name`,
    // and ENDPOINT all of Endpoint but `additional_addresses`, both refused here — `endpoint_policies_are_exhaustive`
    // fails if Envoy's protos gain a field, so the guarantee of `check` holds.
    let e = match &lb.host_identifier {
        Some(H::Endpoint(e)) => e,
        Some(H::EndpointName(_)) => return Err(path.err_at("endpoint_name", "named endpoints are not supported")),
        None => return Err(path.err_at("endpoint", "is required")),
    };
    let epath = path.field("endpoint");
    if !e.additional_addresses.is_empty() {
        return Err(epath.err_at("additional_addresses", "is not supported by Isthmus (in Endpoint)"));
    }
    let Some(addr) = &e.address else { return Err(epath.err_at("address", "is required")) };
    let address = match &addr.address {
        Some(core::address::Address::Pipe(p)) if !p.path.is_empty() => EndpointAddress::Pipe(p.path.clone().into()),
        Some(core::address::Address::EnvoyInternalAddress(ia)) => {
            use core::envoy_internal_address::AddressNameSpecifier as N;
            let Some(N::ServerListenerName(listener)) = &ia.address_name_specifier else {
                return Err(epath
                    .field("address")
                    .err_at("envoy_internal_address", "server_listener_name is required"));
            };
            // What `internal_upstream` passes through and the internal listener's original_dst
            // filter reads (Istio sets it on every waypoint endpoint).
            let original_dst = lb
                .metadata
                .as_ref()
                .and_then(|m| m.filter_metadata.get("envoy.filters.listener.original_dst"))
                .and_then(|s| s.fields.get("local"))
                .and_then(|v| match &v.kind {
                    Some(xds_client::protos::google::protobuf::value::Kind::StringValue(s)) => s.parse().ok(),
                    _ => None,
                })
                .or_else(|| ia.endpoint_id.parse().ok());
            EndpointAddress::Internal { listener: listener.clone(), endpoint_id: ia.endpoint_id.clone(), original_dst }
        }
        _ => {
            let (host, port) = host_port(addr, &epath.field("address"))?;
            match host.parse() {
                Ok(ip) => EndpointAddress::Socket(std::net::SocketAddr::new(ip, port)),
                Err(_) => EndpointAddress::Dns { host, port },
            }
        }
    };
    let health = match core::HealthStatus::try_from(lb.health_status) {
        Ok(core::HealthStatus::Unknown | core::HealthStatus::Healthy) => HealthStatus::Healthy,
        Ok(core::HealthStatus::Degraded) => HealthStatus::Degraded,
        _ => HealthStatus::Unhealthy,
    };
    let weight = lb.load_balancing_weight.map(|w| w.value).unwrap_or(1);
    if weight == 0 {
        return Err(path.err_at("load_balancing_weight", "must be at least 1"));
    }
    let labels = lb
        .metadata
        .as_ref()
        .and_then(|m| m.filter_metadata.get(LABELS_KEY))
        .map(|s| {
            s.fields
                .iter()
                .filter_map(|(k, v)| match &v.kind {
                    Some(xds_client::protos::google::protobuf::value::Kind::StringValue(x)) => {
                        Some((k.clone(), x.clone()))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let transport_match = std::sync::Arc::new(
        lb.metadata
            .as_ref()
            .and_then(|m| m.filter_metadata.get(TRANSPORT_MATCH_KEY))
            .map(string_fields)
            .unwrap_or_default(),
    );
    Ok(Endpoint { address, weight, health, hostname: e.hostname.clone(), labels, transport_match })
}

#[cfg(test)]
mod endpoint_policy_tests {
    #[test]
    fn endpoint_policies_are_exhaustive() {
        let pool = xds_client::json::pool().unwrap();
        for (policy, refused_by_hand) in [
            (&super::CLA, &[][..]),
            (&super::LOCALITY_ENDPOINTS, &["load_balancer_endpoints", "leds_cluster_locality_config"][..]),
            (&super::LB_ENDPOINT, &["endpoint_name"][..]),
            (&super::ENDPOINT, &["additional_addresses"][..]),
            (&super::super::common::SOCKET_ADDRESS, &["network_namespace_filepath", "named_port"][..]),
        ] {
            let d = pool.get_message_by_name(policy.message).unwrap();
            for f in d.fields() {
                let n = f.name();
                assert!(
                    policy.honoured.contains(&n) || policy.ignored.contains(&n) || refused_by_hand.contains(&n),
                    "{}.{n} is neither honoured, ignored nor refused: decide, then update lb_endpoint()",
                    policy.message
                );
            }
        }
    }
}
