//! The proxy's own locality, and Istio's failover priorities computed on the proxy side.
//!
//! istiod computes per-proxy EDS priorities from the proxy's locality and the
//! DestinationRule's `localityLbSetting`. A plain control plane sends every endpoint at
//! priority 0; it can attach the same setting to a cluster under
//! `metadata.filter_metadata["isthmus.io/locality_lb"]`, and Isthmus then does istiod's
//! computation itself (spec lb-failover §7.4–7.6) against its node locality.

pub mod failover;
pub mod setting;

use std::collections::HashMap;

use crate::config::bootstrap::Locality;

/// Who the proxy is, for locality decisions: its locality and labels.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// The node locality (bootstrap, `--service-zone`, or derived from labels).
    pub locality: Locality,
    /// Node labels (Istio node metadata `LABELS`).
    pub labels: HashMap<String, String>,
    /// `cluster_manager.local_cluster_name`, enabling zone-aware routing.
    pub local_cluster: Option<String>,
    /// Healthy hosts per locality of the local cluster, published by that cluster.
    pub local_hosts: std::sync::Arc<arc_swap::ArcSwap<Vec<(Locality, u64)>>>,
}

impl NodeView {
    /// From the bootstrap: `node.locality`, else the topology labels in `LABELS` metadata.
    pub fn from_bootstrap(b: &crate::config::Bootstrap) -> Self {
        use xds_client::protos::google::protobuf::value::Kind;
        let labels: HashMap<String, String> = b
            .node_proto
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("LABELS"))
            .and_then(|v| match &v.kind {
                Some(Kind::StructValue(s)) => Some(s),
                _ => None,
            })
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|(k, v)| match &v.kind {
                        Some(Kind::StringValue(x)) => Some((k.clone(), x.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let locality = if b.node.locality.region.is_empty() {
            from_labels(&labels).unwrap_or_else(|| b.node.locality.clone())
        } else {
            b.node.locality.clone()
        };
        NodeView { locality, labels, local_cluster: b.local_cluster.clone(), local_hosts: Default::default() }
    }

    /// The endpoints as this proxy should see them: proxy-side failover priorities applied
    /// when the cluster carries a `localityLbSetting`.
    ///
    /// As istiod: `distribute` always applies; failover priorities only when the cluster has
    /// `outlier_detection` (without it nothing would ever mark a host unhealthy, so istiod
    /// keeps every endpoint at priority 0 — spec §7.3, scenario 19).
    pub fn view(
        &self,
        cluster: &crate::config::Cluster,
        eps: &[crate::config::LocalityEndpoints],
    ) -> Vec<crate::config::LocalityEndpoints> {
        match &cluster.locality_lb {
            Some(s) if !s.distribute.is_empty() || cluster.outlier.is_some() => {
                failover::apply(s, &self.locality, &self.labels, eps)
            }
            _ => eps.to_vec(),
        }
    }
}

/// Kubernetes/Istio topology label keys, current and deprecated.
pub const REGION: &str = "topology.kubernetes.io/region";
/// Zone label.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Subzone label.
pub const SUBZONE: &str = "topology.istio.io/subzone";
/// Deprecated region label.
pub const OLD_REGION: &str = "failure-domain.beta.kubernetes.io/region";
/// Deprecated zone label.
pub const OLD_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
/// Pod label carrying `region/zone/subzone` (or dotted).
pub const LOCALITY_LABEL: &str = "topology.istio.io/locality";

/// Locality from labels, as istiod derives a pod's: the locality label first, then the
/// region/zone/subzone labels (current, then deprecated).
pub fn from_labels(labels: &HashMap<String, String>) -> Option<Locality> {
    if let Some(v) = labels.get(LOCALITY_LABEL).or_else(|| labels.get("istio-locality")) {
        let v = if v.contains('/') { v.clone() } else { v.replace('.', "/") };
        let mut parts = v.splitn(3, '/').map(str::to_string);
        return Some(Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            sub_zone: parts.next().unwrap_or_default(),
        });
    }
    let get = |a: &str, b: &str| labels.get(a).or_else(|| labels.get(b)).cloned();
    let region = get(REGION, OLD_REGION)?;
    Some(Locality {
        region,
        zone: get(ZONE, OLD_ZONE).unwrap_or_default(),
        sub_zone: labels.get(SUBZONE).cloned().unwrap_or_default(),
    })
}

/// The topology labels of a locality (what `failoverPriority` compares for them).
pub fn topology_labels(l: &Locality) -> HashMap<String, String> {
    [(REGION, &l.region), (ZONE, &l.zone), (SUBZONE, &l.sub_zone)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_from_labels() {
        let m = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let l = from_labels(&m(&[(LOCALITY_LABEL, "us-east.us-east-1a.rack1")])).unwrap();
        assert_eq!((l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()), ("us-east", "us-east-1a", "rack1"));
        let l = from_labels(&m(&[(OLD_REGION, "eu"), (OLD_ZONE, "eu-1"), (SUBZONE, "s")])).unwrap();
        assert_eq!((l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()), ("eu", "eu-1", "s"));
        assert!(from_labels(&m(&[])).is_none());
    }
}
