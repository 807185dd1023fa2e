//! Local (per-process) rate limits: `envoy.filters.http.local_ratelimit` and
//! `envoy.filters.network.local_ratelimit`, token buckets as Envoy configures them.

use std::time::Duration;

use http::StatusCode;

use super::Fraction;
use crate::config::route::HeaderAdd;
use crate::policy::token_bucket::TokenBucket;

/// `envoy.type.v3.TokenBucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// `max_tokens`: the burst.
    pub max_tokens: u32,
    /// `tokens_per_fill` (default 1).
    pub tokens_per_fill: u32,
    /// `fill_interval`.
    pub fill_interval: Duration,
}

/// The HTTP local rate limit.
#[derive(Debug)]
pub struct HttpLocalRateLimit {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// The bucket's shape; `None` = no bucket (requests are never limited).
    pub bucket: Option<Bucket>,
    /// The bucket itself (this filter or route's own, as in Envoy).
    pub tokens: TokenBucket,
    /// `filter_enabled` (default 0 %: the filter counts nothing unless enabled).
    pub enabled: Fraction,
    /// `filter_enforced` (default 0 %: limited requests are only counted).
    pub enforced: Fraction,
    /// `status` (default 429).
    pub status: StatusCode,
    /// `response_headers_to_add`, on limited responses.
    pub response_headers: Vec<HeaderAdd>,
    /// `request_headers_to_add_when_not_enforced`.
    pub request_headers_when_not_enforced: Vec<HeaderAdd>,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
    pub x_ratelimit_headers: bool,
    /// `rate_limited_as_resource_exhausted`: gRPC callers get RESOURCE_EXHAUSTED (8), not
    /// UNAVAILABLE (14).
    pub grpc_resource_exhausted: bool,
    /// Its counters, labelled with its own `stat_prefix` (a per-route config counts apart).
    pub stats: super::Stats,
}

/// The network (connection) local rate limit.
#[derive(Debug)]
pub struct NetworkLocalRateLimit {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// The bucket's shape.
    pub bucket: Bucket,
    /// The bucket.
    pub tokens: TokenBucket,
    /// `runtime_enabled` default (true).
    pub enabled: bool,
    /// Its counters (registered on first use).
    pub stats: super::Stats,
}
