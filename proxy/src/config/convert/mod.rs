//! Envoy v3 protos → the validated model. Total and pure: the bootstrap file and xDS both come
//! through here, so a resource is accepted or refused (with its field path) the same way
//! whatever its source.

mod access_log;
mod chain_matcher;
mod cluster;
mod common;
mod endpoint;
pub mod fields;
mod filters;
mod health;
mod http;
mod listener;
mod outlier;
mod overload;
mod route;
mod tcp;
#[cfg(test)]
mod tests;
pub mod tls;
mod xds_tls;

use std::collections::HashSet;
use std::sync::Arc;

use xds_client::protos::envoy::config::bootstrap::v3 as proto;

pub use self::cluster::cluster;
pub use self::common::struct_to_json;
pub use self::endpoint::load_assignment;
use self::fields::{check, FieldPolicy};
pub use self::listener::listener;
pub use self::route::{retry_policy, route_config};
use super::bootstrap::{Admin, Bootstrap, Locality, Node};
use super::error::{ConfigError, Path};

/// What conversion may refer to: the cluster names known when a listener or route is
/// converted, so a typo in a cluster name fails at load instead of 503s at run time.
#[derive(Debug, Default)]
pub struct Resources {
    clusters: HashSet<String>,
    /// With xDS, clusters may arrive after the routes that name them: then references are
    /// not checked here.
    pub lenient: bool,
}

impl Resources {
    /// For xDS: clusters may arrive after the routes and listeners that name them.
    pub fn lenient() -> Self {
        Resources { clusters: HashSet::new(), lenient: true }
    }

    /// Checks that `name` is a known cluster.
    pub fn require_cluster(&self, name: &str, path: &Path) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(path.err("a cluster name is required"));
        }
        if self.lenient || self.clusters.contains(name) {
            Ok(())
        } else {
            Err(path.err(format!("unknown cluster \"{name}\"")))
        }
    }
}

pub(super) const BOOTSTRAP: FieldPolicy = FieldPolicy {
    message: "envoy.config.bootstrap.v3.Bootstrap",
    honoured: &[
        "node",
        "admin",
        "static_resources",
        "dynamic_resources",
        "cluster_manager",
        "tracing",
        "overload_manager",
    ],
    ignored: &[
        "layered_runtime",
        "stats_config",
        "stats_sinks",
        "stats_flush_interval",
        "watchdog",
        "watchdogs",
        "enable_dispatcher_stats",
        "use_tcp_for_dns_lookups",
        "bootstrap_extensions",
        "typed_dns_resolver_config",
        // The format of the proxy's own log lines; Isthmus' are tracing's (as `--log-format`).
        "application_log_config",
        // Lazy stats initialisation in Envoy; Isthmus registers its metrics once at start.
        "deferred_stat_options",
    ],
};

pub(super) const CLUSTER_MANAGER: FieldPolicy = FieldPolicy {
    message: "envoy.config.bootstrap.v3.ClusterManager",
    honoured: &["local_cluster_name"],
    ignored: &["outlier_detection", "enable_deferred_cluster_creation"],
};

const NODE: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.Node",
    honoured: &["id", "cluster", "locality"],
    ignored: &[
        "metadata",
        "user_agent_name",
        "user_agent_version",
        "user_agent_build_version",
        "extensions",
        "client_features",
        "dynamic_parameters",
    ],
};

pub(super) const ADMIN: FieldPolicy = FieldPolicy {
    message: "envoy.config.bootstrap.v3.Admin",
    honoured: &["address"],
    ignored: &["access_log", "access_log_path", "profile_path", "socket_options", "ignore_global_conn_limit"],
};

pub(super) const STATIC: FieldPolicy = FieldPolicy {
    message: "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
    honoured: &["listeners", "clusters", "secrets"],
    ignored: &[],
};

const DYNAMIC: FieldPolicy = FieldPolicy {
    message: "envoy.config.bootstrap.v3.Bootstrap.DynamicResources",
    honoured: &["ads_config", "lds_config", "cds_config"],
    ignored: &[],
};

const API_CONFIG_SOURCE: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.ApiConfigSource",
    honoured: &["api_type", "grpc_services", "transport_api_version"],
    ignored: &["set_node_on_first_message_only", "refresh_delay", "request_timeout", "rate_limit_settings"],
};

const ENVOY_GRPC: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.GrpcService.EnvoyGrpc",
    honoured: &["cluster_name", "max_receive_message_length"],
    // :authority names the endpoint address (Envoy sends the cluster name; control planes
    // route on neither); reconnects follow the client's own back-off (500 ms to 30 s, Envoy's
    // defaults); Isthmus sends no x-envoy headers on the stream.
    ignored: &["authority", "retry_policy", "skip_envoy_headers"],
};

fn dynamic(d: &proto::bootstrap::DynamicResources, path: &Path) -> Result<super::bootstrap::Dynamic, ConfigError> {
    use xds_client::protos::envoy::config::core::v3::{
        api_config_source::ApiType, config_source::ConfigSourceSpecifier as S, grpc_service::TargetSpecifier as T,
    };
    check(d, &DYNAMIC, path)?;
    let ap = path.field("ads_config");
    let Some(ads) = &d.ads_config else { return Err(ap.err("is required (only ADS is supported)")) };
    check(ads, &API_CONFIG_SOURCE, &ap)?;
    let delta = match ApiType::try_from(ads.api_type) {
        Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => false,
        Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => true,
        _ => return Err(ap.err_at("api_type", "only GRPC and DELTA_GRPC are supported")),
    };
    let (cluster, max_message_size) = match ads.grpc_services.first().and_then(|g| g.target_specifier.as_ref()) {
        Some(T::EnvoyGrpc(e)) if !e.cluster_name.is_empty() => {
            let ep = ap.field("grpc_services").item(0, "").field("envoy_grpc");
            check(e, &ENVOY_GRPC, &ep)?;
            // 0 means "no limit" in Envoy; Isthmus keeps its bound then too.
            let max =
                e.max_receive_message_length.map(|v| v.value).filter(|v| *v > 0).and_then(|v| usize::try_from(v).ok());
            (e.cluster_name.clone(), max)
        }
        Some(T::GoogleGrpc(_)) => {
            return Err(ap.err_at("grpc_services", "google_grpc is not supported; use envoy_grpc"))
        }
        _ => return Err(ap.err_at("grpc_services", "an envoy_grpc cluster_name is required")),
    };
    // LDS/CDS `initial_fetch_timeout` is accepted and has no effect: start-up waits for the
    // first LDS and CDS responses, which is what Istio's `0s` asks for. RDS/EDS names get
    // Envoy's default 15 s does-not-exist timer.
    let source = |cs: &Option<xds_client::protos::envoy::config::core::v3::ConfigSource>,
                  f: &str|
     -> Result<bool, ConfigError> {
        let Some(cs) = cs else { return Ok(false) };
        if !matches!(cs.config_source_specifier, Some(S::Ads(_))) {
            return Err(path.err_at(f, "only {ads: {}} config sources are supported"));
        }
        Ok(true)
    };
    let lds = source(&d.lds_config, "lds_config")?;
    let cds = source(&d.cds_config, "cds_config")?;
    Ok(super::bootstrap::Dynamic {
        delta,
        cluster,
        lds,
        cds,
        initial_fetch_timeout: Some(std::time::Duration::from_secs(15)),
        tls: None,
        max_message_size,
    })
}

/// Converts a whole bootstrap. `source` is the document as loaded (kept for config dump).
pub fn bootstrap(b: &proto::Bootstrap, source: serde_json::Value) -> Result<Bootstrap, ConfigError> {
    let root = Path::root("");
    check(b, &BOOTSTRAP, &root)?;
    let node = match &b.node {
        Some(n) => {
            check(n, &NODE, &root.field("node"))?;
            Node {
                id: n.id.clone(),
                cluster: n.cluster.clone(),
                locality: n
                    .locality
                    .as_ref()
                    .map(|l| Locality { region: l.region.clone(), zone: l.zone.clone(), sub_zone: l.sub_zone.clone() })
                    .unwrap_or_default(),
            }
        }
        None => Node::default(),
    };
    let admin = match &b.admin {
        Some(a) => {
            let p = root.field("admin");
            check(a, &ADMIN, &p)?;
            match &a.address {
                Some(addr) => Some(Admin { address: common::socket_addr(addr, &p.field("address"))? }),
                None => None,
            }
        }
        None => None,
    };
    let mut out = Bootstrap { node, admin, source, ..Bootstrap::default() };
    let mut dynamic_cfg = match &b.dynamic_resources {
        Some(d) => Some(dynamic(d, &root.field("dynamic_resources"))?),
        None => None,
    };
    if let Some(s) = &b.static_resources {
        let sp = root.field("static_resources");
        check(s, &STATIC, &sp)?;
        let mut res = Resources::default();
        for (i, sec) in s.secrets.iter().enumerate() {
            let p = sp.field("secrets").item(i, &sec.name);
            let spec = tls::secret(sec, &p)?;
            if spec.name.is_empty() {
                return Err(p.err_at("name", "is required"));
            }
            if out.secrets.iter().any(|s| s.name == spec.name) {
                return Err(p.err_at("name", "duplicate secret name"));
            }
            out.secrets.push(spec);
        }
        for (i, c) in s.clusters.iter().enumerate() {
            let cp = sp.field("clusters").item(i, &c.name);
            let model = match (&mut dynamic_cfg, &c.transport_socket) {
                (Some(d), Some(ts)) if d.cluster == c.name => {
                    let plain =
                        xds_client::protos::envoy::config::cluster::v3::Cluster { transport_socket: None, ..c.clone() };
                    let model = cluster(&plain, &cp)?;
                    let host = model
                        .endpoints
                        .iter()
                        .flat_map(|l| l.endpoints.iter())
                        .next()
                        .map(|e| match &e.address {
                            crate::config::cluster::EndpointAddress::Socket(a) => a.ip().to_string(),
                            crate::config::cluster::EndpointAddress::Dns { host, .. } => host.clone(),
                            crate::config::cluster::EndpointAddress::Pipe(_)
                            | crate::config::cluster::EndpointAddress::Internal { .. } => "localhost".to_string(),
                        })
                        .unwrap_or_default();
                    d.tls = Some(xds_tls::xds_tls(ts, &host, &cp.field("transport_socket"))?);
                    model
                }
                _ => cluster(c, &cp)?,
            };
            if !res.clusters.insert(model.name.clone()) {
                return Err(cp.err_at("name", "duplicate cluster name"));
            }
            out.clusters.push(Arc::new(model));
        }
        let mut names = HashSet::new();
        for (i, l) in s.listeners.iter().enumerate() {
            let lp = sp.field("listeners").item(i, &l.name);
            let model = listener(l, &lp, &res)?;
            if !names.insert(model.name.clone()) {
                return Err(lp.err_at("name", "duplicate listener name"));
            }
            out.listeners.push(Arc::new(model));
        }
    }
    if let Some(dynamic) = dynamic_cfg {
        if !out.clusters.iter().any(|c| c.name == dynamic.cluster) {
            return Err(root
                .field("dynamic_resources")
                .field("ads_config")
                .err(format!("grpc_services names cluster \"{}\", which is not a static cluster", dynamic.cluster)));
        }
        out.dynamic = Some(dynamic);
    }
    #[allow(deprecated)] // Deprecated in favour of per-HCM providers; istiod still sends it.
    let bootstrap_tracer = b.tracing.as_ref().and_then(|t| t.http.as_ref());
    if let Some(t) = bootstrap_tracer {
        // Envoy's fallback tracer: HCMs whose `tracing` names no provider use it (Istio's
        // bootstrap carries the mesh's Zipkin here).
        out.tracer = Some(Arc::new(http::tracer(t, &root.field("tracing").field("http"))?));
    }
    if let Some(o) = &b.overload_manager {
        out.overload = overload::overload(o, &root.field("overload_manager"))?;
    }
    out.node_proto = b.node.clone().unwrap_or_default();
    if let Some(cm) = &b.cluster_manager {
        let p = root.field("cluster_manager");
        check(cm, &CLUSTER_MANAGER, &p)?;
        if !cm.local_cluster_name.is_empty() {
            if out.dynamic.is_none() && !out.clusters.iter().any(|c| c.name == cm.local_cluster_name) {
                return Err(
                    p.err_at("local_cluster_name", format!("\"{}\" is not a static cluster", cm.local_cluster_name))
                );
            }
            out.local_cluster = Some(cm.local_cluster_name.clone());
        }
    }
    Ok(out)
}

/// Every field policy, in the order the README's table lists them.
pub fn policies() -> Vec<&'static FieldPolicy> {
    vec![
        &BOOTSTRAP,
        &NODE,
        &CLUSTER_MANAGER,
        &ADMIN,
        &STATIC,
        &DYNAMIC,
        &API_CONFIG_SOURCE,
        &ENVOY_GRPC,
        &overload::OVERLOAD,
        &overload::OVERLOAD_ACTION,
        &listener::LISTENER,
        &listener::FILTER_CHAIN,
        &listener::CHAIN_MATCH,
        &tcp::TCP_PROXY,
        &http::HCM,
        &http::INTERNAL_ADDRESS,
        &access_log::ACCESS_LOG,
        &access_log::FILE,
        &access_log::FORMAT,
        &http::DOWNSTREAM_COMMON_OPTIONS,
        &http::DOWNSTREAM_HTTP2,
        &http::TRACING,
        &http::ZIPKIN,
        &http::OTEL,
        &http::OTEL_GRPC,
        &http::CUSTOM_TAG,
        &route::ROUTE_CONFIG,
        &route::VIRTUAL_HOST,
        &route::ROUTE,
        &route::DECORATOR,
        &route::ROUTE_MATCH,
        &route::ROUTE_ACTION,
        &route::MAX_STREAM_DURATION,
        &route::RETRY_POLICY,
        &route::CLUSTER_WEIGHT,
        &route::REDIRECT,
        &cluster::CLUSTER,
        &cluster::COMMON_LB,
        &outlier::OUTLIER,
        &health::HEALTH_CHECK,
        &health::HTTP_HC,
        &health::TCP_HC,
        &endpoint::CLA,
        &endpoint::CLA_POLICY,
        &cluster::THRESHOLDS,
        &cluster::HTTP_OPTIONS,
        &endpoint::LOCALITY_ENDPOINTS,
        &endpoint::LB_ENDPOINT,
        &endpoint::ENDPOINT,
        &cluster::SOCKET_MATCH,
        &cluster::UPSTREAM_CONNECTION,
        &cluster::TCP_KEEPALIVE,
        &cluster::HTTP2_OPTIONS,
        &cluster::KEEPALIVE,
        &tls::UPSTREAM,
        &tls::DOWNSTREAM,
        &tls::COMMON,
        &tls::PARAMS,
        &tls::CERTIFICATE,
        &tls::VALIDATION,
        &tls::SAN_MATCHER,
        &tls::SDS_CONFIG,
        &tls::SECRET,
        &common::SOCKET_ADDRESS,
        &common::STRING_MATCHER,
        &common::HEADER_VALUE_OPTION,
        &filters::fault::FAULT,
        &filters::fault::FAULT_DELAY,
        &filters::fault::FAULT_ABORT,
        &filters::cors::CORS_POLICY,
        &filters::rate_limit::HTTP_LOCAL_RATE_LIMIT,
        &filters::rate_limit::NETWORK_LOCAL_RATE_LIMIT,
        &filters::connection_limit::CONNECTION_LIMIT,
        &filters::rate_limit::TOKEN_BUCKET,
        &filters::rbac::HTTP_RBAC,
        &filters::rbac::NETWORK_RBAC,
        &filters::rbac::RBAC,
        &filters::rbac::POLICY,
        &filters::rbac::AUTHENTICATED,
    ]
}

/// The README's field table, generated from the policies so the two cannot drift.
pub fn fields_table() -> String {
    let mut out = String::from("| message | honoured | ignored on purpose |\n|---|---|---|\n");
    for p in policies() {
        let list = |v: &[&str]| {
            if v.is_empty() {
                "—".to_string()
            } else {
                v.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            }
        };
        // A message converted in two places gets a row for each, named by where it sits.
        let place = if std::ptr::eq(p, &http::DOWNSTREAM_HTTP2) || std::ptr::eq(p, &http::DOWNSTREAM_COMMON_OPTIONS) {
            " (in an HCM)"
        } else if std::ptr::eq(p, &cluster::HTTP2_OPTIONS) {
            " (in a cluster)"
        } else {
            ""
        };
        out.push_str(&format!("| `{}`{place} | {} | {} |\n", p.message, list(p.honoured), list(p.ignored)));
    }
    out
}

#[cfg(test)]
mod policy_tests {
    #[test]
    fn every_policy_names_real_fields() {
        let pool = xds_client::json::pool().unwrap();
        for p in super::policies() {
            let desc = pool.get_message_by_name(p.message).unwrap_or_else(|| panic!("{} unknown", p.message));
            for f in p.honoured.iter().chain(p.ignored) {
                assert!(desc.get_field_by_name(f).is_some(), "{}.{f} is not a field", p.message);
            }
        }
    }

    #[test]
    fn readme_field_table_is_current() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = super::fields_table();
        assert!(readme.contains(&table), "README.md's field table is stale; replace it with:\n{table}");
    }
}
