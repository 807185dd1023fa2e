//! Bootstrap snippets in Envoy's YAML, so each test reads as the config a user would write.

use std::net::SocketAddr;

/// A bootstrap with an admin on port 0 and the given listeners and clusters (YAML list items).
pub fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "node: {{id: test, cluster: test-client}}\nadmin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}\nstatic_resources:\n  listeners:\n{}\n  clusters:\n{}\n",
        listeners.join("\n"),
        clusters.join("\n")
    )
}

/// A STATIC cluster over `hosts`, with extra cluster-level YAML (indented 4).
pub fn cluster(name: &str, hosts: &[SocketAddr], extra: &str) -> String {
    let eps: String = hosts
        .iter()
        .map(|a| {
            format!(
                "        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}\n",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    lb_policy: ROUND_ROBIN\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}"
    )
}

/// The HTTP/2 protocol option block for a cluster (gRPC upstreams).
pub const H2_UPSTREAM: &str = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n";

/// An HTTP listener on 127.0.0.1:0 whose single virtual host has `routes` (YAML list items
/// indented 14) and extra virtual-host YAML (indented 14).
pub fn http_listener(name: &str, routes: &str, vhost_extra: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
{vhost_extra}              routes:
{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#
    )
}

/// A tcp_proxy listener on 127.0.0.1:0 to `cluster`.
pub fn tcp_listener(name: &str, cluster: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: {cluster}"#
    )
}

/// A route item (indented 14) to `cluster` for prefix `/`, with extra route-action YAML.
pub fn route_to(cluster: &str, action_extra: &str) -> String {
    format!("              - match: {{prefix: \"/\"}}\n                route: {{cluster: {cluster}{action_extra}}}")
}

/// The static `xds-grpc` cluster (HTTP/2, one endpoint: the control plane on `cp_port`), as a
/// `static_resources.clusters` item; `extra` is more cluster-level YAML (indented 4).
pub fn xds_cluster(cp_port: u16, extra: &str) -> String {
    format!(
        r#"  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
{extra}    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {cp_port}}}}}}}}}]}}]
"#
    )
}
