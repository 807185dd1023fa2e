//! Node identity from Istio's environment, as pilot-agent derives it for Envoy: when the
//! bootstrap leaves `node.id` empty, `POD_NAME`, `POD_NAMESPACE` and `INSTANCE_IP` give
//! `sidecar~IP~POD.NS~NS.svc.cluster.local`, and `ISTIO_META_*` variables become node metadata.

use xds_client::protos::google::protobuf::{value::Kind, Struct, Value};

use super::Bootstrap;

/// The proxy type part of the node id.
const TYPE: &str = "sidecar";

/// Fills the node from the environment where the bootstrap did not. `get` reads one variable,
/// `all` lists them (both injectable for tests).
pub fn apply(b: &mut Bootstrap, get: impl Fn(&str) -> Option<String>, all: impl Iterator<Item = (String, String)>) {
    if b.node.id.is_empty() {
        if let (Some(pod), Some(ns)) = (get("POD_NAME"), get("POD_NAMESPACE")) {
            let ip = get("INSTANCE_IP").unwrap_or_else(|| "127.0.0.1".into());
            let domain = get("ISTIO_META_DNS_DOMAIN").unwrap_or_else(|| format!("{ns}.svc.cluster.local"));
            b.node.id = format!("{TYPE}~{ip}~{pod}.{ns}~{domain}");
            if b.node.cluster.is_empty() {
                b.node.cluster =
                    get("ISTIO_META_WORKLOAD_NAME").map_or_else(|| format!("{pod}.{ns}"), |w| format!("{w}.{ns}"));
            }
        }
    }
    let meta = b.node_proto.metadata.get_or_insert_with(Struct::default);
    for (k, v) in all {
        if let Some(key) = k.strip_prefix("ISTIO_META_") {
            meta.fields.entry(key.to_string()).or_insert(Value { kind: Some(Kind::StringValue(v)) });
        }
    }
    if meta.fields.is_empty() {
        b.node_proto.metadata = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_istio_node_id_and_metadata() {
        let env = [
            ("POD_NAME", "web-1"),
            ("POD_NAMESPACE", "shop"),
            ("INSTANCE_IP", "10.1.2.3"),
            ("ISTIO_META_CLUSTER_ID", "hz"),
        ];
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let mut b = Bootstrap::default();
        apply(&mut b, get, env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(b.node.id, "sidecar~10.1.2.3~web-1.shop~shop.svc.cluster.local");
        assert_eq!(b.node.cluster, "web-1.shop");
        let meta = b.node_proto.metadata.unwrap();
        assert_eq!(meta.fields["CLUSTER_ID"].kind, Some(Kind::StringValue("hz".into())));
    }

    #[test]
    fn a_configured_id_wins() {
        let mut b = Bootstrap::default();
        b.node.id = "mine".into();
        apply(&mut b, |_| Some("x".into()), std::iter::empty());
        assert_eq!(b.node.id, "mine");
        assert!(b.node_proto.metadata.is_none());
    }
}
