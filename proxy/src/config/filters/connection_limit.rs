//! `envoy.filters.network.connection_limit`: a bound on the connections open at once through
//! one filter chain's filter (Envoy's per-listener connection limit; the process-wide one is
//! the overload manager's `global_downstream_max_connections`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One filter instance: its limit and the connections it holds now (shared by every worker,
/// as Envoy's is; a config update starts a new count, as Envoy's new filter config does).
#[derive(Debug)]
pub struct ConnectionLimit {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `max_connections`.
    pub max: u64,
    /// `delay`: how long a refused connection is held before it is closed (none: at once).
    pub delay: Option<Duration>,
    /// `runtime_enabled` default (true).
    pub enabled: bool,
    /// Connections open through this filter now.
    pub active: AtomicU64,
    /// Its counters (`limited_connections`) and gauge (`active_connections`).
    pub stats: super::Stats,
}

impl ConnectionLimit {
    /// Takes a slot for a new connection, or `None` at the limit.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let taken = self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        taken.ok().map(|_| Slot(self.clone()))
    }
}

/// A connection's place under a [`ConnectionLimit`], given back when the connection ends.
#[derive(Debug)]
pub struct Slot(Arc<ConnectionLimit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = self.0.stats.gauge.get() {
            g.decrement(1.0);
        }
    }
}
