//! Telemetry: Prometheus metrics with Istio's standard names, JSON access logs, and the
//! runtime-adjustable log level, and the Envoy-named server stats that pilot-agent reads.

pub mod access_log;
pub mod istio_labels;
pub mod log_writer;
pub mod logging;
pub mod metrics;
pub mod request_metrics;
pub mod series;
pub mod server_stats;
pub mod tcp_metrics;
pub mod trace;
