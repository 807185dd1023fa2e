//! Listeners, their filter chains and the network filters the proxy runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::cluster::ClusterTarget;
use super::route::RouteConfig;

/// A bound address and the chains that decide what a connection on it becomes.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique name (metrics, logs, config dump).
    pub name: String,
    /// A digest of everything but the filter chains: equal across an update, the update
    /// touches chains only and only the changed chains' connections drain (Envoy's
    /// filter-chain-only update).
    pub base_fingerprint: u64,
    /// Where to bind.
    pub address: SocketAddr,
    /// More addresses served with the same config (`additional_addresses`: Istio's dual-stack
    /// listeners bind `0.0.0.0` and `::`).
    pub additional_addresses: Vec<SocketAddr>,
    /// Candidate chains, matched with Envoy's precedence.
    pub filter_chains: Vec<Arc<FilterChain>>,
    /// `filter_chain_matcher`: when set, it alone picks the chain (by name), as in Envoy.
    pub chain_matcher: Option<super::chain_matcher::ChainMatcher>,
    /// Used when no chain matches; without it such a connection is closed.
    pub default_filter_chain: Option<Arc<FilterChain>>,
    /// Whether chain matching needs the first bytes (TLS SNI/ALPN, HTTP sniffing). Set when a
    /// chain matches on `server_names`, `transport_protocol` or `application_protocols`, or
    /// the listener lists a TLS/HTTP inspector.
    pub inspect: bool,
    /// How long inspection may wait for the first bytes (`listener_filters_timeout`, default
    /// 15 s; `0s` means no limit, as in Envoy, and Istio's 15006 sends exactly that); on expiry
    /// the connection goes on with what was seen, as Envoy's
    /// `continue_on_listener_filters_timeout` does when set (default: closed).
    pub inspect_timeout: Option<Duration>,
    /// On timeout, continue matching without inspection data instead of closing.
    pub continue_on_inspect_timeout: bool,
    /// Accept-queue length.
    pub backlog: u32,
    /// `traffic_direction: INBOUND` (what `/drain_listeners?inboundonly` drains).
    pub inbound: bool,
    /// `traffic_direction: OUTBOUND`: spans are egress (CLIENT) spans, as Envoy names them;
    /// every other direction is ingress.
    pub outbound: bool,
    /// `internal_listener`: reachable only from Isthmus' own clusters (`envoy_internal_address`
    /// endpoints), served on a private loopback port (see `listener::internal`).
    pub internal: bool,
    /// Hand connections redirected here (iptables) to the listener that owns their original
    /// destination (Istio's `virtualOutbound` / `virtualInbound`).
    pub use_original_dst: bool,
    /// `transparent`: IP_TRANSPARENT on the socket (TPROXY inbound): accepted connections
    /// keep their original destination as local address.
    pub transparent: bool,
    /// False for listeners that only receive handed-off connections (Istio's per-port
    /// outbound listeners such as `0.0.0.0_8080`).
    pub bind_to_port: bool,
}

/// What a connection must look like to use a chain. An empty field matches anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainMatch {
    /// The local (original) destination port.
    pub destination_port: Option<u16>,
    /// The local (original) destination address ranges.
    pub prefix_ranges: Vec<CidrRange>,
    /// TLS SNI: exact names or `*.suffix` wildcards, lower case.
    pub server_names: Vec<String>,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: Option<String>,
    /// ALPN (TLS) or sniffed HTTP (`http/1.1`, `h2c`).
    pub application_protocols: Vec<String>,
    /// Peer address ranges.
    pub source_prefix_ranges: Vec<CidrRange>,
    /// Peer ports.
    pub source_ports: Vec<u16>,
}

/// An address range such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrRange {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl CidrRange {
    /// Whether `ip` falls in the range (v4 ranges never match v6 peers and vice versa).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len.min(32))).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len.min(128))).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One way of handling a connection.
#[derive(Debug, Clone)]
pub struct FilterChain {
    /// Chain name (`filter_chains[i].name`, or its index).
    pub name: String,
    /// Selection criteria.
    pub matcher: ChainMatch,
    /// The terminal network filter. Non-terminal filters are not supported (rejected).
    pub filter: NetworkFilter,
    /// TLS termination (`transport_socket` with a `DownstreamTlsContext`); `None` = bytes as
    /// they arrive (plaintext, or TLS passed through).
    pub tls: Option<Arc<super::tls::DownstreamSpec>>,
    /// `transport_socket_connect_timeout`: how long the TLS handshake may take (default 10 s:
    /// Envoy has none by default, but a client that never finishes must not hold a task;
    /// `0s` = none, as in Envoy).
    pub handshake_timeout: Option<Duration>,
    /// Network RBAC and local rate limits before the terminal filter, in order.
    pub policies: Vec<crate::config::filters::NetworkPolicy>,
    /// A digest of the chain's config: connections of a chain whose digest survives an
    /// update keep running.
    pub fingerprint: u64,
}

/// The terminal network filter of a chain.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// `envoy.filters.network.tcp_proxy`.
    TcpProxy(TcpProxy),
    /// `envoy.filters.network.http_connection_manager`.
    Http(Arc<HttpConnectionManager>),
}

/// L4 proxying to one cluster or a weighted set.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// Metric prefix.
    pub stat_prefix: String,
    /// Where bytes go.
    pub target: ClusterTarget,
    /// Close after this long with no bytes either way (Envoy default 1 h; `0s` disables).
    pub idle_timeout: Option<Duration>,
    /// Whether to write JSON access log lines for connections.
    pub access_log: super::access_log::AccessLogs,
    /// `envoy.filters.network.sni_cluster` precedes it: the TLS SNI names the cluster
    /// (Istio's AUTO_PASSTHROUGH east-west gateway).
    pub sni_cluster: bool,
}

/// An HCM's route table: inline, or named and delivered by RDS.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// `route_config`.
    Inline(Arc<RouteConfig>),
    /// `rds.route_config_name`: looked up per request in the route registry, so an RDS
    /// update applies to the next request on every connection.
    Rds(String),
}

/// Which HTTP versions downstream clients may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecType {
    /// HTTP/1.1 or HTTP/2 (prior knowledge), detected per connection.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// An HTTP listener's behaviour.
#[derive(Debug, Clone)]
pub struct HttpConnectionManager {
    /// Metric prefix.
    pub stat_prefix: String,
    /// Downstream protocols.
    pub codec: CodecType,
    /// Where the routes come from.
    pub routes: RouteSource,
    /// Set `x-forwarded-for` from the peer address (Envoy `use_remote_address`).
    pub use_remote_address: bool,
    /// Generate `x-request-id` when absent (Envoy default true).
    pub generate_request_id: bool,
    /// Write JSON access log lines to stdout.
    pub access_log: super::access_log::AccessLogs,
    /// Close idle keep-alive connections after this long (`common_http_protocol_options.idle_timeout`, default 1 h).
    pub idle_timeout: Option<Duration>,
    /// `request_timeout`: until the request is complete or the response starts (408).
    pub request_timeout: Option<Duration>,
    /// `drain_timeout` (default 5 s): how long a draining HTTP/1 connection stays open,
    /// answering `Connection: close`, before it is closed once idle.
    pub drain_timeout: Duration,
    /// `stream_idle_timeout` (default 5 min; `0s`: `None`): a stream with no frame either
    /// way for this long ends (a route's `idle_timeout` replaces it).
    pub stream_idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_stream_duration`: a stream's lifetime, unless its
    /// route sets one.
    pub max_stream_duration: Option<Duration>,
    /// Whether `Upgrade: websocket` is allowed through (`upgrade_configs`).
    pub websocket: bool,
    /// `forward_client_cert_details` + `set_current_client_cert_details`.
    pub xfcc: Xfcc,
    /// `tracing` as configured. Recorded, not acted on: no span is created or exported until
    /// the tracing work lands (README, "Envoy fields"); the percentages are validated so a bad
    /// value is refused now rather than later.
    pub tracing: Option<Tracing>,
    /// `request_id_extension` (Envoy's UUID extension, istiod's default).
    pub request_id: RequestId,
    /// `internal_address_config.cidr_ranges`: peers whose requests are internal, so their
    /// `x-envoy-force-trace` is honoured. Empty (Envoy 1.40's default) = none are.
    pub internal_cidrs: Vec<CidrRange>,
    /// `proxy_100_continue`: forward `Expect: 100-continue` upstream instead of removing it
    /// (the downstream gets `100 Continue` from Isthmus either way, once the body is read).
    pub proxy_100_continue: bool,
    /// Request size and HTTP/2 limits.
    pub limits: HttpLimits,
    /// `normalize_path`: resolve dot segments and unreserved escapes before routing.
    pub normalize_path: bool,
    /// `merge_slashes`: collapse repeated slashes before routing.
    pub merge_slashes: bool,
    /// `common_http_protocol_options.max_connection_duration`: drain a connection this long
    /// after it opened (HTTP/1: close after the response in flight; HTTP/2: GOAWAY).
    pub max_connection_duration: Option<Duration>,
    /// `request_headers_timeout` (HTTP/1; `0s`: `None`, no limit). Unset, it is 30 s where
    /// Envoy has none: a client trickling headers cannot hold a connection forever.
    pub request_headers_timeout: Option<Duration>,
    /// `xff_num_trusted_hops`: how many `x-forwarded-for` entries from the right were added
    /// by trusted proxies (decides the client address RBAC's `remote_ip` tests).
    pub xff_trusted_hops: u32,
    /// The policy filters in `http_filters` order (fault, CORS, local rate limit, RBAC);
    /// empty when none is configured, so the request path skips the chain.
    pub filters: Vec<crate::config::filters::HttpFilter>,
}

/// HCM `tracing`: sampling percentages (each 0–100, Envoy's default 100), span content and
/// the tracer.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// `client_sampling`: share of requests with `x-client-trace-id` that are traced.
    pub client_sampling: f64,
    /// `random_sampling`: share of other requests that are traced.
    pub random_sampling: f64,
    /// `overall_sampling`: a cap applied after the other two.
    pub overall_sampling: f64,
    /// `provider`; `None` = the bootstrap's `tracing.http` (Envoy's fallback).
    pub provider: Option<std::sync::Arc<Tracer>>,
    /// `custom_tags`, in order.
    pub custom_tags: Vec<CustomTag>,
    /// `max_path_tag_length` (default 256): `http.url` is cut to it.
    pub max_path_tag_length: usize,
}

/// A span exporter.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracer {
    /// `envoy.tracers.zipkin`: B3 propagation, Zipkin v2 JSON over HTTP.
    Zipkin(Zipkin),
    /// `envoy.tracers.opentelemetry`: W3C trace context, OTLP over gRPC.
    OpenTelemetry(OpenTelemetry),
}

/// `OpenTelemetryConfig` with a `grpc_service`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTelemetry {
    /// `grpc_service.envoy_grpc.cluster_name`: the OTLP collector.
    pub cluster: String,
    /// `grpc_service.envoy_grpc.authority` (default: the cluster name).
    pub authority: String,
    /// `grpc_service.timeout` for one export call (default 5 s here; Envoy has none).
    pub timeout: std::time::Duration,
    /// `service_name` (default `unknown_service:envoy`, as Envoy).
    pub service_name: String,
    /// `max_cache_size` (default 1024): spans held for export; more are dropped and counted.
    pub max_cache_size: usize,
    /// `set_telemetry_sdk_resource_attributes` (default true).
    pub sdk_attributes: bool,
    /// `set_service_name_resource_attribute` (default true).
    pub service_name_attribute: bool,
}

/// `ZipkinConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Zipkin {
    /// `collector_cluster`: where spans are POSTed.
    pub collector_cluster: String,
    /// `collector_endpoint` (e.g. `/api/v2/spans`).
    pub collector_endpoint: String,
    /// `collector_hostname` (default: the cluster name), the `Host` of the POST.
    pub collector_hostname: String,
    /// `trace_id_128bit`: new traces get 128-bit ids.
    pub trace_id_128bit: bool,
    /// `shared_span_context` (default true): an ingress span reuses the caller's span id.
    pub shared_span_context: bool,
}

/// One `custom_tags` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomTag {
    /// The tag name.
    pub tag: String,
    /// Where its value comes from.
    pub value: TagValue,
}

/// Where a custom tag's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// `literal.value`.
    Literal(String),
    /// `environment`: read when the span is finished (Envoy reads it at config time; the
    /// value is the same unless the process environment changes, which Isthmus never does).
    Environment {
        /// Variable name.
        name: String,
        /// Used when it is unset (empty = no tag).
        default: String,
    },
    /// `request_header`.
    RequestHeader {
        /// Header name (lower case).
        name: http::HeaderName,
        /// Used when it is absent (empty = no tag).
        default: String,
    },
    /// `metadata` of kind `request` (dynamic metadata): Isthmus sets none, so only the
    /// default can apply, as in Envoy when the filter that would set it did not run.
    RequestMetadata {
        /// Used as the value (empty = no tag).
        default: String,
    },
}

/// Envoy's UUID request-id extension options (both default to true).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    /// Pack the trace decision into the `x-request-id` UUID.
    pub pack_trace_reason: bool,
    /// Sample traces by the request id, so every hop makes the same decision.
    pub use_request_id_for_trace_sampling: bool,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId { pack_trace_reason: true, use_request_id_for_trace_sampling: true }
    }
}

/// What happens to `x-forwarded-client-cert` (Envoy's `forward_client_cert_details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XfccMode {
    /// Remove it (default).
    #[default]
    Sanitize,
    /// Pass it on only when the client connection is mTLS.
    ForwardOnly,
    /// Append this hop's element when mTLS (keep the incoming value).
    AppendForward,
    /// Replace it with this hop's element when mTLS, else remove it.
    SanitizeSet,
    /// Pass it on unchanged, TLS or not.
    AlwaysForwardOnly,
}

/// The XFCC policy and which fields this hop adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Xfcc {
    /// Mode.
    pub mode: XfccMode,
    /// Add `URI=` (the client's URI SAN).
    pub uri: bool,
    /// Add `DNS=` entries.
    pub dns: bool,
    /// Add `Subject=""` (Istio asks for it; workload certs have an empty subject).
    pub subject: bool,
    /// Add `Cert="…"`: the client leaf as URL-encoded PEM (Istio's gateways ask for it).
    pub cert: bool,
}

/// Bounds on what one downstream request or connection may hold, with Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `max_request_headers_kb` (default 60 KiB): larger request headers get 431.
    pub max_request_headers_bytes: usize,
    /// `common_http_protocol_options.max_headers_count` (default 100): more get 431.
    pub max_headers_count: usize,
    /// `http2_protocol_options.max_concurrent_streams` (`None`: hyper's 200; Envoy's default is
    /// unbounded, which lets one connection fan out without limit).
    pub h2_max_concurrent_streams: Option<u32>,
    /// `http2_protocol_options.initial_stream_window_size`.
    pub h2_initial_stream_window: Option<u32>,
    /// `http2_protocol_options.initial_connection_window_size`.
    pub h2_initial_connection_window: Option<u32>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_headers_bytes: 60 * 1024,
            max_headers_count: 100,
            h2_max_concurrent_streams: None,
            h2_initial_stream_window: None,
            h2_initial_connection_window: None,
        }
    }
}
