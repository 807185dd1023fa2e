//! Envoy-style per-cluster counters (`envoy_cluster_*{envoy_cluster_name}`), registered once
//! per cluster so the request path only bumps handles.

use metrics::{counter, gauge, Counter, Gauge};

/// Metric handles for one cluster.
#[derive(Debug)]
pub struct ClusterStats {
    /// Requests sent upstream (each try).
    pub rq_total: Counter,
    /// Retries.
    pub rq_retry: Counter,
    /// Retries refused by `max_retries`.
    pub rq_retry_overflow: Counter,
    /// Requests refused by `max_requests` / `max_pending_requests`.
    pub rq_pending_overflow: Counter,
    /// Whole-request timeouts.
    pub rq_timeout: Counter,
    /// Per-try timeouts.
    pub rq_per_try_timeout: Counter,
    /// Responses by class.
    pub rq_xx: [Counter; 5],
    /// Connections opened.
    pub cx_total: Counter,
    /// Connections open now.
    pub cx_active: Gauge,
    /// Failed connects.
    pub cx_connect_fail: Counter,
    /// Connects that timed out.
    pub cx_connect_timeout: Counter,
    /// Connects refused by `max_connections`.
    pub cx_overflow: Counter,
    /// Requests that found no usable host.
    pub no_healthy_host: Counter,
}

impl ClusterStats {
    /// Registers the handles for `cluster`.
    pub fn new(cluster: &str) -> Self {
        let l = [("envoy_cluster_name", cluster.to_string())];
        let c = |n: &'static str| counter!(n, &l);
        ClusterStats {
            rq_total: c("envoy_cluster_upstream_rq_total"),
            rq_retry: c("envoy_cluster_upstream_rq_retry"),
            rq_retry_overflow: c("envoy_cluster_upstream_rq_retry_overflow"),
            rq_pending_overflow: c("envoy_cluster_upstream_rq_pending_overflow"),
            rq_timeout: c("envoy_cluster_upstream_rq_timeout"),
            rq_per_try_timeout: c("envoy_cluster_upstream_rq_per_try_timeout"),
            rq_xx: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                counter!("envoy_cluster_upstream_rq_xx", "envoy_cluster_name" => cluster.to_string(), "envoy_response_code_class" => class)
            }),
            cx_total: c("envoy_cluster_upstream_cx_total"),
            cx_active: gauge!("envoy_cluster_upstream_cx_active", &l),
            cx_connect_fail: c("envoy_cluster_upstream_cx_connect_fail"),
            cx_connect_timeout: c("envoy_cluster_upstream_cx_connect_timeout"),
            cx_overflow: c("envoy_cluster_upstream_cx_overflow"),
            no_healthy_host: c("envoy_cluster_upstream_cx_none_healthy"),
        }
    }

    /// Counts a response status by class.
    pub fn response(&self, status: u16) {
        if let Some(c) = self.rq_xx.get(usize::from(status / 100).wrapping_sub(1)) {
            c.increment(1);
        }
    }
}
