//! Route tables: virtual hosts by domain, routes by path/header/query, and their actions.

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::cluster::ClusterTarget;
use super::matcher::ValueMatch;

/// A route table (`RouteConfiguration`).
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    /// Name (for RDS and config dump).
    pub name: String,
    /// Virtual hosts, in config order.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Headers edits applied to every request / response that this table routes.
    pub edits: HeaderEdits,
    /// Match virtual hosts on the host without its port (`ignore_port_in_host_matching`).
    pub ignore_port_in_host_matching: bool,
}

/// A set of domains with their routes.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// Name.
    pub name: String,
    /// Host patterns.
    pub domains: Vec<DomainPattern>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// Header edits for this virtual host.
    pub edits: HeaderEdits,
    /// Retry policy used by routes that have none.
    pub retry_policy: Option<RetryPolicy>,
    /// `typed_per_filter_config`: overrides for routes that have none for the same filter.
    pub per_filter: crate::config::filters::PerFilter,
}

/// How a `domains` entry matches the `Host`/`:authority` (port stripped unless given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `example.com`.
    Exact(String),
    /// `*.example.com` / `*-bar.example.com`: the stored text is the suffix after `*`.
    Suffix(String),
    /// `foo.*`: the stored text is the prefix before `*`.
    Prefix(String),
    /// `*`.
    Any,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name (optional in Envoy; used in logs).
    pub name: String,
    /// When it applies.
    pub matcher: RouteMatch,
    /// What it does.
    pub action: RouteAction,
    /// Header edits for this route.
    pub edits: HeaderEdits,
    /// `decorator.operation` (the span name), when `decorator.propagate` is not false it also
    /// goes upstream as `x-envoy-decorator-operation` from an outbound listener.
    pub decorator: Option<Decorator>,
    /// `typed_per_filter_config`: this route's filter overrides (most specific wins).
    pub per_filter: crate::config::filters::PerFilter,
}

/// `Route.decorator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decorator {
    /// `operation`: the span's name.
    pub operation: String,
    /// `propagate` (default true).
    pub propagate: bool,
}

/// Conditions on a request.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Path condition.
    pub path: PathMatch,
    /// Compare the path case-sensitively (Envoy default true).
    pub case_sensitive: bool,
    /// All must hold.
    pub headers: Vec<HeaderMatcher>,
    /// All must hold.
    pub query_parameters: Vec<QueryMatcher>,
    /// Only gRPC requests (`content-type: application/grpc…`).
    pub grpc: bool,
}

/// Path conditions (query string excluded).
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Starts with.
    Prefix(String),
    /// Equals.
    Exact(String),
    /// Whole-path regex (RE2 semantics, anchored).
    Regex(regex::Regex),
    /// Path-segment prefix (`/api` matches `/api` and `/api/x`, not `/apix`).
    PathSeparatedPrefix(String),
}

/// A condition on one header.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Header name (lower case).
    pub name: HeaderName,
    /// The test.
    pub test: ValueMatch,
    /// Negate the result.
    pub invert: bool,
}

/// A condition on one query parameter.
#[derive(Debug, Clone)]
pub struct QueryMatcher {
    /// Parameter name.
    pub name: String,
    /// The test on its (first) value.
    pub test: ValueMatch,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Proxy to a cluster.
    Forward(Box<Forward>),
    /// Answer locally.
    Direct {
        /// Status code.
        status: StatusCode,
        /// Body (inline string/bytes).
        body: Option<bytes::Bytes>,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
}

/// Proxying details.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Destination cluster(s).
    pub target: ClusterTarget,
    /// Replace the matched prefix (prefix matches only).
    pub prefix_rewrite: Option<String>,
    /// Replace the `Host`/`:authority`.
    pub host_rewrite: Option<String>,
    /// Route timeout, from the end of the request until the end of the response (default
    /// 15 s; `0s` disables). Not used when `max_stream_duration` is set, as in Envoy.
    pub timeout: Option<Duration>,
    /// `idle_timeout`: replaces the HCM's `stream_idle_timeout` on this route (`Some(None)`:
    /// `0s`, disabled; `None`: unset).
    pub idle_timeout: Option<Option<Duration>>,
    /// `max_grpc_timeout` (legacy): a gRPC request's `grpc-timeout` becomes the route timeout,
    /// capped by this (`ZERO`: uncapped).
    pub max_grpc_timeout: Option<Duration>,
    /// `max_stream_duration`: its presence switches the route to Envoy's "new timeouts" (the
    /// route timeout and `max_grpc_timeout` are not used).
    pub max_stream_duration: Option<StreamDuration>,
    /// Retries.
    pub retry_policy: Option<RetryPolicy>,
    /// How to hash the request for RING_HASH/MAGLEV clusters (`hash_policy`).
    pub hash_policy: Vec<HashPolicy>,
}

/// `RouteAction.max_stream_duration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamDuration {
    /// `max_stream_duration` (`Some(ZERO)`: explicitly none; `None`: the HCM's applies).
    pub max: Option<Duration>,
    /// `grpc_timeout_header_max`: set, a `grpc-timeout` header is the stream's duration,
    /// capped by this (`ZERO`: uncapped).
    pub grpc_header_max: Option<Duration>,
    /// `grpc_timeout_header_offset`: subtracted from the header's value.
    pub grpc_header_offset: Option<Duration>,
}

/// One `hash_policy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    /// What to hash.
    pub source: HashSource,
    /// Stop at this policy if it produced a hash.
    pub terminal: bool,
}

/// The request property a hash policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashSource {
    /// A header's value.
    Header(http::HeaderName),
    /// A cookie's value (no cookie is generated when absent).
    Cookie(String),
    /// The downstream peer IP.
    SourceIp,
    /// A query parameter's value.
    QueryParameter(String),
}

/// A redirect response.
#[derive(Debug, Clone, Default)]
pub struct Redirect {
    /// New scheme (`https`), else the request's.
    pub scheme: Option<String>,
    /// New host, else the request's.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path (whole).
    pub path: Option<String>,
    /// Replace the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    pub status: StatusCode,
    /// Drop the query string.
    pub strip_query: bool,
}

/// When and how often to retry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryPolicy {
    /// Which failures retry.
    pub on: RetryOn,
    /// Extra statuses for `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Retries after the first try (Envoy default 1).
    pub num_retries: u32,
    /// Limit per try until response headers.
    pub per_try_timeout: Option<Duration>,
    /// Back-off base (default 25 ms).
    pub base_interval: Duration,
    /// Back-off cap (default 10 × base).
    pub max_interval: Duration,
    /// Avoid hosts already tried (`envoy.retry_host_predicates.previous_hosts`).
    pub avoid_previous_hosts: bool,
    /// How many times to re-pick a host to avoid previous ones (`host_selection_retry_max_attempts`).
    pub host_selection_attempts: u32,
}

/// The `retry_on` conditions this proxy honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Any 5xx, connect failure or reset.
    pub server_error: bool,
    /// 502/503/504, connect failure or reset.
    pub gateway_error: bool,
    /// Connection could not be established.
    pub connect_failure: bool,
    /// Upstream reset before response headers.
    pub reset: bool,
    /// Status in `retriable_status_codes`.
    pub retriable_status_codes: bool,
    /// HTTP/2 REFUSED_STREAM.
    pub refused_stream: bool,
    /// gRPC statuses that retry (`cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`, `unavailable`), read from trailers-only responses.
    pub grpc_statuses: [bool; 17],
}

/// Header edits at one level of the route table.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Added to the upstream request.
    pub request_add: Vec<HeaderAdd>,
    /// Removed from the upstream request.
    pub request_remove: Vec<HeaderName>,
    /// Added to the downstream response.
    pub response_add: Vec<HeaderAdd>,
    /// Removed from the downstream response.
    pub response_remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// Whether there is nothing to do (lets the request path skip work).
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }
}

/// One header to add, with Envoy's append semantics.
#[derive(Debug, Clone)]
pub struct HeaderAdd {
    /// Name.
    pub name: HeaderName,
    /// Value (literal; `%…%` formatters are not expanded).
    pub value: HeaderValue,
    /// What to do when the header exists.
    pub action: AppendAction,
}

/// Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Add another value.
    Append,
    /// Replace existing values, or add.
    OverwriteOrAdd,
    /// Add only when absent.
    AddIfAbsent,
    /// Replace only when present.
    OverwriteIfExists,
}
