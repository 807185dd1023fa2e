//! `HttpConnectionManager` → model: codec, routes, HTTP filters (router only), options.

use std::sync::Arc;
use std::time::Duration;

use xds_client::protos::envoy::extensions::filters::network::http_connection_manager::v3 as proto;

use super::common::timeout;
use super::fields::{check, FieldPolicy};
use super::{route, Resources};
use crate::config::error::{ConfigError, Path};
use crate::config::listener::{CodecType, HttpConnectionManager, RequestId, RouteSource, Tracing};

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
    ],
    ignored: &[
        // Validated and kept in the model (sampling percentages, provider), but no span is
        // created or exported yet: listed as ignored so nothing claims tracing happens.
        "tracing",
        "server_name",
        "common_http_protocol_options",
        "request_timeout",
        "http_protocol_options",
        "http2_protocol_options",
        "stream_idle_timeout",
        "drain_timeout",
        "delayed_close_timeout",
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
        "xff_num_trusted_hops",
        "skip_xff_append",
        "internal_address_config",
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

/// Envoy filters Istio always inserts that do nothing unless a route configures them.
const NOOP_HTTP_TYPES: &[&str] = &[
    "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
];

const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const CORS: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";

const TRACING: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing",
    honoured: &["client_sampling", "random_sampling", "overall_sampling", "provider"],
    // Span content only: they shape spans, and no span is exported yet (see `Tracing`).
    ignored: &["verbose", "max_path_tag_length", "custom_tags", "spawn_upstream_span"],
};

/// Tracers whose config Isthmus reads (the ones the tracing work will export to).
const TRACERS: &[(&str, &str)] = &[
    ("envoy.tracers.zipkin", "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig"),
    ("envoy.tracers.opentelemetry", "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"),
];

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
    http_filters(&h.http_filters, &path.field("http_filters"))?;
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
    Ok(HttpConnectionManager {
        stat_prefix: h.stat_prefix.clone(),
        codec,
        routes,
        use_remote_address: h.use_remote_address.map(|b| b.value).unwrap_or(false),
        generate_request_id: h.generate_request_id.map(|b| b.value).unwrap_or(true),
        access_log: !h.access_log.is_empty(),
        idle_timeout: timeout(
            idle,
            Some(Duration::from_secs(3600)),
            &path.field("common_http_protocol_options").field("idle_timeout"),
        )?,
        request_timeout: timeout(h.request_timeout.as_ref(), None, &path.field("request_timeout"))?,
        websocket,
        xfcc: xfcc(h, path)?,
        tracing: h.tracing.as_ref().map(|t| tracing(t, &path.field("tracing"))).transpose()?,
        request_id: request_id(h, &path.field("request_id_extension"))?,
        proxy_100_continue: h.proxy_100_continue,
    })
}

/// `tracing`: the sampling percentages and the provider are validated and kept; Envoy's
/// defaults are 100 % each.
fn tracing(t: &proto::http_connection_manager::Tracing, path: &Path) -> Result<Tracing, ConfigError> {
    check(t, &TRACING, path)?;
    let pct = |p: Option<&xds_client::protos::envoy::r#type::v3::Percent>, f: &str| -> Result<f64, ConfigError> {
        match p.map(|p| p.value) {
            None => Ok(100.0),
            Some(v) if (0.0..=100.0).contains(&v) => Ok(v),
            Some(v) => Err(path.err_at(f, format!("{v} is not a percentage in [0, 100]"))),
        }
    };
    let provider = match &t.provider {
        None => None,
        Some(p) => {
            use xds_client::protos::envoy::config::trace::v3::tracing::http::ConfigType;
            let url = match &p.config_type {
                Some(ConfigType::TypedConfig(a)) => a.type_url.as_str(),
                None => "",
            };
            match TRACERS.iter().find(|(name, u)| *u == url || (url.is_empty() && *name == p.name)) {
                Some((name, _)) => Some((*name).to_string()),
                None => {
                    return Err(path.field("provider").err(format!(
                        "tracer {} is not supported (envoy.tracers.zipkin, envoy.tracers.opentelemetry)",
                        if url.is_empty() { &p.name } else { url }
                    )))
                }
            }
        }
    };
    Ok(Tracing {
        client_sampling: pct(t.client_sampling.as_ref(), "client_sampling")?,
        random_sampling: pct(t.random_sampling.as_ref(), "random_sampling")?,
        overall_sampling: pct(t.overall_sampling.as_ref(), "overall_sampling")?,
        provider,
    })
}

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

/// Only the router is supported; it must be last. Unknown optional filters are skipped as
/// Envoy does with `is_optional`; unknown required ones are refused.
fn http_filters(filters: &[proto::HttpFilter], path: &Path) -> Result<(), ConfigError> {
    use proto::http_filter::ConfigType;
    let Some(last) = filters.last() else {
        return Err(path.err("envoy.filters.http.router is required as the last HTTP filter"));
    };
    for (i, f) in filters.iter().enumerate() {
        let inner = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => super::common::effective_type(any),
            _ => String::new(),
        };
        let url = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => any.type_url.as_str(),
            _ => "",
        };
        let is_router = url == ROUTER || (url.is_empty() && f.name == "envoy.filters.http.router");
        let is_last = std::ptr::eq(f, last);
        if is_router && is_last {
            continue;
        }
        if is_router {
            return Err(path.item(i, &f.name).err("the router must be the last HTTP filter"));
        }
        // Fault and CORS are no-ops only while unconfigured (istiod's default): a filter-level
        // abort, delay or CORS policy would otherwise be silently dropped.
        let configured = matches!(&f.config_type, Some(ConfigType::TypedConfig(a)) if !a.value.is_empty());
        if configured && (url == FAULT || url == CORS) {
            return Err(path.item(i, &f.name).err(format!(
                "{url} with a configuration is not supported yet (only istiod's empty default); refused so \
                 the policy is never silently unapplied"
            )));
        }
        if f.is_optional
            || ISTIO_NOOP_HTTP.contains(&f.name.as_str())
            || NOOP_HTTP_TYPES.contains(&url)
            || ISTIO_NOOP_HTTP_TYPES.contains(&inner.as_str())
        {
            continue;
        }
        return Err(path.item(i, &f.name).err(format!(
            "HTTP filter {} is not supported (mark it is_optional to skip it)",
            if url.is_empty() { &f.name } else { url }
        )));
    }
    if !matches!(&last.config_type, Some(ConfigType::TypedConfig(a)) if a.type_url == ROUTER)
        && last.name != "envoy.filters.http.router"
    {
        return Err(path.err("envoy.filters.http.router must be the last HTTP filter"));
    }
    Ok(())
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
