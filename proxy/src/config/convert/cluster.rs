//! `Cluster` (and its `ClusterLoadAssignment`) → model.

use std::time::Duration;

use xds_client::protos::envoy::config::cluster::v3 as proto;
use xds_client::protos::envoy::config::core::v3 as core;
use xds_client::protos::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;

use super::common::{duration, timeout};
use super::endpoint::{load_assignment, string_fields};
use super::fields::{check, FieldPolicy};
use crate::config::cluster::*;
use crate::config::error::{ConfigError, Path};

pub(super) const CLUSTER: FieldPolicy = FieldPolicy {
    message: "envoy.config.cluster.v3.Cluster",
    honoured: &[
        "upstream_connection_options",
        "name",
        "type",
        "connect_timeout",
        "lb_policy",
        "load_assignment",
        "eds_cluster_config",
        "circuit_breakers",
        "typed_extension_protocol_options",
        "http2_protocol_options",
        "common_lb_config",
        "dns_refresh_rate",
        "least_request_lb_config",
        "ring_hash_lb_config",
        "maglev_lb_config",
        "outlier_detection",
        "metadata",
        "health_checks",
        "upstream_bind_config",
        "transport_socket",
        "transport_socket_matches",
        "max_requests_per_connection",
        "protocol_selection",
    ],
    ignored: &[
        "alt_stat_name",
        "per_connection_buffer_limit_bytes",
        "dns_lookup_family",
        "respect_dns_ttl",
        "cleanup_interval",
        "track_cluster_stats",
        "close_connections_on_host_health_failure",
        "ignore_health_on_host_removal",
        "track_timeout_budgets",
        "filters",
    ],
};

pub(super) const COMMON_LB: FieldPolicy = FieldPolicy {
    message: "envoy.config.cluster.v3.Cluster.CommonLbConfig",
    honoured: &["healthy_panic_threshold", "locality_weighted_lb_config", "zone_aware_lb_config"],
    ignored: &["update_merge_window", "ignore_new_hosts_until_first_hc", "close_connections_on_host_set_change"],
};

pub(super) const THRESHOLDS: FieldPolicy = FieldPolicy {
    message: "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
    honoured: &["priority", "max_connections", "max_pending_requests", "max_requests", "max_retries"],
    ignored: &["track_remaining", "max_connection_pools"],
};

pub(super) const HTTP_OPTIONS: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    honoured: &["explicit_http_config", "use_downstream_protocol_config", "common_http_protocol_options"],
    ignored: &["upstream_http_protocol_options"],
};

/// Cluster metadata namespace for Istio's `localityLbSetting` (proxy-side failover).
pub const LOCALITY_LB_KEY: &str = "isthmus.io/locality_lb";
/// Cluster metadata namespace for the opt-in host policy (`{policy: PEAK_EWMA}`).
pub const LB_KEY: &str = "isthmus.io/lb";
/// Cluster metadata namespace for latency outliers (`{latency: {factor, intervals}}`).
pub const OUTLIER_KEY: &str = "isthmus.io/outlier";
const BIND_CONFIG: FieldPolicy =
    FieldPolicy { message: "envoy.config.core.v3.BindConfig", honoured: &["source_address"], ignored: &["freebind"] };

pub(super) const SOCKET_MATCH: FieldPolicy = FieldPolicy {
    message: "envoy.config.cluster.v3.Cluster.TransportSocketMatch",
    honoured: &["name", "match", "transport_socket"],
    ignored: &[],
};

fn transport(c: &proto::Cluster, path: &Path) -> Result<Transport, ConfigError> {
    let default = match &c.transport_socket {
        Some(ts) => super::tls::upstream(ts, &path.field("transport_socket"))?,
        None => None,
    };
    let mut matches = Vec::new();
    for (i, m) in c.transport_socket_matches.iter().enumerate() {
        let p = path.field("transport_socket_matches").item(i, &m.name);
        check(m, &SOCKET_MATCH, &p)?;
        let tls = match &m.transport_socket {
            Some(ts) => super::tls::upstream(ts, &p.field("transport_socket"))?,
            None => return Err(p.err_at("transport_socket", "is required")),
        };
        if let Some((k, _)) = m.r#match.as_ref().and_then(|s| {
            s.fields.iter().find(|(_, v)| {
                !matches!(
                    v.kind,
                    Some(
                        xds_client::protos::google::protobuf::value::Kind::StringValue(_)
                            | xds_client::protos::google::protobuf::value::Kind::BoolValue(_)
                            | xds_client::protos::google::protobuf::value::Kind::NumberValue(_)
                    )
                )
            })
        }) {
            // Dropping it would turn the entry into a catch-all.
            return Err(p.field("match").err_at(k, "only string, number or bool values can be matched"));
        }
        let labels = m.r#match.as_ref().map(string_fields).unwrap_or_default();
        matches.push(SocketMatch { name: m.name.clone(), labels, tls });
    }
    Ok(Transport { default, matches })
}

const HTTP_OPTIONS_URL: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Converts a cluster; `path` names it (`static_resources.clusters[2] "web"`).
pub fn cluster(c: &proto::Cluster, path: &Path) -> Result<Cluster, ConfigError> {
    check(c, &CLUSTER, path)?;
    if c.name.is_empty() {
        return Err(path.err_at("name", "is required"));
    }
    let discovery = discovery(c, path)?;
    let lb_policy = lb_policy(c, path)?;
    if discovery == Discovery::OriginalDst && lb_policy != LbPolicy::ClusterProvided {
        return Err(path.err_at("lb_policy", "ORIGINAL_DST clusters need CLUSTER_PROVIDED"));
    }
    let connect_timeout = match &c.connect_timeout {
        Some(d) => duration(d, &path.field("connect_timeout"))?,
        None => Duration::from_secs(5),
    };
    let Assignment { endpoints, policy } = match &c.load_assignment {
        Some(la) => load_assignment(la, &path.field("load_assignment"))?,
        None => Assignment::default(),
    };
    let dns = matches!(discovery, Discovery::StrictDns | Discovery::LogicalDns);
    for le in &endpoints {
        for e in &le.endpoints {
            if let EndpointAddress::Dns { host, .. } = &e.address {
                if !dns {
                    return Err(path
                        .field("load_assignment")
                        .err(format!("\"{host}\" is not an IP address; use STRICT_DNS or LOGICAL_DNS for names")));
                }
            }
        }
    }
    if discovery == Discovery::LogicalDns && endpoints.iter().map(|l| l.endpoints.len()).sum::<usize>() != 1 {
        return Err(path.err_at("load_assignment", "LOGICAL_DNS clusters take exactly one endpoint"));
    }
    let (healthy_panic_threshold, locality_weighted, zone_aware) = common_lb(c, path)?;
    let locality_lb = match c.metadata.as_ref().and_then(|m| m.filter_metadata.get(LOCALITY_LB_KEY)) {
        Some(s) => Some(crate::locality::setting::parse(&super::common::struct_to_json(s)).map_err(|(f, m)| {
            path.field("metadata").field("filter_metadata").field(&format!("\"{LOCALITY_LB_KEY}\"")).err_at(&f, m)
        })?),
        None => None,
    };
    let locality_weighted = locality_weighted
        || locality_lb
            .as_ref()
            .is_some_and(|s| !s.failover.is_empty() || !s.failover_priority.is_empty() || !s.distribute.is_empty());
    let meta =
        |key: &str| c.metadata.as_ref().and_then(|m| m.filter_metadata.get(key)).map(super::common::struct_to_json);
    let mpath = |key: &str| path.field("metadata").field("filter_metadata").field(&format!("\"{key}\""));
    let mut outlier = c
        .outlier_detection
        .as_ref()
        .map(|o| super::outlier::outlier_detection(o, &path.field("outlier_detection")))
        .transpose()?;
    if let Some(v) = meta(OUTLIER_KEY) {
        let p = mpath(OUTLIER_KEY);
        let Some(o) = outlier.as_mut() else {
            return Err(p.err("latency outliers need outlier_detection (its gate and ejection times apply)"));
        };
        o.latency = Some(super::outlier::latency(&v, &p)?);
    }
    let source_address = source_address(c, path)?;
    let health_check = super::health::health_checks(&c.health_checks, &c.name, &path.field("health_checks"))?;
    let mut lb_policy = lb_policy;
    if let Some(v) = meta(LB_KEY) {
        match v.get("policy").and_then(|x| x.as_str()) {
            Some("PEAK_EWMA") => lb_policy = LbPolicy::PeakEwma,
            other => return Err(mpath(LB_KEY).err_at("policy", format!("{other:?}: only PEAK_EWMA is supported"))),
        }
    }
    let (upstream_protocol, idle_timeout, from_options, h2_keepalive) = protocol(c, path)?;
    #[allow(deprecated)]
    let max_requests_per_connection = match (c.max_requests_per_connection.map(|v| v.value), from_options) {
        (_, Some(n)) | (Some(n), None) => Some(n),
        (None, None) => None,
    };
    match max_requests_per_connection {
        None | Some(1) => {}
        Some(n) => {
            return Err(path.err_at(
                "max_requests_per_connection",
                format!("{n}: only 1 (a new upstream connection per request) is supported"),
            ))
        }
    }
    let transport = transport(c, path)?;
    Ok(Cluster {
        transport,
        name: c.name.clone(),
        discovery,
        connect_timeout,
        lb_policy,
        endpoints,
        policy,
        outlier,
        locality_weighted,
        locality_lb,
        zone_aware,
        source_address,
        health_check,
        circuit_breakers: circuit_breakers(c.circuit_breakers.as_ref(), &path.field("circuit_breakers"))?,
        upstream_protocol,
        healthy_panic_threshold,
        #[allow(deprecated)]
        dns_refresh_rate: match &c.dns_refresh_rate {
            Some(d) => duration(d, &path.field("dns_refresh_rate"))?.max(Duration::from_millis(1)),
            None => Duration::from_secs(5),
        },
        idle_timeout,
        max_requests_per_connection,
        h2_keepalive,
        tcp_keepalive: tcp_keepalive(
            c.upstream_connection_options.as_ref(),
            &path.field("upstream_connection_options"),
        )?,
        choice_count: match &c.lb_config {
            Some(proto::cluster::LbConfig::LeastRequestLbConfig(l)) => {
                l.choice_count.map(|v| v.value).unwrap_or(2).max(2)
            }
            _ => 2,
        },
    })
}

/// `common_lb_config`: the panic threshold (percent), locality weighting and zone-aware routing.
fn common_lb(c: &proto::Cluster, path: &Path) -> Result<(f64, bool, ZoneAware), ConfigError> {
    let mut zone_aware = ZoneAware::default();
    let (threshold, locality_weighted) = match &c.common_lb_config {
        Some(lb) => {
            let lp = path.field("common_lb_config");
            check(lb, &COMMON_LB, &lp)?;
            let t = lb.healthy_panic_threshold.map(|p| p.value).unwrap_or(50.0);
            if !(0.0..=100.0).contains(&t) {
                return Err(lp.err_at("healthy_panic_threshold", format!("{t} is not a percentage")));
            }
            use proto::cluster::common_lb_config::LocalityConfigSpecifier as L;
            let lw = match &lb.locality_config_specifier {
                Some(L::LocalityWeightedLbConfig(_)) => true,
                Some(L::ZoneAwareLbConfig(z)) => {
                    let re = z.routing_enabled.map(|p| p.value).unwrap_or(100.0);
                    if !(0.0..=100.0).contains(&re) {
                        return Err(lp
                            .field("zone_aware_lb_config")
                            .err_at("routing_enabled", format!("{re} is not a percentage")));
                    }
                    zone_aware = ZoneAware {
                        routing_enabled: re,
                        min_cluster_size: z.min_cluster_size.map(|v| v.value).unwrap_or(6),
                        fail_traffic_on_panic: z.fail_traffic_on_panic,
                    };
                    false
                }
                None => false,
            };
            (t, lw)
        }
        None => (50.0, false),
    };
    Ok((threshold, locality_weighted, zone_aware))
}

/// `upstream_bind_config.source_address`: the IP upstream connections leave from.
fn source_address(c: &proto::Cluster, path: &Path) -> Result<Option<std::net::IpAddr>, ConfigError> {
    Ok(match &c.upstream_bind_config {
        Some(b) => {
            let bp = path.field("upstream_bind_config");
            check(b, &BIND_CONFIG, &bp)?;
            match &b.source_address {
                Some(sa) => {
                    let ip = sa.address.parse().map_err(|_| {
                        bp.field("source_address").err_at("address", format!("\"{}\" is not an IP address", sa.address))
                    })?;
                    Some(ip)
                }
                None => None,
            }
        }
        None => None,
    })
}

/// `type` / `cluster_type` → how hosts are found.
fn discovery(c: &proto::Cluster, path: &Path) -> Result<Discovery, ConfigError> {
    use proto::cluster::{ClusterDiscoveryType as T, DiscoveryType as D};
    Ok(match &c.cluster_discovery_type {
        None => Discovery::Static,
        Some(T::Type(t)) => match D::try_from(*t) {
            Ok(D::Static) => Discovery::Static,
            Ok(D::StrictDns) => Discovery::StrictDns,
            Ok(D::LogicalDns) => Discovery::LogicalDns,
            Ok(D::Eds) => Discovery::Eds {
                service_name: c
                    .eds_cluster_config
                    .as_ref()
                    .map(|e| e.service_name.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| c.name.clone()),
            },
            Ok(D::OriginalDst) => Discovery::OriginalDst,
            Err(_) => return Err(path.err_at("type", format!("unknown discovery type {t}"))),
        },
        Some(T::ClusterType(_)) => return Err(path.err_at("cluster_type", "custom cluster types are not supported")),
    })
}

/// `lb_policy` with its ring/Maglev options, validated as Envoy validates them.
fn lb_policy(c: &proto::Cluster, path: &Path) -> Result<LbPolicy, ConfigError> {
    use proto::cluster::LbPolicy as L;
    Ok(match L::try_from(c.lb_policy) {
        Ok(L::RoundRobin) => LbPolicy::RoundRobin,
        Ok(L::LeastRequest) => LbPolicy::LeastRequest,
        Ok(L::Random) => LbPolicy::Random,
        Ok(L::ClusterProvided) => LbPolicy::ClusterProvided,
        Ok(L::RingHash) => {
            use crate::balance::hashing::{DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, RING_SIZE_LIMIT};
            let (min, max) = match &c.lb_config {
                Some(proto::cluster::LbConfig::RingHashLbConfig(r)) => {
                    if r.hash_function != 0 {
                        return Err(path
                            .field("ring_hash_lb_config")
                            .err_at("hash_function", "only XX_HASH is supported"));
                    }
                    (
                        r.minimum_ring_size.map(|v| v.value).unwrap_or(DEFAULT_MIN_RING_SIZE),
                        r.maximum_ring_size.map(|v| v.value).unwrap_or(DEFAULT_MAX_RING_SIZE),
                    )
                }
                _ => (DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE),
            };
            if min == 0 || min > max || max > RING_SIZE_LIMIT {
                return Err(path.err_at("ring_hash_lb_config", format!("ring sizes {min}..{max} are invalid")));
            }
            LbPolicy::RingHash { min, max }
        }
        Ok(L::Maglev) => {
            let table_size = match &c.lb_config {
                Some(proto::cluster::LbConfig::MaglevLbConfig(m)) => m.table_size.map(|v| v.value),
                _ => None,
            }
            .unwrap_or(crate::balance::hashing::DEFAULT_MAGLEV_TABLE_SIZE);
            if !crate::balance::hashing::is_valid_maglev_table_size(table_size) {
                return Err(path
                    .field("maglev_lb_config")
                    .err_at("table_size", format!("{table_size} is not a prime up to 5000011")));
            }
            LbPolicy::Maglev { table_size }
        }
        Ok(other) => return Err(path.err_at("lb_policy", format!("{} is not supported", other.as_str_name()))),
        Err(_) => return Err(path.err_at("lb_policy", format!("unknown value {}", c.lb_policy))),
    })
}

pub(super) const UPSTREAM_CONNECTION: FieldPolicy = FieldPolicy {
    message: "envoy.config.cluster.v3.UpstreamConnectionOptions",
    honoured: &["tcp_keepalive"],
    // Interface names and happy eyeballs concern DNS/IPv6 dialling, which Isthmus does not do.
    ignored: &["set_local_interface_name_on_upstream_connections", "happy_eyeballs_config"],
};

pub(super) const TCP_KEEPALIVE: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.TcpKeepalive",
    honoured: &["keepalive_probes", "keepalive_time", "keepalive_interval"],
    ignored: &[],
};

pub(super) const HTTP2_OPTIONS: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.Http2ProtocolOptions",
    honoured: &["connection_keepalive"],
    // hyper's HTTP/2 client keeps its own windows, table size, stream limits and flood
    // protections; these tune Envoy's codec and have no counterpart here.
    ignored: &[
        "hpack_table_size",
        "max_concurrent_streams",
        "initial_stream_window_size",
        "initial_connection_window_size",
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
        "use_oghttp2_codec",
        "max_metadata_size",
        "enable_huffman_encoding",
        "max_header_field_size_kb",
        "disallow_obs_text",
        "stream_reset_burst",
        "stream_reset_rate",
    ],
};

pub(super) const KEEPALIVE: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.KeepaliveSettings",
    honoured: &["interval", "timeout"],
    // A PING after idleness alone is what `interval` already gives an idle connection.
    ignored: &["interval_jitter", "connection_idle_interval"],
};

/// `upstream_connection_options.tcp_keepalive`.
fn tcp_keepalive(
    o: Option<&proto::UpstreamConnectionOptions>,
    path: &Path,
) -> Result<Option<crate::config::cluster::TcpKeepalive>, ConfigError> {
    let Some(o) = o else { return Ok(None) };
    check(o, &UPSTREAM_CONNECTION, path)?;
    let Some(k) = &o.tcp_keepalive else { return Ok(None) };
    let kp = path.field("tcp_keepalive");
    check(k, &TCP_KEEPALIVE, &kp)?;
    let secs = |v: Option<u32>| v.filter(|s| *s > 0).map(|s| Duration::from_secs(u64::from(s)));
    Ok(Some(crate::config::cluster::TcpKeepalive {
        time: secs(k.keepalive_time.map(|v| v.value)),
        interval: secs(k.keepalive_interval.map(|v| v.value)),
        probes: k.keepalive_probes.map(|v| v.value).filter(|p| *p > 0),
    }))
}

/// `http2_protocol_options` (typed or the deprecated cluster field): the keepalive.
fn h2_options(
    o: &xds_client::protos::envoy::config::core::v3::Http2ProtocolOptions,
    path: &Path,
) -> Result<Option<crate::config::cluster::H2Keepalive>, ConfigError> {
    check(o, &HTTP2_OPTIONS, path)?;
    let Some(k) = &o.connection_keepalive else { return Ok(None) };
    let kp = path.field("connection_keepalive");
    check(k, &KEEPALIVE, &kp)?;
    let Some(i) = &k.interval else { return Ok(None) };
    let interval = duration(i, &kp.field("interval"))?;
    let timeout = match &k.timeout {
        Some(t) => duration(t, &kp.field("timeout"))?,
        None => return Err(kp.err_at("timeout", "is required")),
    };
    if interval.is_zero() || timeout.is_zero() {
        return Ok(None);
    }
    Ok(Some(crate::config::cluster::H2Keepalive { interval, timeout }))
}

const COMMON_HTTP_OPTIONS: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.HttpProtocolOptions",
    honoured: &["idle_timeout", "max_requests_per_connection"],
    ignored: &[],
};

type Protocol = (UpstreamProtocol, Option<Duration>, Option<u32>, Option<crate::config::cluster::H2Keepalive>);

fn protocol(c: &proto::Cluster, path: &Path) -> Result<Protocol, ConfigError> {
    use xds_client::protos::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        explicit_http_config::ProtocolConfig as P, UpstreamProtocolOptions as U,
    };
    #[allow(deprecated)]
    let mut proto_choice =
        if c.http2_protocol_options.is_some() { UpstreamProtocol::Http2 } else { UpstreamProtocol::Http1 };
    // The deprecated `protocol_selection` (older istiods): USE_DOWNSTREAM_PROTOCOL is what
    // `use_downstream_protocol_config` says today; typed options below still win.
    #[allow(deprecated)]
    if c.protocol_selection == proto::cluster::ClusterProtocolSelection::UseDownstreamProtocol as i32 {
        proto_choice = UpstreamProtocol::Downstream;
    }
    let mut idle = Some(Duration::from_secs(3600));
    let mut max_rpc = None;
    #[allow(deprecated)]
    let mut keepalive = match &c.http2_protocol_options {
        Some(o) => h2_options(o, &path.field("http2_protocol_options"))?,
        None => None,
    };
    for (key, any) in &c.typed_extension_protocol_options {
        let p = path.field("typed_extension_protocol_options").field(key);
        if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" && !any.type_url.ends_with(HTTP_OPTIONS_URL)
        {
            return Err(p.err("only envoy.extensions.upstreams.http.v3.HttpProtocolOptions is supported"));
        }
        let o: HttpProtocolOptions = xds_client::json::unpack(any).map_err(|e| p.err(format!("cannot decode: {e}")))?;
        check(&o, &HTTP_OPTIONS, &p)?;
        if let Some(u) = &o.upstream_http_protocol_options {
            // Istio sets these for DestinationRule TLS without `sni`/`subjectAltNames`; ignoring
            // them would send no SNI and check no name (any trusted certificate would pass).
            let up = p.field("upstream_http_protocol_options");
            if u.auto_sni {
                return Err(up.err_at("auto_sni", "is not supported (set UpstreamTlsContext.sni)"));
            }
            if u.auto_san_validation {
                return Err(up.err_at("auto_san_validation", "is not supported (set match_typed_subject_alt_names)"));
            }
        }
        proto_choice = match &o.upstream_protocol_options {
            Some(U::ExplicitHttpConfig(e)) => match &e.protocol_config {
                Some(P::Http2ProtocolOptions(h2)) => {
                    keepalive =
                        h2_options(h2, &p.field("explicit_http_config").field("http2_protocol_options"))?.or(keepalive);
                    UpstreamProtocol::Http2
                }
                Some(P::HttpProtocolOptions(_)) | None => UpstreamProtocol::Http1,
                Some(P::Http3ProtocolOptions(_)) => return Err(p.err("HTTP/3 upstreams are not supported")),
            },
            Some(U::UseDownstreamProtocolConfig(_)) => UpstreamProtocol::Downstream,
            Some(U::AutoConfig(_)) => {
                return Err(p.err_at(
                    "auto_config",
                    "ALPN-negotiated upstream protocol is not supported; use explicit_http_config",
                ))
            }
            None => proto_choice,
        };
        if let Some(common) = &o.common_http_protocol_options {
            check(common, &COMMON_HTTP_OPTIONS, &p.field("common_http_protocol_options"))?;
            max_rpc = common.max_requests_per_connection.map(|v| v.value).or(max_rpc);
            idle = timeout(
                common.idle_timeout.as_ref(),
                idle,
                &p.field("common_http_protocol_options").field("idle_timeout"),
            )?;
        }
    }
    Ok((proto_choice, idle, max_rpc, keepalive))
}

fn circuit_breakers(cb: Option<&proto::CircuitBreakers>, path: &Path) -> Result<CircuitBreakers, ConfigError> {
    let mut out = CircuitBreakers::default();
    let Some(cb) = cb else { return Ok(out) };
    for (i, t) in cb.thresholds.iter().enumerate() {
        let tp = path.field("thresholds").item(i, "");
        check(t, &THRESHOLDS, &tp)?;
        if t.priority != core::RoutingPriority::Default as i32 {
            continue; // HIGH priority thresholds apply to priority routes, which are not modelled.
        }
        let v = |x: Option<u32>, d: u64| x.map(u64::from).unwrap_or(d);
        out = CircuitBreakers {
            max_connections: v(t.max_connections.map(|w| w.value), out.max_connections),
            max_pending_requests: v(t.max_pending_requests.map(|w| w.value), out.max_pending_requests),
            max_requests: v(t.max_requests.map(|w| w.value), out.max_requests),
            max_retries: v(t.max_retries.map(|w| w.value), out.max_retries),
        };
    }
    Ok(out)
}
