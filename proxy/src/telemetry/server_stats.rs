//! The handful of Envoy-named stats that tools outside the proxy read from `/stats` by name:
//! pilot-agent's readiness probe (`server.state`, `listener_manager.workers_started`) and its
//! config check (`cluster_manager.cds.update_success|rejected`,
//! `listener_manager.lds.update_success|rejected`). The Prometheus series carry Isthmus' and
//! Istio's names; these carry Envoy's, so the agent needs no change to drive Isthmus.

use crate::clock::now;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Envoy's `ServerInfo.State` numbers, as `server.state` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Serving.
    Live = 0,
    /// Draining (shutdown or `/drain_listeners`).
    Draining = 1,
    /// Before the first config source is read.
    PreInitializing = 2,
    /// Waiting for the initial xDS configuration (and warming).
    Initializing = 3,
}

impl ServerState {
    /// Envoy's name for it (`/server_info` `state`).
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Initializing => "INITIALIZING",
        }
    }
}

/// Update counters of one xDS type, named as Envoy names them.
#[derive(Debug, Default)]
pub struct UpdateCounters {
    /// Responses handled.
    pub attempt: AtomicU64,
    /// Responses applied in full (ACKed).
    pub success: AtomicU64,
    /// Responses with at least one rejected resource (NACKed).
    pub rejected: AtomicU64,
}

/// Process-wide server stats (one proxy per process, as one Envoy per process).
#[derive(Debug)]
pub struct ServerStats {
    started: Instant,
    workers_started: AtomicBool,
    draining: AtomicBool,
    /// CDS (`cluster_manager.cds.*`).
    pub cds: UpdateCounters,
    /// LDS (`listener_manager.lds.*`).
    pub lds: UpdateCounters,
}

/// The process' stats.
pub fn stats() -> &'static ServerStats {
    static STATS: OnceLock<ServerStats> = OnceLock::new();
    STATS.get_or_init(|| ServerStats {
        started: now(),
        workers_started: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        cds: UpdateCounters::default(),
        lds: UpdateCounters::default(),
    })
}

impl ServerStats {
    /// Records one handled xDS response of `kind` (`cds`, `lds`; others are not tracked here).
    pub fn update(&self, kind: &str, accepted: bool) {
        let c = match kind {
            "cds" => &self.cds,
            "lds" => &self.lds,
            _ => return,
        };
        c.attempt.fetch_add(1, Ordering::Relaxed);
        if accepted { &c.success } else { &c.rejected }.fetch_add(1, Ordering::Relaxed);
    }

    /// The initial configuration is in force and listeners serve: Envoy starts its workers at
    /// this point, and pilot-agent waits for it.
    pub fn set_workers_started(&self) {
        self.workers_started.store(true, Ordering::Release);
    }

    /// Shutdown or `/drain_listeners` began.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The state `server.state` reports.
    pub fn state(&self) -> ServerState {
        if self.draining.load(Ordering::Acquire) {
            ServerState::Draining
        } else if self.workers_started.load(Ordering::Acquire) {
            ServerState::Live
        } else {
            ServerState::Initializing
        }
    }

    /// Seconds since start.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Every stat as `(name, value, used)`, sorted by name as Envoy prints them. `used` is
    /// Envoy's notion for `?usedonly`: a counter ever incremented, a gauge ever set.
    pub fn all(&self, listeners: u64, clusters: u64) -> Vec<(&'static str, u64, bool)> {
        let workers = self.workers_started.load(Ordering::Acquire);
        // Envoy writes its server gauges once initialisation is over: before that a
        // `?usedonly` read shows none of them (pilot-agent reads "not yet updated").
        let init_done = workers || self.draining.load(Ordering::Acquire);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut v = vec![
            ("cluster_manager.active_clusters", clusters, true),
            ("cluster_manager.cds.update_attempt", get(&self.cds.attempt), get(&self.cds.attempt) > 0),
            ("cluster_manager.cds.update_rejected", get(&self.cds.rejected), get(&self.cds.rejected) > 0),
            ("cluster_manager.cds.update_success", get(&self.cds.success), get(&self.cds.success) > 0),
            ("listener_manager.lds.update_attempt", get(&self.lds.attempt), get(&self.lds.attempt) > 0),
            ("listener_manager.lds.update_rejected", get(&self.lds.rejected), get(&self.lds.rejected) > 0),
            ("listener_manager.lds.update_success", get(&self.lds.success), get(&self.lds.success) > 0),
            ("listener_manager.total_listeners_active", listeners, true),
            ("listener_manager.workers_started", u64::from(workers), workers),
            ("server.live", u64::from(self.state() == ServerState::Live), init_done),
            ("server.state", self.state() as u64, init_done),
            ("server.uptime", self.uptime_s(), init_done),
        ];
        v.sort_by_key(|(n, ..)| *n);
        v
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // pure decisions take the time as input: any instant will do
mod tests {
    use super::*;

    #[test]
    fn state_follows_workers_and_drain() {
        let s = ServerStats {
            started: Instant::now(),
            workers_started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            cds: UpdateCounters::default(),
            lds: UpdateCounters::default(),
        };
        assert_eq!(s.state(), ServerState::Initializing);
        let used = |s: &ServerStats, n: &str| s.all(0, 0).iter().find(|(k, ..)| *k == n).map(|(_, v, u)| (*v, *u));
        assert_eq!(used(&s, "listener_manager.workers_started"), Some((0, false)));
        s.update("cds", true);
        s.update("lds", false);
        s.update("rds", false);
        assert_eq!(used(&s, "cluster_manager.cds.update_success"), Some((1, true)));
        assert_eq!(used(&s, "listener_manager.lds.update_rejected"), Some((1, true)));
        assert_eq!(used(&s, "listener_manager.lds.update_success"), Some((0, false)));
        s.set_workers_started();
        assert_eq!(s.state(), ServerState::Live);
        assert_eq!(used(&s, "server.state"), Some((0, true)));
        s.set_draining();
        assert_eq!(used(&s, "server.state"), Some((1, true)));
        assert_eq!(used(&s, "server.live"), Some((0, true)));
    }
}
