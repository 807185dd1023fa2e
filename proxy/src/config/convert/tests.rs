//! Conversion cases: Envoy's defaults, and the refusals that name their field.

use std::time::Duration;

use crate::config::listener::NetworkFilter;
use crate::config::load;
use crate::config::route::RouteAction;
use crate::config::{Bootstrap, ConfigError};

fn convert(yaml: &str) -> Result<Bootstrap, ConfigError> {
    load::from_value(load::parse(yaml, "t")?, "t")
}

fn err(yaml: &str) -> String {
    convert(yaml).unwrap_err().to_string()
}

const CLUSTER: &str = "  clusters:\n  - name: c\n    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}\n";

fn http(route: &str, filters: &str) -> String {
    format!(
        "static_resources:\n  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: s\n          route_config: {{virtual_hosts: [{{name: v, domains: [\"*\"], routes: [{route}]}}]}}\n          http_filters: {filters}\n{CLUSTER}"
    )
}

const ROUTER: &str =
    "[{name: r, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]";

fn first_route(b: &Bootstrap) -> crate::config::route::Route {
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let crate::config::listener::RouteSource::Inline(rc) = &h.routes else { panic!("not inline") };
    rc.virtual_hosts[0].routes[0].clone()
}

#[test]
fn route_defaults_follow_envoy() {
    let b = convert(&http("{match: {prefix: /}, route: {cluster: c, retry_policy: {retry_on: 5xx}}}", ROUTER)).unwrap();
    let RouteAction::Forward(f) = first_route(&b).action else { panic!("not forward") };
    assert_eq!(f.timeout, Some(Duration::from_secs(15)));
    let r = f.retry_policy.unwrap();
    assert_eq!(
        (r.num_retries, r.base_interval, r.max_interval),
        (1, Duration::from_millis(25), Duration::from_millis(250))
    );
    assert!(r.on.server_error && !r.on.gateway_error);
    let b = convert(&http("{match: {prefix: /}, route: {cluster: c, timeout: 0s}}", ROUTER)).unwrap();
    let RouteAction::Forward(f) = first_route(&b).action else { panic!("not forward") };
    assert_eq!(f.timeout, None, "0s disables the route timeout");
}

#[test]
fn cluster_defaults_follow_envoy() {
    let b = convert(&format!("static_resources:\n{CLUSTER}")).unwrap();
    let c = &b.clusters[0];
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.policy.overprovisioning_factor, 140);
    assert_eq!(c.healthy_panic_threshold, 50.0);
    assert_eq!((c.circuit_breakers.max_connections, c.circuit_breakers.max_retries), (1024, 3));
}

#[test]
fn http_filter_rules() {
    let lua_then_router = "[{name: envoy.filters.http.lua}, {name: r, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]";
    assert!(err(&http("{match: {prefix: /}, route: {cluster: c}}", lua_then_router)).contains("envoy.filters.http.lua"));
    let optional =
        lua_then_router.replace("{name: envoy.filters.http.lua}", "{name: envoy.filters.http.lua, is_optional: true}");
    convert(&http("{match: {prefix: /}, route: {cluster: c}}", &optional)).unwrap();
    let e = err(&http("{match: {prefix: /}, route: {cluster: c}}", "[]"));
    assert!(e.contains("http_filters: envoy.filters.http.router is required"), "{e}");
}

#[test]
fn cluster_refusals_name_the_field() {
    let dup = format!("static_resources:\n{CLUSTER}{}", CLUSTER.trim_start_matches("  clusters:\n"));
    assert!(err(&dup).contains("clusters[1] \"c\".name: duplicate cluster name"));
    let name_in_static = CLUSTER.replace("address: 127.0.0.1", "address: db.internal");
    let e = err(&format!("static_resources:\n{name_in_static}"));
    assert!(e.contains("\"db.internal\" is not an IP address; use STRICT_DNS or LOGICAL_DNS"), "{e}");
    let ring = CLUSTER.replace("  - name: c\n", "  - name: c\n    lb_policy: RING_HASH\n    ring_hash_lb_config: {minimum_ring_size: 9, maximum_ring_size: 8}\n");
    assert!(err(&format!("static_resources:\n{ring}")).contains("ring_hash_lb_config: ring sizes 9..8 are invalid"));
    let tls = CLUSTER.replace("  - name: c\n", "  - name: c\n    transport_socket: {name: tls}\n");
    assert!(err(&format!("static_resources:\n{tls}"))
        .contains("clusters[0] \"c\".transport_socket.typed_config: is required"));
}

#[test]
fn a_chain_with_a_non_terminal_filter_is_refused() {
    let tcp = "{name: t, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}";
    let y = format!("static_resources:\n  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains: [{{filters: [{tcp}, {tcp}]}}]\n{CLUSTER}");
    assert!(err(&y).contains("only one terminal filter per chain"));
}

#[test]
fn config_yaml_merges_objects_and_appends_lists() {
    let file = std::env::temp_dir().join(format!("isthmus-merge-{}.yaml", std::process::id()));
    std::fs::write(&file, format!("node: {{id: a, cluster: x}}\nstatic_resources:\n{CLUSTER}")).unwrap();
    let extra = CLUSTER.replace("name: c", "name: d").replace("cluster_name: c", "cluster_name: d");
    let b = load::load(Some(&file), Some(&format!("node: {{id: b}}\nstatic_resources:\n{extra}"))).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!((b.node.id.as_str(), b.node.cluster.as_str()), ("b", "x"));
    assert_eq!(b.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["c", "d"]);
}

/// The fields the endpoint path refuses by hand (instead of the reflective check) are still
/// refused, each at its path.
#[test]
fn endpoint_fields_refused_by_hand_name_their_path() {
    let ep = |extra_ep: &str, extra_addr: &str, extra_le: &str| {
        format!(
            "static_resources:\n  clusters:\n  - name: c\n    load_assignment: {{cluster_name: c, endpoints: [{{{extra_le}lb_endpoints: [{{endpoint: {{{extra_ep}address: {{socket_address: {{{extra_addr}address: 127.0.0.1, port_value: 1}}}}}}}}]}}]}}\n"
        )
    };
    let e =
        err(&ep("additional_addresses: [{address: {socket_address: {address: 127.0.0.2, port_value: 1}}}], ", "", ""));
    assert!(e.contains("lb_endpoints[0].endpoint.additional_addresses: is not supported"), "{e}");
    let e = err(&ep("", "network_namespace_filepath: /var/run/netns/x, ", ""));
    assert!(e.contains("socket_address.network_namespace_filepath: is not supported"), "{e}");
    let e = err(&ep("", "", "leds_cluster_locality_config: {leds_collection_name: x}, "));
    assert!(
        e.contains("endpoints[0]: load_balancer_endpoints / leds_cluster_locality_config are not supported"),
        "{e}"
    );
    let e = err(&ep("", "named_port: http, ", "")
        .replace("port_value: 1", "address: 127.0.0.1")
        .replace("address: 127.0.0.1, address: 127.0.0.1", "address: 127.0.0.1"));
    assert!(e.contains("named_port"), "{e}");
}

/// Istio's 15006 sends `listener_filters_timeout: 0s`: Envoy reads it as no limit.
#[test]
fn zero_listener_filters_timeout_means_no_limit() {
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER).replace(
        "    filter_chains:\n",
        "    listener_filters_timeout: 0s\n    continue_on_listener_filters_timeout: true\n    filter_chains:\n",
    );
    assert_eq!(convert(&yaml).unwrap().listeners[0].inspect_timeout, None);
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER);
    assert_eq!(convert(&yaml).unwrap().listeners[0].inspect_timeout, Some(Duration::from_secs(15)));
}

/// A VirtualService fault or CORS policy arrives as per-route filter config; until those
/// filters exist it is refused with its key, never served as if applied.
#[test]
fn per_route_filter_config_is_refused_by_key() {
    let fault = "{match: {prefix: /}, route: {cluster: c}, typed_per_filter_config: {envoy.filters.http.fault: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 503, percentage: {numerator: 50}}}}}";
    let e = err(&http(fault, ROUTER));
    assert!(e.contains("routes[0].typed_per_filter_config") && e.contains("\"envoy.filters.http.fault\""), "{e}");
}

/// istiod's HCM extras: tracing is kept (not acted on), the UUID request-id extension is
/// read, an unknown tracer is refused by name.
#[test]
fn hcm_tracing_and_request_id_as_istiod_sends_them() {
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER).replace(
        "          stat_prefix: s\n",
        "          stat_prefix: s\n          tracing: {client_sampling: {value: 100}, random_sampling: {value: 1}, overall_sampling: {value: 100}}\n          request_id_extension: {typed_config: {\"@type\": type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig, use_request_id_for_trace_sampling: true}}\n",
    );
    let b = convert(&yaml).unwrap();
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let t = h.tracing.clone().unwrap();
    assert_eq!((t.random_sampling, t.client_sampling, t.provider), (1.0, 100.0, None));
    assert!(h.request_id.pack_trace_reason && h.request_id.use_request_id_for_trace_sampling);
    let bad = yaml.replace(
        "overall_sampling: {value: 100}}",
        "overall_sampling: {value: 100}, provider: {name: envoy.tracers.datadog}}",
    );
    let e = err(&bad);
    assert!(e.contains("tracing.provider") && e.contains("envoy.tracers.datadog"), "{e}");
}

/// istiod's empty fault/CORS filters are no-ops; a configured one is refused with its path.
#[test]
fn configured_listener_fault_is_refused() {
    let empty = "[{name: envoy.filters.http.fault, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}, {name: r, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]";
    convert(&http("{match: {prefix: /}, route: {cluster: c}}", empty)).unwrap();
    let abort = empty.replace("HTTPFault}", "HTTPFault, abort: {http_status: 503, percentage: {numerator: 100}}}");
    let e = err(&http("{match: {prefix: /}, route: {cluster: c}}", &abort));
    assert!(e.contains("http_filters[0] \"envoy.filters.http.fault\"") && e.contains("not supported yet"), "{e}");
}

/// Older istiods' deprecated spellings keep their meaning.
#[test]
fn deprecated_v1_bind_to_port_and_protocol_selection() {
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER)
        .replace("    filter_chains:\n", "    deprecated_v1: {bind_to_port: false}\n    filter_chains:\n")
        .replace("  - name: c\n", "  - name: c\n    protocol_selection: USE_DOWNSTREAM_PROTOCOL\n");
    let b = convert(&yaml).unwrap();
    assert!(!b.listeners[0].bind_to_port);
    assert_eq!(b.clusters[0].upstream_protocol, crate::config::cluster::UpstreamProtocol::Downstream);
}
