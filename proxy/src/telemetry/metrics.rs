//! The Prometheus recorder and Istio's standard metrics.
//!
//! Names and labels follow Istio's standard metrics so existing dashboards work:
//! `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
//! `istio_response_bytes`, `istio_tcp_*`. Envoy-style cluster counters live in
//! `cluster::stats`.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder once and returns the handle that renders `/stats/prometheus`.
/// `None` when another recorder was installed first (tests in one process). Series left idle
/// for [`series::expiry`](super::series::expiry) are forgotten; [`super::series`] keeps the
/// ones live objects own.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
            ];
            let sizes = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("istio_request_duration_milliseconds".into()), &buckets)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &sizes)
                .ok()?
                .idle_timeout(MetricKindMask::ALL, Some(super::series::expiry()))
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(super::series::Bounded(recorder)).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!("istio_requests_total", "HTTP/gRPC requests handled, by response code and flags");
    describe_histogram!(
        "istio_request_duration_milliseconds",
        Unit::Milliseconds,
        "Request duration until the last response byte"
    );
    describe_histogram!("istio_request_bytes", Unit::Bytes, "Request body sizes");
    describe_histogram!("istio_response_bytes", Unit::Bytes, "Response body sizes");
    describe_counter!("istio_tcp_sent_bytes_total", Unit::Bytes, "Bytes sent to the downstream on TCP connections");
    describe_counter!(
        "istio_tcp_received_bytes_total",
        Unit::Bytes,
        "Bytes received from the downstream on TCP connections"
    );
    describe_counter!("istio_tcp_connections_opened_total", "TCP proxy connections opened");
    describe_counter!("istio_tcp_connections_closed_total", "TCP proxy connections closed");
    describe_counter!("envoy_cluster_upstream_rq_total", "Upstream requests (each try)");
    describe_counter!("envoy_cluster_upstream_rq_retry", "Upstream retries");
    describe_counter!("envoy_cluster_upstream_cx_connect_fail", "Upstream connect failures");
    describe_gauge!("envoy_cluster_upstream_cx_active", "Upstream connections open");
    describe_counter!("isthmus_downstream_cx_total", "Downstream connections accepted, by listener");
    describe_counter!("isthmus_downstream_cx_no_chain_match", "Connections closed because no filter chain matched");
    describe_counter!(
        "isthmus_accept_errors_total",
        "Accept errors, by listener and kind (emfile, enfile, enobufs, enomem, other)"
    );
    describe_counter!(
        "isthmus_downstream_global_cx_overflow",
        "Connections closed at accept by the overload manager's global connection limit"
    );
    describe_counter!("envoy_http_fault_delays_injected", "Requests delayed by the fault filter");
    describe_counter!("envoy_http_fault_aborts_injected", "Requests aborted by the fault filter");
    describe_counter!("envoy_http_fault_faults_overflow", "Faults not injected because max_active_faults was reached");
    describe_gauge!("envoy_http_fault_active_faults", "Faults in progress");
    describe_counter!("envoy_http_cors_origin_valid", "CORS requests from an allowed origin");
    describe_counter!("envoy_http_cors_origin_invalid", "CORS requests from an origin the policy does not allow");
    for (n, what) in
        [("enabled", "seen"), ("enforced", "refused"), ("rate_limited", "over the limit"), ("ok", "within the limit")]
    {
        describe_counter!(
            format!("envoy_http_local_rate_limit_{n}"),
            format!("Requests the HTTP local rate limit {what}")
        );
    }
    describe_counter!(
        "envoy_network_local_rate_limit_rate_limited",
        "Connections closed by the network local rate limit"
    );
    for (n, what) in [
        ("allowed", "allowed"),
        ("denied", "denied"),
        ("shadow_allowed", "the shadow rules allow"),
        ("shadow_denied", "the shadow rules deny"),
    ] {
        describe_counter!(format!("envoy_http_rbac_{n}"), format!("Requests RBAC {what}"));
        describe_counter!(format!("envoy_network_rbac_{n}"), format!("Connections RBAC {what}"));
    }
    for (n, what) in [("attempt", "run"), ("success", "passed"), ("failure", "failed")] {
        describe_counter!(format!("envoy_cluster_health_check_{n}"), format!("Active health-check probes {what}"));
    }
}
