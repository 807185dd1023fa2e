//! mTLS with a real Envoy 1.40 as the peer, in both directions, on the config istiod sends a
//! sidecar (spec §2.1, §5, §6.3): Envoy client sidecar → Isthmus inbound, Isthmus client
//! sidecar → Envoy inbound, HTTP and TCP each; a wrong server identity refused both ways; and
//! two "clusters" (one root, an intermediate each) joined by an Isthmus east-west gateway in
//! AUTO_PASSTHROUGH mode, with mTLS end to end between the sidecars.
//!
//! Every certificate is made per test by `tests::pki` (root → cluster1/cluster2 intermediates →
//! leaves with only a SPIFFE URI SAN). Clients live under cluster1, servers under cluster2 and
//! trust only the root, so every handshake also proves the intermediate is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tests::envoy::Envoy;
use tests::openssl;
use tests::pki::{path_str, spiffe, Leaf, MeshPki};
use tests::proxy::Proxy;
use tests::upstream::{get, tcp_echo, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to, tcp_listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- config builders (std only; every config they make was checked with `envoy --mode validate`) ----

/// The SNI istiod gives the `echo` service's port-8080 cluster (spec §5.1).
const SNI: &str = "outbound_.8080_._.echo.default.svc.cluster.local";

/// The ALPN tokens the inbound HTTP chain matches (istiod STRICT/PERMISSIVE inbound, spec §2.1).
const HTTP_CHAIN_ALPNS: &str = "istio-http/1.0, istio-http/1.1, istio-h2";

/// The ALPN tokens the inbound mTLS TCP chain matches.
const TCP_CHAIN_ALPNS: &str = "istio-peer-exchange, istio";

/// Every Istio mTLS ALPN: what an AUTO_PASSTHROUGH gateway chain matches (spec §5.1).
const ALL_ISTIO_ALPNS: &str = "istio, istio-peer-exchange, istio-http/1.0, istio-http/1.1, istio-h2";

const STDOUT_LOG: &str = r#"{name: envoy.access_loggers.stdout, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}"#;

/// Shifts every non-empty line of `s` right by `n` spaces.
fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("{pad}{l}\n") }).collect()
}

/// `match_typed_subject_alt_names` for one exact SPIFFE id (none when `san` is None).
fn san_matcher(san: Option<&str>) -> String {
    match san {
        Some(id) => format!("match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: \"{id}\"}}}}]"),
        None => String::new(),
    }
}

/// Key material and trust as files (what the Isthmus side uses): `tls_certificates` and a
/// `validation_context` with the root and, optionally, the peer identity to require.
fn files_material(chain: &Path, key: &Path, root: &Path, san: Option<&str>) -> String {
    let (chain, key, root) = (chain.display(), key.display(), root.display());
    let sans = match san {
        Some(_) => format!(", {}", san_matcher(san)),
        None => String::new(),
    };
    format!(
        r#"tls_certificates: [{{certificate_chain: {{filename: "{chain}"}}, private_key: {{filename: "{key}"}}}}]
validation_context: {{trusted_ca: {{filename: "{root}"}}{sans}}}
"#
    )
}

/// Key material and trust by SDS name, exactly as istiod writes it (what the Envoy side uses):
/// `default` and `ROOTCA`, here served from `static_resources.secrets` (see [`static_secrets`])
/// instead of istio-agent's socket.
fn secrets_material(san: Option<&str>) -> String {
    let sans = san_matcher(san);
    format!(
        r#"tls_certificate_sds_secret_configs: [{{name: default}}]
combined_validation_context:
  default_validation_context: {{{sans}}}
  validation_context_sds_secret_config: {{name: ROOTCA}}
"#
    )
}

/// `static_resources.secrets` holding `default` (chain + key) and `ROOTCA`, to append to a
/// bootstrap from [`bootstrap`].
fn static_secrets(chain: &Path, key: &Path, root: &Path) -> String {
    let (chain, key, root) = (chain.display(), key.display(), root.display());
    format!(
        r#"  secrets:
  - name: default
    tls_certificate: {{certificate_chain: {{filename: "{chain}"}}, private_key: {{filename: "{key}"}}}}
  - name: ROOTCA
    validation_context: {{trusted_ca: {{filename: "{root}"}}}}
"#
    )
}

/// A listener-side `transport_socket`: DownstreamTlsContext requiring a client certificate.
fn downstream_tls(material: &str, alpn: &str) -> String {
    let material = indent(material, 6);
    let alpn = if alpn.is_empty() { String::new() } else { format!("\n      alpn_protocols: [{alpn}]") };
    format!(
        r#"transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
    require_client_certificate: true
    common_tls_context:{alpn}
      tls_params: {{tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3}}
{material}"#
    )
}

/// A cluster-side `transport_socket`: UpstreamTlsContext with Istio's SNI.
fn upstream_tls(material: &str, alpn: &str) -> String {
    let material = indent(material, 6);
    let alpn = if alpn.is_empty() { String::new() } else { format!("\n      alpn_protocols: [{alpn}]") };
    format!(
        r#"transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: {SNI}
    common_tls_context:{alpn}
      tls_params: {{tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3}}
{material}"#
    )
}

/// A server sidecar's inbound listener in istiod's shape (spec §2.1): `tls_inspector`, an mTLS
/// HTTP chain picked by the client's `istio-http/*` offer → HCM → `inbound|8080||http`, and an
/// mTLS TCP chain picked by `istio-peer-exchange`/`istio` → tcp_proxy → `inbound|8080||tcp`.
/// `http_alpn`/`tcp_alpn` are what the server itself negotiates on each chain.
fn inbound_listener(material: &str, http_alpn: &str, tcp_alpn: &str) -> String {
    let http_tls = indent(&downstream_tls(material, http_alpn), 4);
    let tcp_tls = indent(&downstream_tls(material, tcp_alpn), 4);
    let item = format!(
        r#"- name: inbound
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
  listener_filters:
  - name: envoy.filters.listener.tls_inspector
    typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
  filter_chains:
  - filter_chain_match: {{transport_protocol: tls, application_protocols: [{HTTP_CHAIN_ALPNS}]}}
{http_tls}    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: inbound_0.0.0.0_8080
        access_log: [{STDOUT_LOG}]
        route_config:
          name: inbound|8080||
          virtual_hosts:
          - name: inbound|http|8080
            domains: ["*"]
            routes: [{{match: {{prefix: "/"}}, route: {{cluster: "inbound|8080||http"}}}}]
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  - filter_chain_match: {{transport_protocol: tls, application_protocols: [{TCP_CHAIN_ALPNS}]}}
{tcp_tls}    filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: inbound|8080||
        cluster: "inbound|8080||tcp"
        access_log: [{STDOUT_LOG}]
"#
    );
    indent(&item, 2)
}

/// A server sidecar: [`inbound_listener`] and its two local app clusters.
fn server_sidecar(
    material: &str,
    http_alpn: &str,
    tcp_alpn: &str,
    app_http: SocketAddr,
    app_tcp: SocketAddr,
) -> String {
    bootstrap(
        &[inbound_listener(material, http_alpn, tcp_alpn)],
        &[cluster("inbound|8080||http", &[app_http], ""), cluster("inbound|8080||tcp", &[app_tcp], "")],
    )
}

/// An outbound cluster to `target` the way istiod sends it (spec §2.1 "auto mTLS"):
/// `transport_socket_matches` tlsMode-istio → TLS, tlsMode-disabled → raw_buffer, and the
/// endpoint labelled `tlsMode: istio`.
fn mtls_cluster(name: &str, target: SocketAddr, upstream_tls: &str) -> String {
    let tls = indent(upstream_tls, 4);
    let (ip, port) = (target.ip(), target.port());
    let item = format!(
        r#"- name: {name}
  type: STATIC
  connect_timeout: 2s
  transport_socket_matches:
  - name: tlsMode-istio
    match: {{tlsMode: istio}}
{tls}  - name: tlsMode-disabled
    match: {{}}
    transport_socket: {{name: envoy.transport_sockets.raw_buffer, typed_config: {{"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}}}
  load_assignment:
    cluster_name: {name}
    endpoints:
    - lb_endpoints:
      - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
        metadata: {{filter_metadata: {{envoy.transport_socket_match: {{tlsMode: istio}}}}}}
"#
    );
    indent(&item, 2)
}

/// A client sidecar. For each `(suffix, material)`: listeners `http_out{suffix}` (HCM) and
/// `tcp_out{suffix}` (tcp_proxy) to clusters `echo_http{suffix}` / `echo_tcp{suffix}` at
/// `target`, offering `http_alpn` / `tcp_alpn`.
fn client_sidecar(target: SocketAddr, http_alpn: &str, tcp_alpn: &str, variants: &[(&str, String)]) -> String {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (suffix, material) in variants {
        let (h, t) = (format!("echo_http{suffix}"), format!("echo_tcp{suffix}"));
        listeners.push(http_listener(&format!("http_out{suffix}"), &route_to(&h, ""), ""));
        listeners.push(tcp_listener(&format!("tcp_out{suffix}"), &t));
        clusters.push(mtls_cluster(&h, target, &upstream_tls(material, http_alpn)));
        clusters.push(mtls_cluster(&t, target, &upstream_tls(material, tcp_alpn)));
    }
    bootstrap(&listeners, &clusters)
}

/// An east-west gateway in AUTO_PASSTHROUGH mode (contract §3, spec §5.1, istiod's
/// `gateway.go`): `tls_inspector`, one chain per service keyed on its SNI and the Istio mTLS
/// ALPNs, `sni_cluster` + tcp_proxy (BlackHoleCluster as the fallback), no TLS context — the
/// bytes stay encrypted. The SNI-named cluster leads to `backend`.
fn eastwest_gateway(backend: SocketAddr) -> String {
    let listener = format!(
        r#"  - name: eastwest
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match:
        server_names: ["{SNI}"]
        application_protocols: [{ALL_ISTIO_ALPNS}]
      filters:
      - name: envoy.filters.network.sni_cluster
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: BlackHoleCluster
          cluster: BlackHoleCluster
"#
    );
    let blackhole = "  - name: BlackHoleCluster\n    type: STATIC\n    connect_timeout: 10s\n".to_string();
    bootstrap(&[listener], &[cluster(SNI, &[backend], ""), blackhole])
}

// ---- end of config builders ----

/// The client identity (cluster1) and the server identity (cluster2) of one test.
struct Mesh {
    pki: MeshPki,
    client: Leaf,
    server: Leaf,
    client_id: String,
    server_id: String,
}

fn mesh(tag: &str) -> Mesh {
    let pki = MeshPki::new(tag);
    let (client_id, server_id) = (spiffe("default", "sleep"), spiffe("default", "echo"));
    let client = pki.leaf("cluster1", &client_id, &[]);
    let server = pki.leaf("cluster2", &server_id, &[]);
    Mesh { pki, client, server, client_id, server_id }
}

/// Envoy as an Istio client sidecar of `m` (cluster1 identity, expecting the server's SPIFFE
/// id) sending to `target`: the config istiod gives Envoy (spec §2.1).
fn istio_envoy_client(target: SocketAddr, m: &Mesh) -> String {
    client_sidecar(
        target,
        "istio-http/1.1, istio, http/1.1",
        "istio-peer-exchange, istio",
        &[("", secrets_material(Some(&m.server_id)))],
    ) + &static_secrets(&m.client.chain, &m.client.key, &m.pki.root)
}

/// Envoy as an Istio server sidecar of `m` (cluster2 identity) in front of `app` (HTTP) and
/// `echo` (TCP), with the ALPN lists istiod gives its inbound chains (spec §2.1).
fn istio_envoy_server(m: &Mesh, app: SocketAddr, echo: SocketAddr) -> String {
    server_sidecar(&secrets_material(None), "h2, http/1.1", "istio-peer-exchange, h2, http/1.1", app, echo)
        + &static_secrets(&m.server.chain, &m.server.key, &m.pki.root)
}

/// One line of text through a tcp_proxy path and the echo app; Err if it does not come back
/// within 5 s.
async fn tcp_round_trip(addr: SocketAddr, msg: &[u8]) -> Result<(), String> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(msg).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if buf == msg {
            Ok(())
        } else {
            Err(format!("got {:?}", String::from_utf8_lossy(&buf)))
        }
    };
    tokio::time::timeout(Duration::from_secs(5), work).await.map_err(|_| "timed out".to_string())?
}

/// An HTTP GET through a client sidecar must reach the app through the server's HTTP chain.
async fn assert_http_reaches_app(addr: SocketAddr, app: &Upstream) {
    let before = app.hits();
    let (status, headers, body) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(status, 200, "body: {}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-upstream"].to_str().unwrap(), "app");
    assert_eq!(app.hits(), before + 1);
}

/// `downstream_peer_uri_san` of every JSON access-log line so far (contract §4).
fn peer_uri_sans(proxy: &Proxy) -> Vec<String> {
    proxy
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["downstream_peer_uri_san"].as_str().map(str::to_string))
        .collect()
}

/// Waits until the proxy has logged `n` connections/requests from peer `id`.
async fn await_peer_logged(proxy: &Proxy, id: &str, n: usize) {
    tests::eventually(Duration::from_secs(5), || {
        (peer_uri_sans(proxy).iter().filter(|s| s.as_str() == id).count() >= n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_client_sidecar_to_isthmus_inbound_http_and_tcp() {
    // Both sides run the config shape istiod sends an Envoy sidecar (spec §2.1): the Envoy
    // client has istiod's outbound cluster (auto-mTLS matches, SNI, SDS names default/ROOTCA,
    // SAN match) and offers what the istio.alpn filter would; Isthmus has istiod's inbound
    // listener (chains on transport + offered ALPN).
    let m = mesh("envoy-to-isthmus");
    let app = Upstream::start("app", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let server_files = files_material(&m.server.chain, &m.server.key, &m.pki.root, None);
    let isthmus = Proxy::start(&server_sidecar(&server_files, "h2, http/1.1", "", app.addr, echo));
    let inbound = isthmus.listener("inbound");

    let client_yaml = istio_envoy_client(inbound, &m);
    let envoy = Envoy::start(&client_yaml).await;

    assert_http_reaches_app(envoy.listener("http_out"), &app).await;
    tcp_round_trip(envoy.listener("tcp_out"), b"ping over envoy mtls\n").await.unwrap();

    // Isthmus saw the Envoy client's SPIFFE id on the HTTP request and on the TCP connection
    // (logged when the tcp_proxy session ends; Envoy closes it when our socket is dropped).
    await_peer_logged(&isthmus, &m.client_id, 2).await;
    assert!(isthmus.metric_with("isthmus_tls_handshakes_total", &["side=\"downstream\""]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isthmus_client_sidecar_to_envoy_inbound_http_and_tcp() {
    // Both sides run the config shape istiod sends an Envoy sidecar (spec §2.1): Envoy has
    // istiod's inbound listener, whose own ALPN lists are `h2, http/1.1` (HTTP chain) and
    // `istio-peer-exchange, h2, http/1.1` (TCP chain); Isthmus has istiod's outbound clusters
    // with `alpn_protocols: [istio-peer-exchange, istio]` on both, and must offer
    // `istio-http/1.1, istio, http/1.1` on its HTTP pool (or the request would land on
    // Envoy's TCP chain and hit the echo app) and `istio` for TCP (no overlap with Envoy's
    // list: BoringSSL goes on without ALPN).
    let m = mesh("isthmus-to-envoy");
    let app = Upstream::start("app", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let server_yaml = istio_envoy_server(&m, app.addr, echo);
    let envoy = Envoy::start(&server_yaml).await;
    let inbound = envoy.listener("inbound");

    let client_files = files_material(&m.client.chain, &m.client.key, &m.pki.root, Some(&m.server_id));
    let isthmus = Proxy::start(&client_sidecar(
        inbound,
        "istio-peer-exchange, istio",
        "istio-peer-exchange, istio",
        &[("", client_files)],
    ));

    assert_http_reaches_app(isthmus.listener("http_out"), &app).await;
    tcp_round_trip(isthmus.listener("tcp_out"), b"ping over isthmus mtls\n").await.unwrap();
    assert!(isthmus.metric_with("isthmus_tls_handshakes_total", &["side=\"upstream\""]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_client_expecting_another_identity_is_refused_by_isthmus_inbound() {
    // The config shape istiod sends an Envoy sidecar (spec §2.1), with the SAN match naming
    // another service account on the `_wrong` variant; the same Envoy's correct variant is the
    // control.
    let m = mesh("envoy-wrong-san");
    let app = Upstream::start("app", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let server_files = files_material(&m.server.chain, &m.server.key, &m.pki.root, None);
    let isthmus = Proxy::start(&server_sidecar(&server_files, "h2, http/1.1", "", app.addr, echo));

    let other = spiffe("default", "other");
    let client_yaml = client_sidecar(
        isthmus.listener("inbound"),
        "istio-http/1.1, istio, http/1.1",
        "istio-peer-exchange, istio",
        &[("", secrets_material(Some(&m.server_id))), ("_wrong", secrets_material(Some(&other)))],
    ) + &static_secrets(&m.client.chain, &m.client.key, &m.pki.root);
    let envoy = Envoy::start(&client_yaml).await;

    let (status, _, _) = get(envoy.listener("http_out_wrong"), "/", &[]).await.unwrap();
    assert_eq!(status, 503, "Envoy must refuse Isthmus's certificate for another SA");
    assert!(tcp_round_trip(envoy.listener("tcp_out_wrong"), b"must not pass\n").await.is_err());
    assert_eq!(app.hits(), 0);
    tests::eventually(Duration::from_secs(5), || {
        (isthmus.metric_with("isthmus_tls_handshake_errors_total", &["side=\"downstream\""]) >= 1.0).then_some(())
    })
    .await;

    assert_http_reaches_app(envoy.listener("http_out"), &app).await;
    tcp_round_trip(envoy.listener("tcp_out"), b"control\n").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isthmus_client_expecting_another_identity_refuses_envoy_inbound() {
    // The config shape istiod sends an Envoy sidecar (spec §2.1); Isthmus's `_wrong` clusters
    // require another service account's SPIFFE id (the SNI must not count as the expected
    // name, spec §5.1), its plain clusters are the control.
    let m = mesh("isthmus-wrong-san");
    let app = Upstream::start("app", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let server_yaml = istio_envoy_server(&m, app.addr, echo);
    let envoy = Envoy::start(&server_yaml).await;

    let other = spiffe("default", "other");
    let material = |san: &str| files_material(&m.client.chain, &m.client.key, &m.pki.root, Some(san));
    let isthmus = Proxy::start(&client_sidecar(
        envoy.listener("inbound"),
        "istio-peer-exchange, istio",
        "istio-peer-exchange, istio",
        &[("", material(&m.server_id)), ("_wrong", material(&other))],
    ));

    let (status, _, _) = get(isthmus.listener("http_out_wrong"), "/", &[]).await.unwrap();
    assert_eq!(status, 503, "Isthmus must refuse Envoy's certificate for another SA");
    assert!(tcp_round_trip(isthmus.listener("tcp_out_wrong"), b"must not pass\n").await.is_err());
    assert_eq!(app.hits(), 0);
    tests::eventually(Duration::from_secs(5), || {
        let n = isthmus
            .metric_with("isthmus_tls_handshake_errors_total", &["side=\"upstream\"", "reason=\"san_mismatch\""]);
        (n >= 1.0).then_some(())
    })
    .await;

    assert_http_reaches_app(isthmus.listener("http_out"), &app).await;
    tcp_round_trip(isthmus.listener("tcp_out"), b"control\n").await.unwrap();
}

/// Cluster 2: an Isthmus server sidecar (cluster2 leaf) behind an Isthmus east-west gateway.
/// Returns (server sidecar, gateway).
fn cluster2(m: &Mesh, app: SocketAddr, echo: SocketAddr) -> (Proxy, Proxy) {
    let server_files = files_material(&m.server.chain, &m.server.key, &m.pki.root, None);
    let server = Proxy::start(&server_sidecar(&server_files, "h2, http/1.1", "", app, echo));
    let gateway = Proxy::start(&eastwest_gateway(server.listener("inbound")));
    (server, gateway)
}

/// What the gateway presents, seen by `openssl s_client` offering Istio's TCP ALPN: the server
/// sidecar's leaf for the service's SNI (passthrough: the gateway has no certificate), and
/// nothing for an unknown SNI (closed).
fn assert_gateway_passes_through(m: &Mesh, gateway: SocketAddr) {
    let root = path_str(&m.pki.root);
    let mut args = vec!["-alpn", "istio", "-CAfile", root.as_str(), "-verify_return_error"];
    let client = m.client.openssl_args();
    args.extend(client.iter().map(String::as_str));
    let (san, serial) = openssl::peer_san_and_serial(gateway, SNI, &args);
    assert_eq!(serial, m.server.serial, "the backend's certificate, through the gateway (SAN {san})");
    assert!(san.contains(&m.server_id), "{san}");
    let unknown = openssl::peer_san_and_serial(gateway, "outbound_.9090_._.other.default.svc.cluster.local", &args);
    assert_eq!(unknown, (String::new(), String::new()), "an unknown SNI must be closed without a certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isthmus_sidecar_through_isthmus_eastwest_gateway_to_isthmus_sidecar() {
    // All three run the config shape istiod sends (spec §2.1, §5.1): outbound auto-mTLS
    // cluster whose endpoint is the remote network's gateway, AUTO_PASSTHROUGH gateway,
    // inbound mTLS listener. Client leaf under cluster1, server leaf under cluster2.
    let m = mesh("isthmus-eastwest");
    let app = Upstream::start("app", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let (server, gateway) = cluster2(&m, app.addr, echo);
    let gw = gateway.listener("eastwest");

    let client_files = files_material(&m.client.chain, &m.client.key, &m.pki.root, Some(&m.server_id));
    let client = Proxy::start(&client_sidecar(
        gw,
        "istio-peer-exchange, istio",
        "istio-peer-exchange, istio",
        &[("", client_files)],
    ));
    assert_http_reaches_app(client.listener("http_out"), &app).await;
    tcp_round_trip(client.listener("tcp_out"), b"across the gateway\n").await.unwrap();
    drop(client); // ends the TCP session so the server sidecar logs it
    await_peer_logged(&server, &m.client_id, 2).await;
    assert_eq!(gateway.metric_with("isthmus_tls_handshakes_total", &[]), 0.0, "the gateway terminates nothing");
    assert_gateway_passes_through(&m, gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sidecar_through_isthmus_eastwest_gateway_to_isthmus_sidecar() {
    // The config shape istiod sends (spec §2.1, §5.1): Envoy's outbound cluster points at the
    // remote gateway with the service's SNI; the Isthmus gateway routes on that SNI alone.
    let m = mesh("envoy-eastwest");
    let app = Upstream::start("app", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let (server, gateway) = cluster2(&m, app.addr, echo);
    let gw = gateway.listener("eastwest");

    let client_yaml = istio_envoy_client(gw, &m);
    let envoy = Envoy::start(&client_yaml).await;
    assert_http_reaches_app(envoy.listener("http_out"), &app).await;
    tcp_round_trip(envoy.listener("tcp_out"), b"envoy across the gateway\n").await.unwrap();
    await_peer_logged(&server, &m.client_id, 2).await;
    assert_eq!(gateway.metric_with("isthmus_tls_handshakes_total", &[]), 0.0, "the gateway terminates nothing");
}
