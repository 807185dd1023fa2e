//! `TcpProxy` → model.

use xds_client::protos::envoy::extensions::filters::network::tcp_proxy::v3 as proto;

use super::common::timeout;
use super::fields::{check, FieldPolicy};
use super::Resources;
use crate::config::cluster::{ClusterTarget, WeightedCluster};
use crate::config::error::{ConfigError, Path};
use crate::config::listener::TcpProxy;

pub(super) const TCP_PROXY: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    honoured: &["stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "access_log"],
    ignored: &["max_connect_attempts", "metadata_match"],
};

/// Converts a tcp_proxy filter config.
pub fn tcp_proxy(t: &proto::TcpProxy, path: &Path, res: &Resources) -> Result<TcpProxy, ConfigError> {
    use proto::tcp_proxy::ClusterSpecifier as S;
    check(t, &TCP_PROXY, path)?;
    let target = match &t.cluster_specifier {
        Some(S::Cluster(c)) => {
            res.require_cluster(c, &path.field("cluster"))?;
            ClusterTarget::Single(c.clone())
        }
        Some(S::WeightedClusters(w)) => {
            let wp = path.field("weighted_clusters").field("clusters");
            let mut out = Vec::new();
            for (i, c) in w.clusters.iter().enumerate() {
                res.require_cluster(&c.name, &wp.item(i, &c.name))?;
                out.push(WeightedCluster { name: c.name.clone(), weight: c.weight });
            }
            if out.iter().all(|c| c.weight == 0) {
                return Err(wp.err("at least one cluster needs a weight above zero"));
            }
            ClusterTarget::Weighted(out)
        }
        _ => return Err(path.err("cluster or weighted_clusters is required")),
    };
    Ok(TcpProxy {
        stat_prefix: t.stat_prefix.clone(),
        target,
        idle_timeout: timeout(
            t.idle_timeout.as_ref(),
            Some(std::time::Duration::from_secs(3600)),
            &path.field("idle_timeout"),
        )?,
        access_log: super::access_log::access_logs(&t.access_log, &path.field("access_log"))?,
        sni_cluster: false,
    })
}
