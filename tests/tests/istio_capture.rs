//! An istiod-shaped push (two services, plaintext mesh) served by the independent control
//! plane to the real binary running as uid 1337 in a network namespace with an iptables
//! REDIRECT capture rule: an app's connection to a service VIP is captured on 15001,
//! recovered with SO_ORIGINAL_DST, handed to the `bind_to_port: false` listener for its port,
//! routed by RDS to the EDS cluster; unknown destinations pass through (ALLOW_ANY) or are
//! black-holed and counted (REGISTRY_ONLY).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use serde_json::{json, Value};
use tests::netns::{Netns, Server};
use tests::proxy::Proxy;
use tests::xds_server::AdsServer;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const ECHO: &str = "outbound|8080||echo.default.svc.cluster.local";
const RATINGS: &str = "outbound|9080||ratings.default.svc.cluster.local";

/// `python3 -m http.server` inside the namespace, serving a file that names it.
fn http_server(ns: &Netns, bind: &str, port: u16, body: &str) -> Server {
    ns.http_server(None, bind, port, body)
}

fn typed_struct(type_url: &str) -> Value {
    json!({"@type": "type.googleapis.com/udpa.type.v1.TypedStruct", "type_url": type_url, "value": {}})
}

fn hcm(rds: &str) -> Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": format!("outbound_0.0.0.0_{rds}"),
        "rds": {"route_config_name": rds, "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}},
        "use_remote_address": false,
        "normalize_path": true,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "http_filters": [
            {"name": "istio.metadata_exchange", "typed_config": typed_struct("type.googleapis.com/io.istio.http.peer_metadata.Config")},
            {"name": "envoy.filters.http.grpc_stats", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", "emit_filter_state": true, "stats_for_all_methods": false}},
            {"name": "istio.alpn", "typed_config": typed_struct("type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig")},
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "istio.stats", "typed_config": typed_struct("type.googleapis.com/stats.PluginConfig")},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}})
}

fn tcp(cluster: &str) -> Value {
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": cluster, "cluster": cluster}})
}

fn virtual_outbound(registry_only: bool) -> Value {
    json!({"@type": LDS, "name": "virtualOutbound", "traffic_direction": "OUTBOUND",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
        "use_original_dst": true,
        "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],
        "filter_chains": [{"name": "virtualOutbound-blackhole", "filter_chain_match": {"destination_port": 15001}, "filters": [tcp("BlackHoleCluster")]}],
        "default_filter_chain": {"name": "PassthroughFilterChain", "filters": [
            {"name": "istio.stats", "typed_config": typed_struct("type.googleapis.com/stats.PluginConfig")},
            tcp(if registry_only { "BlackHoleCluster" } else { "PassthroughCluster" })]}})
}

fn port_listener(port: u16) -> Value {
    json!({"@type": LDS, "name": format!("0.0.0.0_{port}"), "traffic_direction": "OUTBOUND", "bind_to_port": false,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{"filters": [hcm(&port.to_string())]}]})
}

fn virtual_inbound() -> Value {
    json!({"@type": LDS, "name": "virtualInbound", "traffic_direction": "INBOUND",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
        "use_original_dst": true,
        "listener_filters": [
            {"name": "envoy.filters.listener.original_dst", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}},
            {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
            {"name": "envoy.filters.listener.http_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
        "listener_filters_timeout": "0s",
        "continue_on_listener_filters_timeout": true,
        "filter_chains": [{"name": "virtualInbound-blackhole", "filter_chain_match": {"destination_port": 15006}, "filters": [tcp("BlackHoleCluster")]}],
        "default_filter_chain": {"name": "inbound-passthrough", "filters": [
            {"name": "istio.metadata_exchange", "typed_config": typed_struct("type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange")},
            tcp("InboundPassthroughCluster")]}})
}

fn route(port: u16, vhost: &str, cluster: &str, vip: &str) -> Value {
    json!({"@type": RDS, "name": port.to_string(), "validate_clusters": false, "virtual_hosts": [
        {"name": format!("{vhost}:{port}"), "domains": [vhost, format!("{vhost}:{port}"), vip, format!("{vip}:{port}")],
         "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s",
            "retry_policy": {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", "num_retries": 2,
                "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                "host_selection_retry_max_attempts": "5", "retriable_status_codes": [503]},
            "max_grpc_timeout": "0s"}, "decorator": {"operation": format!("{vhost}:{port}/*")}}]},
        {"name": "allow_any", "domains": ["*"], "routes": [{"name": "allow_any", "match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster", "timeout": "0s"}}]}]})
}

fn eds_cluster(name: &str) -> Value {
    json!({"@type": CDS, "name": name, "type": "EDS", "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
        "eds_cluster_config": {"eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}, "service_name": name},
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295u32, "max_pending_requests": 4294967295u32, "max_requests": 4294967295u32, "max_retries": 4294967295u32, "track_remaining": true}]},
        "common_lb_config": {},
        "metadata": {"filter_metadata": {"istio": {"services": [{"host": name.rsplit('|').next().unwrap(), "name": "svc", "namespace": "default"}]}}},
        "filters": [{"name": "istio.metadata_exchange", "typed_config": typed_struct("type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange")}],
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "common_http_protocol_options": {"idle_timeout": "3600s"},
            "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}}}})
}

fn clusters() -> Vec<Value> {
    vec![
        eds_cluster(ECHO),
        eds_cluster(RATINGS),
        json!({"@type": CDS, "name": "PassthroughCluster", "type": "ORIGINAL_DST", "connect_timeout": "10s", "lb_policy": "CLUSTER_PROVIDED",
            "circuit_breakers": {"thresholds": [{"max_connections": 4294967295u32, "max_pending_requests": 4294967295u32, "max_requests": 4294967295u32, "max_retries": 4294967295u32}]},
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}}},
            "filters": [{"name": "istio.metadata_exchange", "typed_config": typed_struct("type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange")}]}),
        json!({"@type": CDS, "name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"}),
        json!({"@type": CDS, "name": "InboundPassthroughCluster", "type": "ORIGINAL_DST", "connect_timeout": "10s", "lb_policy": "CLUSTER_PROVIDED",
            "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}}),
    ]
}

fn assignment(name: &str, port: u16) -> Value {
    json!({"@type": EDS, "cluster_name": name, "endpoints": [{"locality": {"region": "cn-hangzhou", "zone": "cn-hangzhou-h"},
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}},
            "metadata": {"filter_metadata": {"istio": {"workload": "echo-v1;default;echo;v1;Kubernetes"}, "envoy.transport_socket_match": {"tlsMode": "disabled"}}},
            "load_balancing_weight": 1}],
        "load_balancing_weight": 1}]})
}

fn bootstrap(cp_port: u16) -> String {
    format!(
        r#"{{"node": {{"id": "sidecar~10.200.0.2~app-1.default~default.svc.cluster.local", "cluster": "app.default",
  "locality": {{"region": "cn-hangzhou", "zone": "cn-hangzhou-h"}},
  "metadata": {{"ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "Kubernetes", "INTERCEPTION_MODE": "REDIRECT"}}}},
 "admin": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": 15000}}}}}},
 "dynamic_resources": {{"lds_config": {{"ads": {{}}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}},
   "cds_config": {{"ads": {{}}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}},
   "ads_config": {{"api_type": "DELTA_GRPC", "set_node_on_first_message_only": true, "transport_api_version": "V3",
     "grpc_services": [{{"envoy_grpc": {{"cluster_name": "xds-grpc"}}}}]}}}},
 "static_resources": {{"clusters": [{{"name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
   "typed_extension_protocol_options": {{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {{
     "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
     "explicit_http_config": {{"http2_protocol_options": {{}}}}}}}},
   "load_assignment": {{"cluster_name": "xds-grpc", "endpoints": [{{"lb_endpoints": [{{"endpoint": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": {cp_port}}}}}}}}}]}}]}}}}]}}}}"#
    )
}

fn curl(ns: &Netns, url: &str) -> (bool, String) {
    let out = ns.run(&["curl", "-s", "-m", "5", url]);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_shaped_push_routes_captured_traffic() {
    let ns = Netns::new("cap");
    // Istio's rule, reduced to what this test needs: redirect the app's TCP to 15001 unless it
    // is loopback or the proxy itself (uid 1337).
    let rule = ns.run(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "!",
        "-d",
        "127.0.0.0/8",
        "-m",
        "owner",
        "!",
        "--uid-owner",
        "1337",
        "-j",
        "REDIRECT",
        "--to-ports",
        "15001",
    ]);
    assert!(rule.status.success(), "{}", String::from_utf8_lossy(&rule.stderr));
    let _echo = http_server(&ns, "127.0.0.1", 18080, "echo-backend");
    let _ratings = http_server(&ns, "127.0.0.1", 19080, "ratings-backend");
    let _direct = http_server(&ns, "0.0.0.0", 18081, "direct-backend");
    let mut cp = AdsServer::start_prefixed(0, &ns.prefix());
    cp.set(CDS, "2026-11-26T00:00:00Z/1", clusters());
    cp.set(EDS, "2026-11-26T00:00:00Z/1", vec![assignment(ECHO, 18080), assignment(RATINGS, 19080)]);
    cp.set(
        LDS,
        "2026-11-26T00:00:00Z/1",
        vec![virtual_outbound(false), virtual_inbound(), port_listener(8080), port_listener(9080)],
    );
    cp.set(
        RDS,
        "2026-11-26T00:00:00Z/1",
        vec![
            route(8080, "echo.default.svc.cluster.local", ECHO, "10.96.0.10"),
            route(9080, "ratings.default.svc.cluster.local", RATINGS, "10.96.0.20"),
        ],
    );
    let mut prefix = ns.prefix();
    prefix.extend(["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"].map(String::from));
    let _proxy = Proxy::start_prefixed(&bootstrap(cp.port), &prefix);
    // Nothing was NACKed.
    assert!(!cp.seen.iter().any(|e| e["event"] == "request" && e["nack"] == true), "{:?}", cp.seen);

    // The app dials service VIPs; capture + original destination + hand-off + RDS + EDS.
    assert_eq!(curl(&ns, "http://10.96.0.10:8080/who"), (true, "echo-backend".to_string()));
    let out = ns.run(&[
        "curl",
        "-s",
        "-m",
        "5",
        "-H",
        "Host: ratings.default.svc.cluster.local:9080",
        "http://10.96.0.20:9080/who",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ratings-backend");
    // Unknown destination with ALLOW_ANY: passthrough to the original destination.
    assert_eq!(curl(&ns, "http://10.200.0.2:18081/who"), (true, "direct-backend".to_string()));

    // REGISTRY_ONLY: the same destination is black-holed, and counted.
    cp.set(
        LDS,
        "2026-11-26T00:00:00Z/2",
        vec![virtual_outbound(true), virtual_inbound(), port_listener(8080), port_listener(9080)],
    );
    cp.push(LDS, "registry-only");
    let ack = cp.request(LDS, |e| e["nonce"] == "registry-only");
    assert_eq!(ack["nack"], false, "{ack}");
    let (ok, body) = curl(&ns, "http://10.200.0.2:18081/who");
    assert!(!ok && body.is_empty(), "black-holed: {ok} {body:?}");
    assert_eq!(curl(&ns, "http://10.96.0.10:8080/who").1, "echo-backend", "registered services still work");
    let stats = ns.run(&["curl", "-s", "http://127.0.0.1:15000/stats/prometheus"]);
    let stats = String::from_utf8_lossy(&stats.stdout);
    let blackholed = stats
        .lines()
        .find(|l| l.starts_with("envoy_cluster_upstream_cx_none_healthy{envoy_cluster_name=\"BlackHoleCluster\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(blackholed >= 1.0, "{stats}");
}
