//! The cluster manager: every cluster by name, changed at run time by CDS and EDS. Readers
//! load a snapshot without locking; writers (config updates only) swap in a new map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{dns, ClusterRuntime, Ready};
use crate::config::{Assignment, Discovery};

/// Clusters by name, plus the EDS assignments received so far.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<ClusterRuntime>>>,
    /// Latest ClusterLoadAssignment endpoints by EDS service name, so a cluster created (or
    /// replaced) after its endpoints arrived starts with them.
    assignments: Mutex<HashMap<String, Arc<Assignment>>>,
    /// Stops DNS refresh loops on shutdown.
    stop: CancellationToken,
    /// The proxy's locality and labels.
    node: Arc<crate::locality::NodeView>,
    /// EDS service name → clusters asking for it.
    eds_index: ArcSwap<HashMap<String, Vec<Arc<ClusterRuntime>>>>,
    /// Serialises writers, so the index always follows the map it was built from.
    write: Mutex<()>,
}

impl ClusterManager {
    /// Builds run-time clusters for `clusters` (static bootstrap).
    pub fn new(clusters: &[Ready], node: crate::locality::NodeView) -> Self {
        let node = Arc::new(node);
        let map: HashMap<String, Arc<ClusterRuntime>> =
            clusters.iter().map(|c| (c.config.name.clone(), ClusterRuntime::new(c.clone(), node.clone()))).collect();
        let m = ClusterManager { clusters: ArcSwap::from_pointee(map), node, ..Default::default() };
        m.reindex();
        m.local_changed();
        m
    }

    /// Zone-aware routing reads the local cluster's hosts: rebuild the others when it changes.
    fn local_changed(&self) {
        let Some(local) = self.node.local_cluster.as_deref() else { return };
        for c in self.clusters.load().values().filter(|c| c.config.name != local) {
            c.rebuild();
        }
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

    /// Adds or replaces a cluster (CDS). A replaced EDS cluster keeps serving its current
    /// endpoints until new ones arrive, so an update never empties a cluster.
    pub fn upsert(&self, cluster: Ready) {
        self.upsert_many(vec![cluster]);
    }

    /// [`ClusterManager::upsert`] for a whole CDS response: the cluster map is copied once,
    /// not once per cluster (10,000 clusters would otherwise cost 10,000 map copies).
    pub fn upsert_many(&self, clusters: Vec<Ready>) {
        if clusters.is_empty() {
            return;
        }
        let news: Vec<Arc<ClusterRuntime>> = clusters.into_iter().map(|c| self.prepare(c)).collect();
        let old = self.swap(|m| {
            for n in &news {
                m.insert(n.config.name.clone(), n.clone());
            }
        });
        for n in &news {
            if let Some(o) = old.get(&n.config.name) {
                o.stop.cancel();
            }
        }
        if news.iter().any(|n| self.node.local_cluster.as_deref() == Some(n.config.name.as_str())) {
            self.local_changed();
        }
    }

    /// Builds the run-time cluster, carrying over endpoints as `upsert` promises.
    fn prepare(&self, ready: Ready) -> Arc<ClusterRuntime> {
        let config = ready.config.clone();
        let new = ClusterRuntime::new(ready, self.node.clone());
        if let Discovery::Eds { service_name } = &config.discovery {
            let known = self.assignments.lock().unwrap_or_else(|p| p.into_inner()).get(service_name).cloned();
            match (known, self.get(&config.name)) {
                (Some(eps), _) => new.set_endpoints(&eps),
                (None, Some(old)) => new.set_hosts(old.hosts().all.clone()),
                (None, None) => {}
            }
        }
        if matches!(config.discovery, Discovery::StrictDns | Discovery::LogicalDns) {
            let c = new.clone();
            let stop = self.stop.clone();
            tokio::spawn(async move {
                c.set_hosts(dns::resolve(&c).await);
                dns::refresh_loop(c, stop).await;
            });
        }
        new
    }

    /// Removes a cluster (CDS). Requests already holding it finish.
    pub fn remove(&self, name: &str) {
        self.remove_many(&[name.to_string()]);
    }

    /// Removes several clusters with one map copy.
    pub fn remove_many(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let old = self.swap(|m| {
            for n in names {
                m.remove(n);
            }
        });
        for n in names {
            if let Some(o) = old.get(n) {
                o.stop.cancel();
            }
        }
    }

    /// Applies a ClusterLoadAssignment (EDS) to every cluster that asks for `service_name`.
    pub fn set_assignment(&self, service_name: &str, assignment: Assignment) {
        let eps = Arc::new(assignment);
        self.assignments.lock().unwrap_or_else(|p| p.into_inner()).insert(service_name.to_string(), eps.clone());
        for c in self.by_service(service_name) {
            c.set_endpoints(&eps);
            if self.node.local_cluster.as_deref() == Some(c.config.name.as_str()) {
                self.local_changed();
            }
        }
    }

    /// Forgets an assignment (EDS removal or unsubscribe): its clusters lose their hosts.
    pub fn remove_assignment(&self, service_name: &str) {
        self.assignments.lock().unwrap_or_else(|p| p.into_inner()).remove(service_name);
        for c in self.by_service(service_name) {
            c.set_hosts(Vec::new());
        }
    }

    /// The EDS clusters asking for `service_name` (an index, so one assignment does not scan
    /// every cluster).
    fn by_service(&self, service_name: &str) -> Vec<Arc<ClusterRuntime>> {
        self.eds_index.load().get(service_name).cloned().unwrap_or_default()
    }

    /// Whether an assignment for `service_name` has arrived (cluster warming).
    pub fn has_assignment(&self, service_name: &str) -> bool {
        self.assignments.lock().unwrap_or_else(|p| p.into_inner()).contains_key(service_name)
    }

    /// Stops background work (DNS refresh).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Replaces the map and rebuilds the EDS index, one writer at a time.
    fn swap(&self, f: impl Fn(&mut HashMap<String, Arc<ClusterRuntime>>)) -> Arc<HashMap<String, Arc<ClusterRuntime>>> {
        let _one_writer = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.clusters.rcu(|m| {
            let mut m = HashMap::clone(m);
            f(&mut m);
            m
        });
        self.reindex();
        old
    }

    fn reindex(&self) {
        let mut idx: HashMap<String, Vec<Arc<ClusterRuntime>>> = HashMap::new();
        for c in self.clusters.load().values() {
            if let Discovery::Eds { service_name } = &c.config.discovery {
                idx.entry(service_name.clone()).or_default().push(c.clone());
            }
        }
        self.eds_index.store(Arc::new(idx));
    }
}
