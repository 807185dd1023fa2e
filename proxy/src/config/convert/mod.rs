//! Envoy v3 protos → the validated model. Total and pure: the bootstrap file and xDS both come
//! through here, so a resource is accepted or refused (with its field path) the same way
//! whatever its source.

mod cluster;
mod common;
pub mod fields;
mod http;
mod listener;
mod route;
mod tcp;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;

use xds_client::protos::envoy::config::bootstrap::v3 as proto;

pub use self::cluster::{cluster, load_assignment};
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
    honoured: &["node", "admin", "static_resources", "dynamic_resources"],
    ignored: &[
        "layered_runtime",
        "stats_config",
        "stats_sinks",
        "stats_flush_interval",
        "overload_manager",
        "cluster_manager",
        "watchdog",
        "watchdogs",
        "enable_dispatcher_stats",
        "use_tcp_for_dns_lookups",
        "typed_dns_resolver_config",
    ],
};

pub(super) const NODE: FieldPolicy = FieldPolicy {
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
    honoured: &["listeners", "clusters"],
    ignored: &[],
};

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
    if let Some(s) = &b.static_resources {
        let sp = root.field("static_resources");
        check(s, &STATIC, &sp)?;
        let mut res = Resources::default();
        for (i, c) in s.clusters.iter().enumerate() {
            let cp = sp.field("clusters").item(i, &c.name);
            let model = cluster(c, &cp)?;
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
    if let Some(d) = &b.dynamic_resources {
        out.dynamic_resources = Some(serde_json::json!({
            "ads": d.ads_config.is_some(),
            "lds": d.lds_config.is_some(),
            "cds": d.cds_config.is_some(),
        }));
    }
    Ok(out)
}

/// Every field policy, in the order the README's table lists them.
pub fn policies() -> Vec<&'static FieldPolicy> {
    vec![
        &BOOTSTRAP,
        &NODE,
        &ADMIN,
        &STATIC,
        &listener::LISTENER,
        &listener::FILTER_CHAIN,
        &listener::CHAIN_MATCH,
        &tcp::TCP_PROXY,
        &http::HCM,
        &route::ROUTE_CONFIG,
        &route::VIRTUAL_HOST,
        &route::ROUTE,
        &route::ROUTE_MATCH,
        &route::ROUTE_ACTION,
        &route::RETRY_POLICY,
        &route::CLUSTER_WEIGHT,
        &route::REDIRECT,
        &cluster::CLUSTER,
        &cluster::COMMON_LB,
        &cluster::THRESHOLDS,
        &cluster::HTTP_OPTIONS,
        &cluster::LOCALITY_ENDPOINTS,
        &cluster::LB_ENDPOINT,
        &cluster::ENDPOINT,
        &common::SOCKET_ADDRESS,
        &common::STRING_MATCHER,
        &common::HEADER_VALUE_OPTION,
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
        out.push_str(&format!("| `{}` | {} | {} |\n", p.message, list(p.honoured), list(p.ignored)));
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
