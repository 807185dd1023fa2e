//! The cluster manager: every cluster by name, swapped whole when config changes.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{dns, ClusterRuntime};
use crate::config::{Cluster, Discovery};

/// Clusters by name. Readers load a snapshot without locking.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<ClusterRuntime>>>,
}

impl ClusterManager {
    /// Builds run-time clusters for `configs`.
    pub fn new(configs: &[Arc<Cluster>]) -> Self {
        let map = configs.iter().map(|c| (c.name.clone(), Arc::new(ClusterRuntime::new(c.clone())))).collect();
        ClusterManager { clusters: ArcSwap::from_pointee(map) }
    }

    /// A cluster by name.
    pub fn get(&self, name: &str) -> Option<Arc<ClusterRuntime>> {
        self.clusters.load().get(name).cloned()
    }

    /// Every cluster (admin).
    pub fn all(&self) -> Vec<Arc<ClusterRuntime>> {
        let mut v: Vec<_> = self.clusters.load().values().cloned().collect();
        v.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        v
    }

    /// Resolves DNS clusters once (the proxy is not ready before) and starts their refresh
    /// loops, which stop with `stop`.
    pub async fn resolve_all(&self, stop: &CancellationToken) {
        for c in self.clusters.load().values() {
            if matches!(c.config.discovery, Discovery::StrictDns | Discovery::LogicalDns) {
                c.set_hosts(dns::resolve(c).await);
                tokio::spawn(dns::refresh_loop(c.clone(), stop.clone()));
            }
        }
    }
}
