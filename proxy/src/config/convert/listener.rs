//! `Listener` → model: address, listener filters, filter chains and their terminal filter.

use std::sync::Arc;
use std::time::Duration;

use xds_client::protos::envoy::config::listener::v3 as proto;
use xds_client::protos::envoy::extensions::filters::network::{
    http_connection_manager::v3::HttpConnectionManager, tcp_proxy::v3::TcpProxy,
};
use xds_client::protos::google::protobuf::Any;

use super::common::{cidr, duration, socket_addr};
use super::fields::{check, FieldPolicy};
use super::{http, tcp, Resources};
use crate::config::error::{ConfigError, Path};
use crate::config::listener::{ChainMatch, FilterChain, Listener, NetworkFilter};

pub(super) const LISTENER: FieldPolicy = FieldPolicy {
    message: "envoy.config.listener.v3.Listener",
    honoured: &[
        "name",
        "address",
        "filter_chains",
        "default_filter_chain",
        "listener_filters",
        "listener_filters_timeout",
        "continue_on_listener_filters_timeout",
        "tcp_backlog_size",
        "use_original_dst",
        "bind_to_port",
        "transparent",
        "traffic_direction",
        "additional_addresses",
        "internal_listener",
        "filter_chain_matcher",
        "deprecated_v1",
    ],
    ignored: &[
        // Accept-loop tuning (how many accepts per wake-up): no effect on what is served.
        "max_connections_to_accept_per_socket_event",
        // Exempts the listener from the overload manager's global connection limit, which
        // Isthmus does not enforce: every listener is already unlimited.
        "ignore_global_conn_limit",
        // Exempts the listener from overload actions, which Isthmus does not take.
        "bypass_overload_manager",
        "stat_prefix",
        "metadata",
        "per_connection_buffer_limit_bytes",
        "drain_type",
        "enable_reuse_port",
        "connection_balance_config",
        "access_log",
    ],
};

const ADDITIONAL_ADDRESS: FieldPolicy =
    FieldPolicy { message: "envoy.config.listener.v3.AdditionalAddress", honoured: &["address"], ignored: &[] };

pub(super) const FILTER_CHAIN: FieldPolicy = FieldPolicy {
    message: "envoy.config.listener.v3.FilterChain",
    honoured: &["filter_chain_match", "filters", "name", "transport_socket", "transport_socket_connect_timeout"],
    ignored: &["metadata"],
};

pub(super) const CHAIN_MATCH: FieldPolicy = FieldPolicy {
    message: "envoy.config.listener.v3.FilterChainMatch",
    honoured: &[
        "destination_port",
        "prefix_ranges",
        "server_names",
        "transport_protocol",
        "application_protocols",
        "source_prefix_ranges",
        "source_ports",
    ],
    ignored: &[],
};

/// Listener filters that only feed chain matching; Isthmus inspects the first bytes itself.
const INSPECTORS: &[&str] = &[
    "envoy.filters.listener.tls_inspector",
    "envoy.filters.listener.http_inspector",
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
];

/// Converts one listener. `res` knows the clusters, so references are checked here.
pub fn listener(l: &proto::Listener, path: &Path, res: &Resources) -> Result<Listener, ConfigError> {
    check(l, &LISTENER, path)?;
    let internal = matches!(l.listener_specifier, Some(proto::listener::ListenerSpecifier::InternalListener(_)));
    let address = match (&l.address, internal) {
        (Some(a), false) => socket_addr(a, &path.field("address"))?,
        (None, false) => return Err(path.err_at("address", "is required")),
        // A private loopback port; `listener::internal` admits only Isthmus' own connections.
        (None, true) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        (Some(_), true) => return Err(path.err_at("address", "an internal_listener has no address")),
    };
    // Envoy names an unnamed static listener itself (pilot-agent's 15090 and 15021 listeners
    // have no name); Isthmus uses the address, as istiod names listeners (`0.0.0.0_15090`).
    let name = if l.name.is_empty() { format!("{}_{}", address.ip(), address.port()) } else { l.name.clone() };
    let mut additional_addresses = Vec::with_capacity(l.additional_addresses.len());
    for (i, a) in l.additional_addresses.iter().enumerate() {
        let p = path.field("additional_addresses").item(i, "");
        check(a, &ADDITIONAL_ADDRESS, &p)?;
        match &a.address {
            Some(addr) => additional_addresses.push(socket_addr(addr, &p.field("address"))?),
            None => return Err(p.err_at("address", "is required")),
        }
    }
    let mut inspect = false;
    for (i, f) in l.listener_filters.iter().enumerate() {
        let url = match &f.config_type {
            Some(proto::listener_filter::ConfigType::TypedConfig(any)) => any.type_url.as_str(),
            _ => "",
        };
        if INSPECTORS.contains(&f.name.as_str()) || INSPECTORS.contains(&url) {
            inspect = true;
        } else if f.name == "envoy.filters.listener.original_dst"
            || url == "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
        {
            // The original destination is always read (SO_ORIGINAL_DST); nothing to do.
        } else {
            return Err(path
                .item(i, &f.name)
                .err(format!("listener filter {} is not supported", if url.is_empty() { &f.name } else { url })));
        }
    }
    let mut filter_chains: Vec<Arc<FilterChain>> = Vec::with_capacity(l.filter_chains.len());
    for (i, fc) in l.filter_chains.iter().enumerate() {
        let chain = filter_chain(fc, i, &path.field("filter_chains").item(i, &fc.name), res)?;
        if l.filter_chain_matcher.is_none() && filter_chains.iter().any(|c| c.matcher == chain.matcher) {
            let j = filter_chains.iter().position(|c| c.matcher == chain.matcher).unwrap_or_default();
            // Envoy: "multiple filter chains with the same matching rules are defined".
            return Err(path.field("filter_chains").item(i, &fc.name).err_at(
                "filter_chain_match",
                format!("same matching rules as filter_chains[{j}]; a connection could not choose between them"),
            ));
        }
        inspect |= needs_inspection(&chain.matcher);
        filter_chains.push(Arc::new(chain));
    }
    let default_filter_chain = match &l.default_filter_chain {
        Some(fc) => Some(Arc::new(filter_chain(fc, usize::MAX, &path.field("default_filter_chain"), res)?)),
        None => None,
    };
    let chain_matcher = match &l.filter_chain_matcher {
        Some(m) => {
            let names: std::collections::HashSet<String> = filter_chains.iter().map(|c| c.name.clone()).collect();
            let cm = super::chain_matcher::chain_matcher(m, &names, &path.field("filter_chain_matcher"))?;
            inspect |= uses_first_bytes(&cm);
            Some(cm)
        }
        None => None,
    };
    if filter_chains.is_empty() && default_filter_chain.is_none() {
        return Err(path.err_at("filter_chains", "at least one filter chain is required"));
    }
    // Envoy: "Specifying 0 disables the timeout" — the listener waits for the first bytes for
    // as long as the client takes (Istio's virtualInbound sends `0s`).
    let inspect_timeout = match &l.listener_filters_timeout {
        Some(d) => Some(duration(d, &path.field("listener_filters_timeout"))?).filter(|d| !d.is_zero()),
        None => Some(Duration::from_secs(15)),
    };
    let base = proto::Listener { filter_chains: Vec::new(), default_filter_chain: None, ..l.clone() };
    Ok(Listener {
        base_fingerprint: fingerprint("envoy.config.listener.v3.Listener", &base),
        name,
        address,
        additional_addresses,
        filter_chains,
        chain_matcher,
        default_filter_chain,
        inspect,
        inspect_timeout,
        continue_on_inspect_timeout: l.continue_on_listener_filters_timeout,
        backlog: l.tcp_backlog_size.map(|v| v.value).unwrap_or(1024),
        internal,
        inbound: l.traffic_direction == xds_client::protos::envoy::config::core::v3::TrafficDirection::Inbound as i32,
        outbound: l.traffic_direction == xds_client::protos::envoy::config::core::v3::TrafficDirection::Outbound as i32,
        use_original_dst: l.use_original_dst.map(|b| b.value).unwrap_or(false),
        // `deprecated_v1.bind_to_port` is what older istiods sent for `bind_to_port`.
        #[allow(deprecated)]
        bind_to_port: l
            .bind_to_port
            .or_else(|| l.deprecated_v1.as_ref().and_then(|d| d.bind_to_port))
            .map(|b| b.value)
            .unwrap_or(true),
        transparent: l.transparent.map(|b| b.value).unwrap_or(false),
    })
}

/// A digest of a message through its canonical JSON (sorted keys), so re-encoding a map in
/// another order gives the same digest; 0 if the JSON cannot be made (never equal to a real
/// digest by chance more than any other value, and only costs a drain).
fn fingerprint<M: prost::Message>(type_name: &str, m: &M) -> u64 {
    use std::hash::{Hash, Hasher};
    let Ok(json) = xds_client::json::to_json(type_name, &m.encode_to_vec()) else { return 0 };
    let mut h = std::hash::DefaultHasher::new();
    json.to_string().hash(&mut h);
    h.finish()
}

/// Istio's TypedStruct network filters accepted as documented no-ops: peer metadata exchange
/// and stats have no effect on routing, and Isthmus emits Istio's metrics itself.
pub(super) const ISTIO_NOOP_NETWORK: &[&str] =
    &["istio.metadata_exchange", "envoy.filters.network.metadata_exchange", "istio.stats"];

/// The same by type (sent directly or in a TypedStruct), whatever the filter is named.
const ISTIO_NOOP_NETWORK_TYPES: &[&str] = &[
    "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
    "type.googleapis.com/stats.PluginConfig",
];

const SET_FILTER_STATE_URL: &str = "type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config";

/// Filter-state keys a waypoint copies onto the connection so its upstream knows the original
/// destination; in Isthmus the original destination always travels with the connection
/// (and to internal listeners through the endpoint), so the copy is a no-op. Any other key is
/// refused.
const ORIGINAL_DST_STATE: &[&str] =
    &["envoy.filters.listener.original_dst.local_ip", "envoy.filters.listener.original_dst.remote_ip"];

fn set_filter_state(f: &proto::Filter, path: &Path) -> Result<(), ConfigError> {
    use xds_client::protos::envoy::extensions::filters::network::set_filter_state::v3::Config;
    let Some(proto::filter::ConfigType::TypedConfig(any)) = &f.config_type else { return Ok(()) };
    let c: Config =
        xds_client::json::unpack(any).map_err(|e| path.err(format!("cannot decode set_filter_state: {e}")))?;
    use xds_client::protos::envoy::extensions::filters::common::set_filter_state::v3::filter_state_value::Key;
    for (i, v) in c.on_new_connection.iter().enumerate() {
        let key = match &v.key {
            Some(Key::ObjectKey(k)) => k.as_str(),
            None => "",
        };
        if !ORIGINAL_DST_STATE.contains(&key) {
            return Err(path.field("typed_config").field("on_new_connection").item(i, key).err(
                "only the original destination keys (envoy.filters.listener.original_dst.local_ip/remote_ip) are supported",
            ));
        }
    }
    Ok(())
}

/// `envoy.filters.network.sni_cluster`: the SNI names tcp_proxy's cluster.
const SNI_CLUSTER: &str = "envoy.filters.network.sni_cluster";
const SNI_CLUSTER_URL: &str = "type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster";

fn typed_url(f: &proto::Filter) -> &str {
    match &f.config_type {
        Some(proto::filter::ConfigType::TypedConfig(any)) => any.type_url.as_str(),
        _ => "",
    }
}

/// Whether a matcher reads SNI, transport or ALPN (so the first bytes must be inspected).
fn uses_first_bytes(m: &crate::config::chain_matcher::ChainMatcher) -> bool {
    use crate::config::chain_matcher::{Input, Lookup, OnMatch};
    let nested = |o: &OnMatch| matches!(o, OnMatch::Matcher(inner) if uses_first_bytes(inner));
    matches!(m.input, Input::ServerName | Input::TransportProtocol | Input::ApplicationProtocol)
        || m.on_no_match.as_deref().is_some_and(nested)
        || match &m.lookup {
            Lookup::Exact(map) => map.values().any(nested),
            Lookup::Prefix(v) => v.iter().any(|(_, o)| nested(o)),
            Lookup::Ip(v) => v.iter().any(|(.., o)| nested(o)),
        }
}

fn needs_inspection(m: &ChainMatch) -> bool {
    !m.server_names.is_empty() || m.transport_protocol.is_some() || !m.application_protocols.is_empty()
}

fn filter_chain(
    fc: &proto::FilterChain,
    index: usize,
    path: &Path,
    res: &Resources,
) -> Result<FilterChain, ConfigError> {
    check(fc, &FILTER_CHAIN, path)?;
    let tls = match &fc.transport_socket {
        Some(ts) => super::tls::downstream(ts, &path.field("transport_socket"))?,
        None => None,
    };
    let matcher = match &fc.filter_chain_match {
        Some(m) => chain_match(m, &path.field("filter_chain_match"))?,
        None => ChainMatch::default(),
    };
    let fpath = path.field("filters");
    let Some((last, rest)) = fc.filters.split_last() else {
        return Err(fpath.err("a terminal network filter (tcp_proxy or http_connection_manager) is required"));
    };
    let sni_cluster = rest.iter().any(|f| f.name == SNI_CLUSTER || typed_url(f) == SNI_CLUSTER_URL);
    let mut policies = Vec::new();
    for (i, f) in rest.iter().enumerate() {
        let ip = fpath.item(i, &f.name);
        if typed_url(f) == SET_FILTER_STATE_URL {
            set_filter_state(f, &ip)?;
            continue;
        }
        let any = match &f.config_type {
            Some(proto::filter::ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        };
        if let Some(p) =
            any.map(|a| super::filters::network_filter(a, &ip.field("typed_config"))).transpose()?.flatten()
        {
            policies.push(p);
            continue;
        }
        let inner = any.map(super::common::effective_type).unwrap_or_default();
        let noop = ISTIO_NOOP_NETWORK.contains(&f.name.as_str())
            || ISTIO_NOOP_NETWORK_TYPES.contains(&inner.as_str())
            || f.name == SNI_CLUSTER
            || typed_url(f) == SNI_CLUSTER_URL;
        if !noop {
            return Err(ip.err(format!(
                "network filter {} is not supported (before the terminal filter: RBAC, local rate limit, \
                 sni_cluster, set_filter_state and Istio's no-op filters)",
                f.name
            )));
        }
    }
    let lpath = fpath.item(fc.filters.len() - 1, &last.name);
    let any = match &last.config_type {
        Some(proto::filter::ConfigType::TypedConfig(any)) => any,
        _ => return Err(lpath.err_at("typed_config", "is required")),
    };
    let mut filter = network_filter(any, &lpath.field("typed_config"), res)?;
    match &mut filter {
        NetworkFilter::TcpProxy(t) => t.sni_cluster = sni_cluster,
        NetworkFilter::Http(_) if sni_cluster => {
            return Err(fpath.err(format!("{SNI_CLUSTER} only works before tcp_proxy")));
        }
        NetworkFilter::Http(_) => {}
    }
    let name = if !fc.name.is_empty() {
        fc.name.clone()
    } else if index == usize::MAX {
        "default".to_string()
    } else {
        format!("chain-{index}")
    };
    let handshake_timeout = super::common::timeout(
        fc.transport_socket_connect_timeout.as_ref(),
        Some(Duration::from_secs(10)),
        &path.field("transport_socket_connect_timeout"),
    )?;
    Ok(FilterChain {
        name,
        matcher,
        filter,
        tls,
        handshake_timeout,
        policies,
        fingerprint: fingerprint("envoy.config.listener.v3.FilterChain", fc),
    })
}

fn network_filter(any: &Any, path: &Path, res: &Resources) -> Result<NetworkFilter, ConfigError> {
    let bad = |e: prost::DecodeError| path.err(format!("cannot decode {}: {e}", any.type_url));
    match any.type_url.as_str() {
        "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy" => {
            let t: TcpProxy = xds_client::json::unpack(any).map_err(bad)?;
            Ok(NetworkFilter::TcpProxy(tcp::tcp_proxy(&t, path, res)?))
        }
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" => {
            let h: HttpConnectionManager = xds_client::json::unpack(any).map_err(bad)?;
            Ok(NetworkFilter::Http(Arc::new(http::connection_manager(&h, path, res)?)))
        }
        other => Err(path.err(format!("network filter type {other} is not supported"))),
    }
}

fn chain_match(m: &proto::FilterChainMatch, path: &Path) -> Result<ChainMatch, ConfigError> {
    check(m, &CHAIN_MATCH, path)?;
    let destination_port = match m.destination_port {
        Some(p) => Some(
            u16::try_from(p.value)
                .map_err(|_| path.err_at("destination_port", format!("{} is not a port", p.value)))?,
        ),
        None => None,
    };
    let ranges = |v: &[xds_client::protos::envoy::config::core::v3::CidrRange], f: &str| {
        v.iter().enumerate().map(|(i, c)| cidr(c, &path.field(f).item(i, ""))).collect::<Result<Vec<_>, _>>()
    };
    let source_ports = m
        .source_ports
        .iter()
        .map(|p| u16::try_from(*p).map_err(|_| path.err_at("source_ports", format!("{p} is not a port"))))
        .collect::<Result<Vec<_>, _>>()?;
    let transport_protocol = match m.transport_protocol.as_str() {
        "" => None,
        t @ ("tls" | "raw_buffer") => Some(t.to_string()),
        other => return Err(path.err_at("transport_protocol", format!("\"{other}\": expected tls or raw_buffer"))),
    };
    Ok(ChainMatch {
        destination_port,
        prefix_ranges: ranges(&m.prefix_ranges, "prefix_ranges")?,
        server_names: m.server_names.iter().map(|s| s.to_ascii_lowercase()).collect(),
        transport_protocol,
        application_protocols: m.application_protocols.clone(),
        source_prefix_ranges: ranges(&m.source_prefix_ranges, "source_prefix_ranges")?,
        source_ports,
    })
}
