//! Shapes istiod emits that need behaviour, not just acceptance, run side by side with Envoy
//! 1.40 on the same bootstrap: a waypoint-style internal listener reached through
//! `envoy_internal_address` endpoints with `internal_upstream`, choosing its chain with a
//! `filter_chain_matcher` on the original destination the endpoint carries; and dual-stack
//! `additional_addresses`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;

use tests::envoy::Envoy;
use tests::proxy::Proxy;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "{name: envoy.filters.http.router, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}";

fn direct(chain: &str, body: &str) -> String {
    format!(
        "    - name: {chain}\n      filters:\n      - name: envoy.filters.network.http_connection_manager\n        typed_config:\n          \"@type\": {HCM}\n          stat_prefix: {chain}\n          route_config: {{virtual_hosts: [{{name: v, domains: [\"*\"], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200, body: {{inline_string: {body}}}}}}}]}}]}}\n          http_filters: [{ROUTER}]\n"
    )
}

/// A cluster whose one endpoint is the internal listener `inner`, carrying `dst` as its
/// original destination (Istio's waypoint shape: `envoy.filters.listener.original_dst` host
/// metadata passed through by `internal_upstream`).
fn internal_cluster(name: &str, dst: &str) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    transport_socket:\n      name: internal_upstream\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport\n        passthrough_metadata: [{{kind: {{host: {{}}}}, name: envoy.filters.listener.original_dst}}]\n        transport_socket: {{name: raw_buffer, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}}}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{envoy_internal_address: {{server_listener_name: inner, endpoint_id: \"{dst}\"}}}}}}\n          metadata: {{filter_metadata: {{envoy.filters.listener.original_dst: {{local: \"{dst}\"}}}}}}\n"
    )
}

fn front(name: &str, cluster: &str) -> String {
    format!(
        "  - name: {name}\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: {name}, cluster: {cluster}}}\n"
    )
}

fn waypoint_bootstrap() -> String {
    let matcher = "    filter_chain_matcher:\n      matcher_tree:\n        input: {name: ip, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput}}\n        custom_match:\n          name: ip\n          typed_config:\n            \"@type\": type.googleapis.com/xds.type.matcher.v3.IPMatcher\n            range_matchers:\n            - ranges: [{address_prefix: 10.9.9.9, prefix_len: 32}]\n              on_match:\n                matcher:\n                  matcher_tree:\n                    input: {name: port, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput}}\n                    exact_match_map:\n                      map:\n                        \"80\": {action: {name: vip-80, typed_config: {\"@type\": type.googleapis.com/google.protobuf.StringValue, value: vip-80}}}\n                  on_no_match: {action: {name: vip-other, typed_config: {\"@type\": type.googleapis.com/google.protobuf.StringValue, value: vip-other}}}\n";
    let inner = format!(
        "  - name: inner\n    internal_listener: {{}}\n    listener_filters: [{{name: envoy.filters.listener.original_dst, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}}}}]\n{matcher}    filter_chains:\n{}{}",
        direct("vip-80", "waypoint-port-80"),
        direct("vip-other", "waypoint-other-port")
    );
    format!(
        "node: {{id: waypoint~10.0.0.5~wp.default~default.svc.cluster.local, cluster: wp.default}}\nadmin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}\nbootstrap_extensions:\n- name: envoy.bootstrap.internal_listener\n  typed_config:\n    \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n    type_url: type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener\n    value: {{buffer_size_kb: 64}}\nstatic_resources:\n  listeners:\n{}{}{}{}  clusters:\n{}{}{}",
        front("front80", "to-80"),
        front("front81", "to-81"),
        front("front-other-ip", "to-other-ip"),
        inner,
        internal_cluster("to-80", "10.9.9.9:80"),
        internal_cluster("to-81", "10.9.9.9:81"),
        internal_cluster("to-other-ip", "10.1.1.1:80"),
    )
}

/// GET / with `Connection: close`; what arrived before the close counts even if the close is a
/// reset (Envoy's tcp_proxy resets the downstream when the internal side closes first).
fn get(addr: SocketAddr) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.1\r\nHost: waypoint\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok())?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(body.len());
    Some((status, body.get(..len).unwrap_or(body).to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_listener_and_filter_chain_matcher_as_envoy() {
    let yaml = waypoint_bootstrap();
    let envoy = Envoy::start(&yaml).await;
    let proxy = Proxy::start(&yaml);
    for (front, expect) in
        [("front80", Some("waypoint-port-80")), ("front81", Some("waypoint-other-port")), ("front-other-ip", None)]
    {
        let from_envoy = get(envoy.listener(front));
        let from_isthmus = get(proxy.listener(front));
        // No chain for an unknown destination IP: Envoy closes the connection (no response).
        assert_eq!(from_envoy.as_ref().map(|(s, b)| (*s, b.as_str())), expect.map(|b| (200, b)), "envoy via {front}");
        assert_eq!(
            from_isthmus.as_ref().map(|(s, b)| (*s, b.as_str())),
            from_envoy.as_ref().map(|(s, b)| (*s, b.as_str())),
            "isthmus via {front}"
        );
    }
    // The internal listener's private port admits only Isthmus' own connections.
    let inner = proxy.listener("inner");
    assert!(inner.ip().is_loopback(), "{inner}");
    assert_eq!(get(inner), None, "a stranger reaching the internal port is closed");
    tests::eventually(std::time::Duration::from_secs(5), || {
        (proxy.metric("isthmus_downstream_cx_internal_refused", "listener=\"inner\"") >= 1.0).then_some(())
    })
    .await;
}

/// Dual stack: `additional_addresses` serve the same config on another address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additional_addresses_serve_the_same_listener() {
    // A free port on both loopbacks (bound and released; the proxy binds it right after).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listener = format!(
        "  - name: dual\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n    additional_addresses: [{{address: {{socket_address: {{address: 127.0.0.2, port_value: {port}}}}}}}]\n    filter_chains:\n{}",
        direct("only", "dual-stack")
    );
    let yaml = format!(
        "node: {{id: t, cluster: t}}\nadmin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}\nstatic_resources:\n  listeners:\n{listener}"
    );
    let proxy = Proxy::start(&yaml);
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        assert_eq!(get(addr), Some((200, "dual-stack".to_string())), "{addr}");
    }
    drop(proxy);
}

fn post(addr: SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn stat(admin: SocketAddr, name: &str) -> Option<u64> {
    let (_, body) = tests::proxy::http_get_blocking(admin, &format!("/stats?filter=^{name}$"))?;
    body.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
}

/// pilot-agent's shutdown call, `POST /drain_listeners?inboundonly`: inbound listeners stop
/// taking connections, outbound ones keep serving (the app can still call out while it stops);
/// side by side with Envoy 1.40.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_listeners_inboundonly_as_envoy() {
    let listener = |name: &str, dir: &str| {
        format!(
            "  - name: {name}\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    traffic_direction: {dir}\n    filter_chains:\n{}",
            direct(name, name)
        )
    };
    let yaml = format!(
        "node: {{id: t, cluster: t}}\nadmin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}\nstatic_resources:\n  listeners:\n{}{}",
        listener("inbound", "INBOUND"),
        listener("outbound", "OUTBOUND")
    );
    let envoy = Envoy::start(&yaml).await;
    let proxy = Proxy::start(&yaml);
    let planes = [
        ("envoy", envoy.admin, envoy.listener("inbound"), envoy.listener("outbound")),
        ("isthmus", proxy.admin, proxy.listener("inbound"), proxy.listener("outbound")),
    ];
    for (plane, admin, inbound, outbound) in planes {
        assert_eq!(get(inbound), Some((200, "inbound".to_string())), "{plane}");
        assert_eq!(post(admin, "/drain_listeners?inboundonly"), 200, "{plane}");
        tests::eventually(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(inbound).is_err().then_some(())
        })
        .await;
        assert_eq!(get(outbound), Some((200, "outbound".to_string())), "{plane}: outbound keeps serving");
    }
    assert_eq!(
        stat(proxy.admin, "server.state"),
        stat(envoy.admin, "server.state"),
        "server.state after /drain_listeners"
    );
}

/// `proxy_100_continue` (istiod sets it on some gateways): by default the proxy answers
/// `100 Continue` itself and the upstream never sees the expectation; with it set the header
/// goes upstream. Same requests through Envoy 1.40 and Isthmus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_as_envoy() {
    use tests::upstream::{Behaviour, Upstream};
    use tests::yaml::{bootstrap, cluster, http_listener};
    let up = Upstream::start("expect", Behaviour::default()).await;
    let route = "              - match: {prefix: /}\n                route: {cluster: backend}\n";
    for (setting, forwarded) in [("", false), ("          proxy_100_continue: true\n", true)] {
        let l = http_listener("ingress", route, "")
            .replace("          stat_prefix: ingress\n", &format!("          stat_prefix: ingress\n{setting}"));
        let yaml = bootstrap(&[l], &[cluster("backend", &[up.addr], "")]);
        let envoy = Envoy::start(&yaml).await;
        let proxy = Proxy::start(&yaml);
        for (plane, addr) in [("envoy", envoy.listener("ingress")), ("isthmus", proxy.listener("ingress"))] {
            let out = std::process::Command::new("curl")
                .args(["-s", "-m", "5", "-H", "Expect: 100-continue", "--data-binary", "payload"])
                .arg(format!("http://{addr}/headers"))
                .output()
                .unwrap();
            let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{plane}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
            assert_eq!(seen.get("expect").is_some(), forwarded, "{plane} {setting:?}: {seen}");
        }
    }
}
