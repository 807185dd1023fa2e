//! One upstream host at run time: its address, weight, locality and live counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::bootstrap::Locality;
use crate::config::cluster::HealthStatus;

/// A resolved endpoint. Shared by pickers, requests and the admin `/clusters` page.
#[derive(Debug)]
pub struct Host {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative weight.
    pub weight: u32,
    /// Where it runs.
    pub locality: Locality,
    /// Priority level (0 = most preferred).
    pub priority: u32,
    /// Health from the config source.
    pub health: HealthStatus,
    /// `endpoint.hostname`, or the DNS name it was resolved from.
    pub hostname: String,
    active: AtomicU64,
    /// Requests sent (admin `/clusters` `rq_total`).
    pub rq_total: AtomicU64,
    /// Requests that failed (5xx, reset, connect failure).
    pub rq_error: AtomicU64,
    /// The locality's `load_balancing_weight` (locality-weighted balancing).
    pub locality_weight: Option<u32>,
    /// Latency estimate (Peak-EWMA policy, latency outliers, admin).
    pub ewma: crate::balance::ewma::Ewma,
    /// Outlier-detection counters (request path).
    pub counters: crate::outlier::counters::HostCounters,
    ejected: std::sync::atomic::AtomicBool,
    hc_failed: std::sync::atomic::AtomicBool,
    /// `envoy.transport_socket_match` metadata: selects TLS or plaintext for this host.
    pub transport_match: Arc<std::collections::BTreeMap<String, String>>,
}

impl Host {
    /// A host as listed in config.
    pub fn new(
        addr: SocketAddr,
        weight: u32,
        locality: Locality,
        priority: u32,
        health: HealthStatus,
        hostname: String,
    ) -> Self {
        Host {
            addr,
            weight: weight.max(1),
            locality,
            priority,
            health,
            hostname,
            active: AtomicU64::new(0),
            rq_total: AtomicU64::new(0),
            rq_error: AtomicU64::new(0),
            locality_weight: None,
            counters: Default::default(),
            ewma: Default::default(),
            ejected: std::sync::atomic::AtomicBool::new(false),
            hc_failed: std::sync::atomic::AtomicBool::new(false),
            transport_match: Arc::default(),
        }
    }

    /// The same host with its transport-socket metadata.
    pub fn with_transport_match(mut self, m: Arc<std::collections::BTreeMap<String, String>>) -> Self {
        self.transport_match = m;
        self
    }

    /// The same host with its locality's weight.
    pub fn with_locality_weight(mut self, w: Option<u32>) -> Self {
        self.locality_weight = w;
        self
    }

    /// Ejected by outlier detection.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Sets the ejection flag (outlier detector only).
    pub fn set_ejected(&self, on: bool) {
        self.ejected.store(on, Ordering::Relaxed);
    }

    /// Failing active health checks.
    pub fn hc_failed(&self) -> bool {
        self.hc_failed.load(Ordering::Relaxed)
    }

    /// Sets the active-health-check flag (health checker only).
    pub fn set_hc_failed(&self, on: bool) {
        self.hc_failed.store(on, Ordering::Relaxed);
    }

    /// Healthy for balancing: configured healthy, not ejected, passing health checks.
    pub fn is_healthy(&self) -> bool {
        self.health == HealthStatus::Healthy && !self.is_ejected() && !self.hc_failed()
    }

    /// Degraded for balancing: configured degraded, not ejected, passing health checks.
    pub fn is_degraded(&self) -> bool {
        self.health == HealthStatus::Degraded && !self.is_ejected() && !self.hc_failed()
    }

    /// A host of an ORIGINAL_DST cluster: the connection's own destination, healthy, weight 1,
    /// no locality.
    pub fn for_original_dst(addr: SocketAddr) -> Self {
        Host::new(addr, 1, Locality::default(), 0, HealthStatus::Healthy, String::new())
    }

    /// A healthy host with no locality (unit tests).
    #[cfg(test)]
    pub fn for_test(addr: SocketAddr, weight: u32) -> Self {
        Host::new(addr, weight, Locality::default(), 0, HealthStatus::Healthy, String::new())
    }

    /// Requests in flight to this host.
    pub fn active_requests(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a request as active until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.rq_total.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }
}

/// RAII guard: the request is active until dropped.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Host>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Endpoint ===

impl crate::balance::Endpoint for Host {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn active_requests(&self) -> u64 {
        Host::active_requests(self)
    }

    fn latency_cost(&self) -> f64 {
        self.ewma.cost(Host::active_requests(self))
    }
}
