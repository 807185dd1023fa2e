//! Telemetry: Prometheus metrics with Istio's standard names, JSON access logs, and the
//! runtime-adjustable log level.

pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod request_metrics;
