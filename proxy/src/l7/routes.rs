//! Route tables delivered by RDS, by name. Readers (every request on an RDS listener) load a
//! snapshot without locking; the xDS handler swaps in a new map on change.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::listener::RouteSource;
use crate::config::RouteConfig;

/// RDS route tables by `route_config_name`.
#[derive(Debug, Default)]
pub struct RouteRegistry {
    tables: ArcSwap<HashMap<String, Arc<RouteConfig>>>,
}

impl RouteRegistry {
    /// The table for `name`, if it has arrived.
    pub fn get(&self, name: &str) -> Option<Arc<RouteConfig>> {
        self.tables.load().get(name).cloned()
    }

    /// The table a connection manager routes with: its inline one, or the named RDS one.
    pub fn resolve(&self, source: &RouteSource) -> Option<Arc<RouteConfig>> {
        match source {
            RouteSource::Inline(rc) => Some(rc.clone()),
            RouteSource::Rds(name) => self.get(name),
        }
    }

    /// Adds or replaces a table.
    pub fn upsert(&self, name: &str, rc: Arc<RouteConfig>) {
        self.tables.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(name.to_string(), rc.clone());
            m
        });
    }

    /// Drops a table.
    pub fn remove(&self, name: &str) {
        self.tables.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(name);
            m
        });
    }

    /// Whether a table has arrived.
    pub fn contains(&self, name: &str) -> bool {
        self.tables.load().contains_key(name)
    }
}
