//! Outlier detection (passive health), Envoy's semantics (spec lb-failover §6): per-host
//! lock-free counters on the request path; ejection decisions, the max-ejection gate, backoff
//! and uneject on interval ticks in a pure detector that one task per cluster drives.

pub mod counters;
pub mod detector;

use std::time::Duration;

/// `outlier_detection` of a cluster, with Envoy's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    /// Consecutive 5xx to eject (default 5).
    pub consecutive_5xx: u32,
    /// Percent chance to enforce it (default 100).
    pub enforcing_consecutive_5xx: u32,
    /// Consecutive 502/503/504 to eject (default 5).
    pub consecutive_gateway_failure: u32,
    /// Percent chance to enforce it (default 0: off).
    pub enforcing_consecutive_gateway_failure: u32,
    /// Count connect failures/timeouts separately from HTTP errors.
    pub split_external_local_origin_errors: bool,
    /// Consecutive local-origin failures to eject (default 5; split mode).
    pub consecutive_local_origin_failure: u32,
    /// Percent chance to enforce it (default 100).
    pub enforcing_consecutive_local_origin_failure: u32,
    /// Sweep period (default 10 s).
    pub interval: Duration,
    /// First ejection length (default 30 s).
    pub base_ejection_time: Duration,
    /// Ejection length cap (default max(300 s, base)).
    pub max_ejection_time: Duration,
    /// Random extra per ejection, up to this (default 0).
    pub max_ejection_time_jitter: Duration,
    /// Cap on ejected hosts, percent of the cluster (default 10).
    pub max_ejection_percent: u32,
    /// Allow one ejection even above the percent cap.
    pub always_eject_one_host: bool,
    /// Success rate: minimum qualifying hosts (default 5).
    pub success_rate_minimum_hosts: u32,
    /// Success rate: minimum requests per host per interval (default 100).
    pub success_rate_request_volume: u32,
    /// Success rate: stdev factor × 1000 (default 1900).
    pub success_rate_stdev_factor: u32,
    /// Percent chance to enforce success-rate ejections (default 100).
    pub enforcing_success_rate: u32,
    /// Same for local-origin success rate (default 100).
    pub enforcing_local_origin_success_rate: u32,
    /// Failure percentage threshold (default 85).
    pub failure_percentage_threshold: u32,
    /// Percent chance to enforce failure-percentage ejections (default 0).
    pub enforcing_failure_percentage: u32,
    /// Same for local origin (default 0).
    pub enforcing_failure_percentage_local_origin: u32,
    /// Failure percentage: minimum qualifying hosts (default 5).
    pub failure_percentage_minimum_hosts: u32,
    /// Failure percentage: minimum requests per host per interval (default 50).
    pub failure_percentage_request_volume: u32,
    /// Latency outliers (Isthmus extension, `isthmus.io/outlier` metadata).
    pub latency: Option<LatencyOutlier>,
    /// `successful_active_health_check_uneject_host` (default true): a passing active health
    /// check returns an outlier-ejected host at once; false keeps it out until its ejection
    /// time has passed, whatever the checks say.
    pub uneject_on_active_hc: bool,
}

/// Eject a host whose latency estimate stays above `factor ×` the cluster median for
/// `intervals` consecutive intervals — a crawling host fails over like a failing one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyOutlier {
    /// Multiple of the median (e.g. 3.0).
    pub factor: f64,
    /// Consecutive intervals above it (e.g. 2).
    pub intervals: u32,
    /// Hosts needed for a meaningful median (default 3).
    pub min_hosts: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: 0,
            split_external_local_origin_errors: false,
            consecutive_local_origin_failure: 5,
            enforcing_consecutive_local_origin_failure: 100,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            enforcing_success_rate: 100,
            enforcing_local_origin_success_rate: 100,
            failure_percentage_threshold: 85,
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            latency: None,
            uneject_on_active_hc: true,
        }
    }
}

/// Why a host was ejected (metric label `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectionType {
    /// Consecutive 5xx.
    Consecutive5xx,
    /// Consecutive 502/503/504.
    ConsecutiveGatewayFailure,
    /// Consecutive connect failures/timeouts (split mode).
    ConsecutiveLocalOriginFailure,
    /// Success rate below mean − factor × stdev.
    SuccessRate,
    /// Local-origin success rate.
    SuccessRateLocalOrigin,
    /// Failure percentage above threshold.
    FailurePercentage,
    /// Local-origin failure percentage.
    FailurePercentageLocalOrigin,
    /// Latency far above the cluster median (Isthmus extension).
    Latency,
}

impl EjectionType {
    /// Envoy's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionType::Consecutive5xx => "CONSECUTIVE_5XX",
            EjectionType::ConsecutiveGatewayFailure => "CONSECUTIVE_GATEWAY_FAILURE",
            EjectionType::ConsecutiveLocalOriginFailure => "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
            EjectionType::SuccessRate => "SUCCESS_RATE",
            EjectionType::SuccessRateLocalOrigin => "SUCCESS_RATE_LOCAL_ORIGIN",
            EjectionType::FailurePercentage => "FAILURE_PERCENTAGE",
            EjectionType::FailurePercentageLocalOrigin => "FAILURE_PERCENTAGE_LOCAL_ORIGIN",
            EjectionType::Latency => "LATENCY",
        }
    }

    /// The enforcing percentage that applies.
    pub fn enforcing(self, c: &OutlierConfig) -> u32 {
        match self {
            EjectionType::Consecutive5xx => c.enforcing_consecutive_5xx,
            EjectionType::ConsecutiveGatewayFailure => c.enforcing_consecutive_gateway_failure,
            EjectionType::ConsecutiveLocalOriginFailure => c.enforcing_consecutive_local_origin_failure,
            EjectionType::SuccessRate => c.enforcing_success_rate,
            EjectionType::SuccessRateLocalOrigin => c.enforcing_local_origin_success_rate,
            EjectionType::FailurePercentage => c.enforcing_failure_percentage,
            EjectionType::FailurePercentageLocalOrigin => c.enforcing_failure_percentage_local_origin,
            EjectionType::Latency => 100,
        }
    }
}

/// What one upstream attempt told us about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP status (gRPC statuses are mapped to HTTP first).
    Status(u16),
    /// The connection could not be made.
    ConnectFailure,
    /// The connection was made (split mode resets the local-origin counter).
    ConnectSuccess,
    /// No response in time.
    Timeout,
    /// The upstream reset or closed before responding.
    Reset,
}

/// Envoy's gRPC → HTTP status mapping for outlier accounting.
pub fn grpc_to_http(grpc_status: u32) -> u16 {
    match grpc_status {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}
