//! Istio's standard metric labels (istio.io "Istio Standard Metrics"), so Kiali and the Istio
//! Grafana dashboards read Isthmus' series as istio-proxy's.
//!
//! Where each value comes from, as istio-proxy's stats filter does it without peer metadata
//! exchange (which Isthmus does not speak): the local workload from the node metadata pilot-agent
//! writes (`WORKLOAD_NAME`, `NAMESPACE`, `LABELS`, `CLUSTER_ID`, `SERVICE_ACCOUNT`); the peer's
//! principal and namespace from its SPIFFE certificate; the destination service from Istio's
//! cluster name (`outbound|9080||reviews.default.svc.cluster.local`). The side a listener
//! serves (`traffic_direction: INBOUND`) decides `reporter` (`destination`, else `source`) and
//! which end is "local". What cannot be known is `unknown`, Istio's own placeholder. Every
//! value is drawn from config or a certificate, never from a request header, so label sets stay
//! bounded.

use std::sync::{Arc, OnceLock};

const UNKNOWN: &str = "unknown";

/// The local workload, from node metadata.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `WORKLOAD_NAME` (else the node cluster's first label).
    pub name: Arc<str>,
    /// `NAMESPACE`.
    pub namespace: Arc<str>,
    /// `LABELS.app`.
    pub app: Arc<str>,
    /// `LABELS.version`.
    pub version: Arc<str>,
    /// `LABELS["service.istio.io/canonical-name"]` (else `app`, else the workload).
    pub canonical_service: Arc<str>,
    /// `LABELS["service.istio.io/canonical-revision"]` (else `version`, else `latest`).
    pub canonical_revision: Arc<str>,
    /// `CLUSTER_ID`.
    pub cluster: Arc<str>,
    /// `spiffe://<trust domain>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>`.
    pub principal: Arc<str>,
}

impl Default for Workload {
    fn default() -> Self {
        let u: Arc<str> = Arc::from(UNKNOWN);
        Workload {
            name: u.clone(),
            namespace: u.clone(),
            app: u.clone(),
            version: u.clone(),
            canonical_service: u.clone(),
            canonical_revision: Arc::from("latest"),
            cluster: u.clone(),
            principal: u,
        }
    }
}

impl Workload {
    /// From the node's metadata (a `google.protobuf.Struct` as JSON) and its cluster name.
    pub fn from_node(metadata: &serde_json::Value, node_cluster: &str) -> Workload {
        let s = |k: &str| metadata.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(Arc::<str>::from);
        let label = |k: &str| {
            metadata
                .pointer(&format!("/LABELS/{}", k.replace('/', "~1")))
                .and_then(|v| v.as_str())
                .map(Arc::<str>::from)
        };
        let d = Workload::default();
        let name = s("WORKLOAD_NAME")
            .or_else(|| {
                (!node_cluster.is_empty()).then(|| Arc::from(node_cluster.split('.').next().unwrap_or(node_cluster)))
            })
            .unwrap_or(d.name);
        let namespace = s("NAMESPACE").unwrap_or(d.namespace);
        let app = label("app").unwrap_or(d.app);
        let version = label("version").unwrap_or(d.version);
        let canonical_service = label("service.istio.io/canonical-name")
            .or_else(|| (&*app != UNKNOWN).then(|| app.clone()))
            .unwrap_or_else(|| name.clone());
        let canonical_revision = label("service.istio.io/canonical-revision")
            .or_else(|| (&*version != UNKNOWN).then(|| version.clone()))
            .unwrap_or(d.canonical_revision);
        let principal = match (s("SERVICE_ACCOUNT"), &*namespace) {
            (Some(sa), ns) if ns != UNKNOWN => {
                let td = s("TRUST_DOMAIN").unwrap_or_else(|| Arc::from("cluster.local"));
                Arc::from(format!("spiffe://{td}/ns/{ns}/sa/{sa}"))
            }
            _ => d.principal,
        };
        Workload {
            name,
            namespace,
            app,
            version,
            canonical_service,
            canonical_revision,
            cluster: s("CLUSTER_ID").unwrap_or(d.cluster),
            principal,
        }
    }
}

static LOCAL: OnceLock<Workload> = OnceLock::new();

/// Sets the local workload (once, at start-up).
pub fn set_local(w: Workload) {
    let _ = LOCAL.set(w);
}

/// The local workload (`unknown`s before start-up).
pub fn local() -> &'static Workload {
    LOCAL.get_or_init(Workload::default)
}

/// `(host, name, namespace)` of the service behind an Istio cluster name
/// (`outbound|9080|v1|reviews.default.svc.cluster.local`); other names are their own service
/// name (`PassthroughCluster`, a static cluster).
pub fn service_of(cluster: &str) -> (&str, &str, &str) {
    let mut parts = cluster.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound" | "inbound" | "inbound-vip"), Some(_), Some(_), Some(host)) if !host.is_empty() => {
            let mut labels = host.split('.');
            let name = labels.next().unwrap_or(host);
            let ns = labels.next().unwrap_or(UNKNOWN);
            (host, name, ns)
        }
        _ => (cluster, cluster, UNKNOWN),
    }
}

/// The namespace in a SPIFFE id (`spiffe://td/ns/<ns>/sa/<sa>`).
pub fn namespace_of(principal: &str) -> &str {
    principal.split("/ns/").nth(1).and_then(|r| r.split('/').next()).unwrap_or(UNKNOWN)
}

/// What varies per connection or request.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The listener serves inbound traffic (`reporter="destination"`).
    pub inbound: bool,
    /// The downstream's SPIFFE id when it presented a certificate (inbound mTLS).
    pub principal: Option<&'a str>,
    /// The cluster the request or connection went to.
    pub cluster: &'a str,
}

/// The standard labels (without the per-request HTTP ones).
pub fn labels(p: &Peer<'_>) -> Vec<(&'static str, String)> {
    let w = local();
    let (host, name, ns) = service_of(p.cluster);
    let u = || UNKNOWN.to_string();
    let mut v = Vec::with_capacity(24);
    if p.inbound {
        let principal = p.principal.unwrap_or(UNKNOWN);
        v.push(("reporter", "destination".to_string()));
        v.push(("source_workload", u()));
        v.push(("source_workload_namespace", namespace_of(principal).to_string()));
        v.push(("source_principal", principal.to_string()));
        v.push(("source_app", u()));
        v.push(("source_version", u()));
        v.push(("source_canonical_service", u()));
        v.push(("source_canonical_revision", u()));
        v.push(("source_cluster", u()));
        v.push(("destination_workload", w.name.to_string()));
        v.push(("destination_workload_namespace", w.namespace.to_string()));
        v.push(("destination_principal", w.principal.to_string()));
        v.push(("destination_app", w.app.to_string()));
        v.push(("destination_version", w.version.to_string()));
        v.push(("destination_canonical_service", w.canonical_service.to_string()));
        v.push(("destination_canonical_revision", w.canonical_revision.to_string()));
        v.push(("destination_cluster", w.cluster.to_string()));
        v.push(("connection_security_policy", if p.principal.is_some() { "mutual_tls" } else { "none" }.to_string()));
    } else {
        v.push(("reporter", "source".to_string()));
        v.push(("source_workload", w.name.to_string()));
        v.push(("source_workload_namespace", w.namespace.to_string()));
        v.push(("source_principal", w.principal.to_string()));
        v.push(("source_app", w.app.to_string()));
        v.push(("source_version", w.version.to_string()));
        v.push(("source_canonical_service", w.canonical_service.to_string()));
        v.push(("source_canonical_revision", w.canonical_revision.to_string()));
        v.push(("source_cluster", w.cluster.to_string()));
        for k in [
            "destination_workload",
            "destination_principal",
            "destination_app",
            "destination_version",
            "destination_canonical_revision",
            "destination_cluster",
        ] {
            v.push((k, u()));
        }
        v.push(("destination_workload_namespace", ns.to_string()));
        v.push(("destination_canonical_service", if ns == UNKNOWN { u() } else { name.to_string() }));
        v.push(("connection_security_policy", u()));
    }
    v.push(("destination_service", host.to_string()));
    v.push(("destination_service_name", name.to_string()));
    v.push((
        "destination_service_namespace",
        if ns == UNKNOWN && p.inbound { w.namespace.to_string() } else { ns.to_string() },
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_namespaces() {
        assert_eq!(
            service_of("outbound|9080|v1|reviews.default.svc.cluster.local"),
            ("reviews.default.svc.cluster.local", "reviews", "default")
        );
        assert_eq!(service_of("PassthroughCluster"), ("PassthroughCluster", "PassthroughCluster", "unknown"));
        assert_eq!(service_of("inbound|8080||"), ("inbound|8080||", "inbound|8080||", "unknown"));
        assert_eq!(namespace_of("spiffe://cluster.local/ns/shop/sa/web"), "shop");
        assert_eq!(namespace_of("unknown"), "unknown");
    }

    #[test]
    fn workload_from_pilot_agent_metadata() {
        let md = serde_json::json!({"WORKLOAD_NAME": "hello-openshift", "NAMESPACE": "vanilla-playground",
            "SERVICE_ACCOUNT": "default", "CLUSTER_ID": "Kubernetes",
            "LABELS": {"app": "hello-openshift", "service.istio.io/canonical-revision": "latest"}});
        let w = Workload::from_node(&md, "hello-openshift.vanilla-playground");
        assert_eq!(&*w.name, "hello-openshift");
        assert_eq!(&*w.canonical_service, "hello-openshift");
        assert_eq!(&*w.principal, "spiffe://cluster.local/ns/vanilla-playground/sa/default");
        assert_eq!(&*w.version, "unknown");
        let w = Workload::from_node(&serde_json::json!({}), "web.shop");
        assert_eq!(&*w.name, "web");
        assert_eq!(&*w.principal, "unknown");
    }
}
