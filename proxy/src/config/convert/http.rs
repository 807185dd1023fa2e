//! `HttpConnectionManager` → model: codec, routes, HTTP filters (router only), options.

use std::sync::Arc;
use std::time::Duration;

use xds_client::protos::envoy::extensions::filters::network::http_connection_manager::v3 as proto;

use super::common::timeout;
use super::fields::{check, FieldPolicy};
use super::{route, Resources};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::HttpFilter;
use crate::config::listener::{
    CodecType, CustomTag, HttpConnectionManager, RequestId, RouteSource, TagValue, Tracer, Tracing, Zipkin,
};

pub(super) const HCM: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    honoured: &[
        "stat_prefix",
        "codec_type",
        "route_config",
        "rds",
        "http_filters",
        "use_remote_address",
        "generate_request_id",
        "access_log",
        "upgrade_configs",
        "forward_client_cert_details",
        "set_current_client_cert_details",
        "request_id_extension",
        "proxy_100_continue",
        "tracing",
        "internal_address_config",
        "max_request_headers_kb",
        "common_http_protocol_options",
        "http2_protocol_options",
        "normalize_path",
        "merge_slashes",
        "xff_num_trusted_hops",
        "request_headers_timeout",
        "request_timeout",
        "stream_idle_timeout",
        "drain_timeout",
    ],
    ignored: &[
        "server_name",
        "http_protocol_options",
        "delayed_close_timeout",
        "path_with_escaped_slashes_action",
        "skip_xff_append",
        "preserve_external_request_id",
        "always_set_request_id_in_response",
        "add_user_agent",
        "strip_any_host_port",
        "strip_matching_host_port",
    ],
};

/// Istio's HTTP filters accepted as no-ops (peer metadata, stats). `istio.alpn` is among them
/// because its effect — `istio-http/1.1`/`istio-h2` ALPN on mesh upstreams — is built into
/// `tls::context::UpstreamTls::alpn` for every Istio-style ALPN list.
const ISTIO_NOOP_HTTP: &[&str] = &[
    "istio.metadata_exchange",
    "istio.peer_metadata",
    "envoy.filters.http.peer_metadata",
    "istio.alpn",
    "istio.stats",
];

/// Istio's own HTTP filter types (sent directly or in a TypedStruct), no-ops here for the same
/// reasons as [`ISTIO_NOOP_HTTP`], whatever the filter is named (waypoints name them
/// `waypoint_upstream_peer_metadata`, …).
const ISTIO_NOOP_HTTP_TYPES: &[&str] = &[
    "type.googleapis.com/io.istio.http.peer_metadata.Config",
    "type.googleapis.com/io.istio.http.metadata_exchange.Config",
    "type.googleapis.com/stats.PluginConfig",
    "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
];

/// Envoy filters Istio always inserts that have no effect here: gRPC stats are the Istio
/// metrics Isthmus emits anyway.
const NOOP_HTTP_TYPES: &[&str] = &["type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"];

const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

pub(super) const TRACING: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing",
    honoured: &[
        "client_sampling",
        "random_sampling",
        "overall_sampling",
        "provider",
        "custom_tags",
        "max_path_tag_length",
    ],
    // `verbose` adds per-filter log annotations (Isthmus' filters log none); a separate
    // upstream span (`spawn_upstream_span`) is not made: the one span per hop carries the
    // upstream tags, Envoy's sidecar model.
    ignored: &["verbose", "spawn_upstream_span"],
};

pub(super) const ZIPKIN: FieldPolicy = FieldPolicy {
    message: "envoy.config.trace.v3.ZipkinConfig",
    honoured: &[
        "collector_cluster",
        "collector_endpoint",
        "trace_id_128bit",
        "shared_span_context",
        "collector_endpoint_version",
        "collector_hostname",
    ],
    ignored: &[],
};

pub(super) const CUSTOM_TAG: FieldPolicy = FieldPolicy {
    message: "envoy.type.tracing.v3.CustomTag",
    honoured: &["tag", "literal", "environment", "request_header", "metadata"],
    ignored: &[],
};

const ZIPKIN_URL: &str = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig";
const OTEL_URL: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";

pub(super) const OTEL: FieldPolicy = FieldPolicy {
    message: "envoy.config.trace.v3.OpenTelemetryConfig",
    honoured: &[
        "grpc_service",
        "service_name",
        "max_cache_size",
        "set_telemetry_sdk_resource_attributes",
        "set_service_name_resource_attribute",
    ],
    ignored: &[],
};

pub(super) const OTEL_GRPC: FieldPolicy =
    FieldPolicy { message: "envoy.config.core.v3.GrpcService", honoured: &["envoy_grpc", "timeout"], ignored: &[] };

const UUID_REQUEST_ID: &str = "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig";

/// Converts an HTTP connection manager.
pub fn connection_manager(
    h: &proto::HttpConnectionManager,
    path: &Path,
    res: &Resources,
) -> Result<HttpConnectionManager, ConfigError> {
    use proto::http_connection_manager::{CodecType as C, RouteSpecifier as R};
    check(h, &HCM, path)?;
    let codec = match C::try_from(h.codec_type) {
        Ok(C::Auto) => CodecType::Auto,
        Ok(C::Http1) => CodecType::Http1,
        Ok(C::Http2) => CodecType::Http2,
        _ => return Err(path.err_at("codec_type", "only AUTO, HTTP1 and HTTP2 are supported")),
    };
    let routes = match &h.route_specifier {
        Some(R::RouteConfig(rc)) => {
            RouteSource::Inline(Arc::new(route::route_config(rc, &path.field("route_config"), res)?))
        }
        Some(R::Rds(r)) => {
            if r.route_config_name.is_empty() {
                return Err(path.field("rds").err_at("route_config_name", "is required"));
            }
            RouteSource::Rds(r.route_config_name.clone())
        }
        Some(R::ScopedRoutes(_)) => return Err(path.err_at("scoped_routes", "scoped routes are not supported")),
        None => return Err(path.err("route_config is required")),
    };
    let filters = http_filters(&h.http_filters, &path.field("http_filters"))?;
    let mut websocket = false;
    for (i, u) in h.upgrade_configs.iter().enumerate() {
        if u.upgrade_type.eq_ignore_ascii_case("websocket") {
            websocket = u.enabled.map(|e| e.value).unwrap_or(true);
        } else {
            return Err(path
                .field("upgrade_configs")
                .item(i, "")
                .err_at("upgrade_type", format!("\"{}\" is not supported (websocket only)", u.upgrade_type)));
        }
    }
    let idle = h.common_http_protocol_options.as_ref().and_then(|o| o.idle_timeout.as_ref());
    let limits = limits(h, path)?;
    Ok(HttpConnectionManager {
        stat_prefix: h.stat_prefix.clone(),
        codec,
        routes,
        use_remote_address: h.use_remote_address.map(|b| b.value).unwrap_or(false),
        generate_request_id: h.generate_request_id.map(|b| b.value).unwrap_or(true),
        access_log: super::access_log::access_logs(&h.access_log, &path.field("access_log"))?,
        idle_timeout: timeout(
            idle,
            Some(Duration::from_secs(3600)),
            &path.field("common_http_protocol_options").field("idle_timeout"),
        )?,
        request_timeout: timeout(h.request_timeout.as_ref(), None, &path.field("request_timeout"))?,
        drain_timeout: match &h.drain_timeout {
            Some(d) => super::common::duration(d, &path.field("drain_timeout"))?,
            None => Duration::from_secs(5),
        },
        stream_idle_timeout: timeout(
            h.stream_idle_timeout.as_ref(),
            Some(Duration::from_secs(300)),
            &path.field("stream_idle_timeout"),
        )?,
        max_stream_duration: timeout(
            h.common_http_protocol_options.as_ref().and_then(|o| o.max_stream_duration.as_ref()),
            None,
            &path.field("common_http_protocol_options").field("max_stream_duration"),
        )?,
        websocket,
        xfcc: xfcc(h, path)?,
        tracing: h.tracing.as_ref().map(|t| tracing(t, &path.field("tracing"))).transpose()?,
        request_id: request_id(h, &path.field("request_id_extension"))?,
        internal_cidrs: internal_cidrs(h, &path.field("internal_address_config"))?,
        proxy_100_continue: h.proxy_100_continue,
        filters,
        limits,
        normalize_path: h.normalize_path.is_some_and(|b| b.value),
        merge_slashes: h.merge_slashes,
        xff_trusted_hops: h.xff_num_trusted_hops,
        max_connection_duration: timeout(
            h.common_http_protocol_options.as_ref().and_then(|o| o.max_connection_duration.as_ref()),
            None,
            &path.field("common_http_protocol_options").field("max_connection_duration"),
        )?,
        request_headers_timeout: timeout(
            h.request_headers_timeout.as_ref(),
            Some(Duration::from_secs(30)),
            &path.field("request_headers_timeout"),
        )?,
    })
}

pub(super) const DOWNSTREAM_COMMON_OPTIONS: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.HttpProtocolOptions",
    honoured: &["idle_timeout", "max_headers_count", "max_connection_duration", "max_stream_duration"],
    ignored: &["headers_with_underscores_action", "max_requests_per_connection", "max_response_headers_kb"],
};

pub(super) const DOWNSTREAM_HTTP2: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.Http2ProtocolOptions",
    honoured: &["max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size"],
    // hyper's HTTP/2 server keeps its own HPACK table, frame-flood and reset-flood limits
    // (pending-accept resets 20, local error resets 1,024: the rapid-reset and CONTINUATION
    // protections); these tune Envoy's codec.
    ignored: &[
        "hpack_table_size",
        "allow_connect",
        "allow_metadata",
        "max_outbound_frames",
        "max_outbound_control_frames",
        "max_consecutive_inbound_frames_with_empty_payload",
        "max_inbound_priority_frames_per_stream",
        "max_inbound_window_update_frames_per_data_frame_sent",
        "stream_error_on_invalid_http_messaging",
        "override_stream_error_on_invalid_http_message",
        "custom_settings_parameters",
        "connection_keepalive",
        "use_oghttp2_codec",
        "max_metadata_size",
        "enable_huffman_encoding",
        "max_header_field_size_kb",
        "disallow_obs_text",
        "stream_reset_burst",
        "stream_reset_rate",
    ],
};

/// `max_request_headers_kb`, `max_headers_count` and the HTTP/2 stream and window settings.
fn limits(h: &proto::HttpConnectionManager, path: &Path) -> Result<crate::config::listener::HttpLimits, ConfigError> {
    let mut l = crate::config::listener::HttpLimits::default();
    if let Some(kb) = h.max_request_headers_kb.map(|v| v.value) {
        if !(1..=8192).contains(&kb) {
            return Err(path.err_at("max_request_headers_kb", format!("{kb} is not in [1, 8192]")));
        }
        l.max_request_headers_bytes = kb as usize * 1024;
    }
    if let Some(c) = &h.common_http_protocol_options {
        let cp = path.field("common_http_protocol_options");
        check(c, &DOWNSTREAM_COMMON_OPTIONS, &cp)?;
        if let Some(n) = c.max_headers_count.map(|v| v.value) {
            if n == 0 {
                return Err(cp.err_at("max_headers_count", "must be at least 1"));
            }
            l.max_headers_count = n as usize;
        }
    }
    if let Some(o) = &h.http2_protocol_options {
        let hp = path.field("http2_protocol_options");
        check(o, &DOWNSTREAM_HTTP2, &hp)?;
        l.h2_max_concurrent_streams = o.max_concurrent_streams.map(|v| v.value);
        l.h2_initial_stream_window = o.initial_stream_window_size.map(|v| v.value);
        l.h2_initial_connection_window = o.initial_connection_window_size.map(|v| v.value);
    }
    Ok(l)
}

/// `tracing`: sampling percentages (Envoy's defaults are 100 % each), span tags, the tracer.
fn tracing(t: &proto::http_connection_manager::Tracing, path: &Path) -> Result<Tracing, ConfigError> {
    check(t, &TRACING, path)?;
    let pct = |p: Option<&xds_client::protos::envoy::r#type::v3::Percent>, f: &str| -> Result<f64, ConfigError> {
        match p.map(|p| p.value) {
            None => Ok(100.0),
            Some(v) if (0.0..=100.0).contains(&v) => Ok(v),
            Some(v) => Err(path.err_at(f, format!("{v} is not a percentage in [0, 100]"))),
        }
    };
    let provider = t.provider.as_ref().map(|p| tracer(p, &path.field("provider"))).transpose()?;
    let custom_tags = t
        .custom_tags
        .iter()
        .enumerate()
        .map(|(i, c)| custom_tag(c, &path.field("custom_tags").item(i, &c.tag)))
        .collect::<Result<_, _>>()?;
    Ok(Tracing {
        client_sampling: pct(t.client_sampling.as_ref(), "client_sampling")?,
        random_sampling: pct(t.random_sampling.as_ref(), "random_sampling")?,
        overall_sampling: pct(t.overall_sampling.as_ref(), "overall_sampling")?,
        provider: provider.map(Arc::new),
        custom_tags,
        max_path_tag_length: t.max_path_tag_length.map_or(256, |v| v.value as usize),
    })
}

/// A tracer (`HttpConnectionManager.tracing.provider` or the bootstrap's `tracing.http`).
pub fn tracer(
    p: &xds_client::protos::envoy::config::trace::v3::tracing::Http,
    path: &Path,
) -> Result<Tracer, ConfigError> {
    use xds_client::protos::envoy::config::trace::v3::tracing::http::ConfigType;
    use xds_client::protos::envoy::config::trace::v3::zipkin_config::CollectorEndpointVersion as V;
    use xds_client::protos::envoy::config::trace::v3::ZipkinConfig;
    let Some(ConfigType::TypedConfig(any)) = &p.config_type else {
        return Err(path.err_at("typed_config", format!("is required (tracer \"{}\")", p.name)));
    };
    if any.type_url == OTEL_URL {
        return opentelemetry(any, &path.field("typed_config"));
    }
    if any.type_url != ZIPKIN_URL {
        return Err(path.err_at(
            "typed_config",
            format!(
                "tracer {} is not supported (envoy.tracers.zipkin and envoy.tracers.opentelemetry are)",
                any.type_url
            ),
        ));
    }
    let tp = path.field("typed_config");
    let z: ZipkinConfig =
        xds_client::json::unpack(any).map_err(|e| tp.err(format!("cannot decode ZipkinConfig: {e}")))?;
    check(&z, &ZIPKIN, &tp)?;
    if z.collector_cluster.is_empty() {
        return Err(tp.err_at("collector_cluster", "is required"));
    }
    if !z.collector_endpoint.starts_with('/') {
        return Err(tp.err_at("collector_endpoint", "must be a path starting with /"));
    }
    if !matches!(V::try_from(z.collector_endpoint_version), Ok(V::HttpJson)) {
        return Err(tp.err_at("collector_endpoint_version", "only HTTP_JSON (Zipkin v2 JSON) is supported"));
    }
    Ok(Tracer::Zipkin(Zipkin {
        collector_hostname: if z.collector_hostname.is_empty() {
            z.collector_cluster.clone()
        } else {
            z.collector_hostname.clone()
        },
        collector_cluster: z.collector_cluster,
        collector_endpoint: z.collector_endpoint,
        trace_id_128bit: z.trace_id_128bit,
        shared_span_context: z.shared_span_context.is_none_or(|b| b.value),
    }))
}

/// `OpenTelemetryConfig`: OTLP over gRPC to an Envoy cluster.
fn opentelemetry(any: &xds_client::protos::google::protobuf::Any, tp: &Path) -> Result<Tracer, ConfigError> {
    use xds_client::protos::envoy::config::core::v3::grpc_service::TargetSpecifier as T;
    use xds_client::protos::envoy::config::trace::v3::OpenTelemetryConfig;
    let o: OpenTelemetryConfig =
        xds_client::json::unpack(any).map_err(|e| tp.err(format!("cannot decode OpenTelemetryConfig: {e}")))?;
    check(&o, &OTEL, tp)?;
    let gp = tp.field("grpc_service");
    let Some(g) = &o.grpc_service else {
        return Err(gp.err("is required (OTLP over gRPC is the exporter Isthmus has)"));
    };
    check(g, &OTEL_GRPC, &gp)?;
    let Some(T::EnvoyGrpc(e)) = &g.target_specifier else {
        return Err(gp.err_at("envoy_grpc", "is required (google_grpc is not supported)"));
    };
    if e.cluster_name.is_empty() {
        return Err(gp.field("envoy_grpc").err_at("cluster_name", "is required"));
    }
    let five = std::time::Duration::from_secs(5);
    let timeout = timeout(g.timeout.as_ref(), Some(five), &gp.field("timeout"))?.unwrap_or(five);
    Ok(Tracer::OpenTelemetry(crate::config::listener::OpenTelemetry {
        cluster: e.cluster_name.clone(),
        authority: if e.authority.is_empty() { e.cluster_name.clone() } else { e.authority.clone() },
        timeout,
        service_name: if o.service_name.is_empty() { "unknown_service:envoy".into() } else { o.service_name.clone() },
        max_cache_size: o.max_cache_size.map_or(1024, |v| v.value as usize),
        sdk_attributes: o.set_telemetry_sdk_resource_attributes.is_none_or(|b| b.value),
        service_name_attribute: o.set_service_name_resource_attribute.is_none_or(|b| b.value),
    }))
}

fn custom_tag(
    c: &xds_client::protos::envoy::r#type::tracing::v3::CustomTag,
    path: &Path,
) -> Result<CustomTag, ConfigError> {
    use xds_client::protos::envoy::r#type::metadata::v3::metadata_kind::Kind;
    use xds_client::protos::envoy::r#type::tracing::v3::custom_tag::Type;
    check(c, &CUSTOM_TAG, path)?;
    if c.tag.is_empty() {
        return Err(path.err_at("tag", "is required"));
    }
    let value = match &c.r#type {
        Some(Type::Literal(l)) => TagValue::Literal(l.value.clone()),
        Some(Type::Environment(e)) if !e.name.is_empty() => {
            TagValue::Environment { name: e.name.clone(), default: e.default_value.clone() }
        }
        Some(Type::RequestHeader(h)) => TagValue::RequestHeader {
            name: http::HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                path.field("request_header").err_at("name", format!("\"{}\" is not a header name", h.name))
            })?,
            default: h.default_value.clone(),
        },
        Some(Type::Metadata(m)) => match m.kind.as_ref().and_then(|k| k.kind.as_ref()) {
            Some(Kind::Request(_)) => TagValue::RequestMetadata { default: m.default_value.clone() },
            _ => {
                return Err(path.field("metadata").err_at("kind", "only request (dynamic) metadata tags are supported"))
            }
        },
        Some(Type::Environment(_)) => return Err(path.field("environment").err_at("name", "is required")),
        _ => return Err(path.err("one of literal, environment, request_header or metadata is required")),
    };
    Ok(CustomTag { tag: c.tag.clone(), value })
}

/// `internal_address_config`: which peers are internal (Unix-socket peers do not occur:
/// listeners are TCP).
fn internal_cidrs(
    h: &proto::HttpConnectionManager,
    path: &Path,
) -> Result<Vec<crate::config::listener::CidrRange>, ConfigError> {
    let Some(c) = &h.internal_address_config else { return Ok(Vec::new()) };
    check(c, &INTERNAL_ADDRESS, path)?;
    c.cidr_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| super::common::cidr(r, &path.field("cidr_ranges").item(i, "")))
        .collect()
}

pub(super) const INTERNAL_ADDRESS: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig",
    honoured: &["cidr_ranges"],
    // Listeners are TCP: no request arrives over a Unix socket.
    ignored: &["unix_sockets"],
};

/// `request_id_extension`: only Envoy's UUID extension (what istiod sends) exists.
fn request_id(h: &proto::HttpConnectionManager, path: &Path) -> Result<RequestId, ConfigError> {
    use xds_client::protos::envoy::extensions::request_id::uuid::v3::UuidRequestIdConfig;
    let Some(any) = h.request_id_extension.as_ref().and_then(|r| r.typed_config.as_ref()) else {
        return Ok(RequestId::default());
    };
    if any.type_url != UUID_REQUEST_ID {
        return Err(path.err_at("typed_config", format!("{} is not supported (only {UUID_REQUEST_ID})", any.type_url)));
    }
    let cfg: UuidRequestIdConfig = xds_client::json::unpack(any)
        .map_err(|e| path.err_at("typed_config", format!("cannot decode {}: {e}", any.type_url)))?;
    Ok(RequestId {
        pack_trace_reason: cfg.pack_trace_reason.is_none_or(|b| b.value),
        use_request_id_for_trace_sampling: cfg.use_request_id_for_trace_sampling.is_none_or(|b| b.value),
    })
}

/// The router must be last; fault, CORS, RBAC and local rate limits become the policy chain;
/// Istio's no-op filters are skipped; unknown optional filters are skipped as Envoy does with
/// `is_optional`; unknown required ones are refused.
fn http_filters(filters: &[proto::HttpFilter], path: &Path) -> Result<Vec<HttpFilter>, ConfigError> {
    use proto::http_filter::ConfigType;
    let Some(last) = filters.last() else {
        return Err(path.err("envoy.filters.http.router is required as the last HTTP filter"));
    };
    let mut chain = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let any = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        };
        let inner = any.map(super::common::effective_type).unwrap_or_default();
        let url = any.map_or("", |a| a.type_url.as_str());
        let is_router = url == ROUTER || (url.is_empty() && f.name == "envoy.filters.http.router");
        let is_last = std::ptr::eq(f, last);
        if is_router && is_last {
            continue;
        }
        let fp = path.item(i, &f.name);
        if is_router {
            return Err(fp.err("the router must be the last HTTP filter"));
        }
        if f.disabled {
            // Disabled unless a route enables it with its own config: not supported, since the
            // listener-level config is what a route override replaces.
            return Err(fp.err_at("disabled", "filters disabled by default are not supported"));
        }
        if let Some(kind) =
            any.map(|a| super::filters::http_filter(a, &fp.field("typed_config"))).transpose()?.flatten()
        {
            chain.push(HttpFilter { name: Arc::from(f.name.as_str()), kind, stats: Arc::default() });
            continue;
        }
        if f.is_optional
            || ISTIO_NOOP_HTTP.contains(&f.name.as_str())
            || NOOP_HTTP_TYPES.contains(&url)
            || ISTIO_NOOP_HTTP_TYPES.contains(&inner.as_str())
        {
            continue;
        }
        return Err(fp.err(format!(
            "HTTP filter {} is not supported (mark it is_optional to skip it)",
            if url.is_empty() { &f.name } else { url }
        )));
    }
    if !matches!(&last.config_type, Some(ConfigType::TypedConfig(a)) if a.type_url == ROUTER)
        && last.name != "envoy.filters.http.router"
    {
        return Err(path.err("envoy.filters.http.router must be the last HTTP filter"));
    }
    Ok(chain)
}

fn xfcc(h: &proto::HttpConnectionManager, path: &Path) -> Result<crate::config::listener::Xfcc, ConfigError> {
    use crate::config::listener::{Xfcc, XfccMode};
    use proto::http_connection_manager::ForwardClientCertDetails as F;
    let mode = match F::try_from(h.forward_client_cert_details) {
        Ok(F::ForwardOnly) => XfccMode::ForwardOnly,
        Ok(F::AppendForward) => XfccMode::AppendForward,
        Ok(F::SanitizeSet) => XfccMode::SanitizeSet,
        Ok(F::AlwaysForwardOnly) => XfccMode::AlwaysForwardOnly,
        _ => XfccMode::Sanitize,
    };
    let set = h.set_current_client_cert_details.unwrap_or_default();
    let sp = path.field("set_current_client_cert_details");
    if set.chain {
        return Err(sp.err_at("chain", "is not supported (only subject, cert, uri and dns)"));
    }
    Ok(Xfcc {
        mode,
        uri: set.uri,
        dns: set.dns,
        subject: set.subject.map(|b| b.value).unwrap_or(false),
        cert: set.cert,
    })
}
