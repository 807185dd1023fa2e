//! `envoy.extensions.filters.http.fault.v3.HTTPFault`: the delays and aborts a VirtualService
//! `fault` becomes, and the header-controlled faults Envoy documents.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::Fraction;
use crate::config::route::HeaderMatcher;

/// One fault configuration (listener level or one route's).
#[derive(Debug, Clone)]
pub struct Fault {
    /// Delay injection.
    pub delay: Option<Delay>,
    /// Abort injection (after the delay, when both apply).
    pub abort: Option<Abort>,
    /// The fault applies only when all of these match the request.
    pub headers: Vec<HeaderMatcher>,
    /// The fault applies only when the route's cluster is this one.
    pub upstream_cluster: Option<String>,
    /// The fault applies only to callers whose `x-envoy-downstream-service-node` is listed.
    pub downstream_nodes: Vec<String>,
    /// No new fault while this many are active (`max_active_faults`; unset = no bound).
    pub max_active_faults: Option<u64>,
    /// Faults in progress (the `active_faults` gauge), shared with the per-route configs of
    /// the same filter through the filter, not through this value.
    pub active: Arc<AtomicU64>,
}

/// How long to delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelaySource {
    /// `fixed_delay`.
    Fixed(Duration),
    /// `header_delay`: milliseconds from `x-envoy-fault-delay-request`.
    Header,
}

/// `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delay {
    /// The length.
    pub source: DelaySource,
    /// Share of requests delayed (`percentage`; unset = none, as Envoy's proto default).
    pub percentage: Fraction,
}

/// What an abort answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortSource {
    /// `http_status`.
    Http(StatusCode),
    /// `grpc_status`: a trailers-only gRPC reply with this status.
    Grpc(u16),
    /// `header_abort`: `x-envoy-fault-abort-request` / `x-envoy-fault-abort-grpc-request`.
    Header,
}

/// `abort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// The answer.
    pub source: AbortSource,
    /// Share of requests aborted.
    pub percentage: Fraction,
    /// `response_body` (Envoy's default text is `fault filter abort`).
    pub body: Option<String>,
}
