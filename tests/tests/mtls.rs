//! Data-plane mTLS against independent peers (spec §6.3): `openssl s_client`/`s_server` and
//! curl talk to the real isthmus binary configured in Envoy's language (Istio-shaped
//! listeners and clusters). Certificates are made per test by `tests::pki` (one root,
//! per-cluster intermediates, SPIFFE-only leaves).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::openssl::{peer_san_and_serial, run_bounded, tls_exchange, SClient, SServer};
use tests::pki::{path_str, spiffe, Leaf, MeshPki};
use tests::proxy::Proxy;
use tests::upstream::{Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, tcp_listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Istio SNI of the service every test calls.
const SNI: &str = "outbound_.8080_._.echo.default.svc.cluster.local";
/// How long any awaited event may take.
const WAIT: Duration = Duration::from_secs(10);
/// Istio's HTTP client ALPN (the `istio.alpn` filter's list for HTTP/1.1).
const ISTIO_HTTP_ALPN: &str = "istio-http/1.1,istio,http/1.1";
/// Istio's TCP client ALPN.
const ISTIO_TCP_ALPN: &str = "istio-peer-exchange,istio";
/// A request the upstream answers and after which the proxy closes.
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

const TLS_INSPECTOR: &str = "    - name: envoy.filters.listener.tls_inspector\n      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}\n";
const HTTP_INSPECTOR: &str = "    - name: envoy.filters.listener.http_inspector\n      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector}\n";

/// Istio's inbound match for the mTLS HTTP chain.
const MATCH_MTLS_HTTP: &str =
    "{transport_protocol: tls, application_protocols: [istio-http/1.0, istio-http/1.1, istio-h2]}";
/// Istio's inbound match for the mTLS TCP chain.
const MATCH_MTLS_TCP: &str = "{transport_protocol: tls, application_protocols: [istio-peer-exchange, istio]}";

// ---------------------------------------------------------------------------------------
// Envoy YAML for the tests (same indentation as tests::yaml: listeners and clusters are
// list items indented 2, filter chains items indented 4, chain fields indented 6).

/// A listener on 127.0.0.1:0 with `listener_filters` (items indented 4, may be empty) and
/// filter chains built by [`chain`].
fn listener(name: &str, listener_filters: &str, chains: &[String]) -> String {
    let lf =
        if listener_filters.is_empty() { String::new() } else { format!("    listener_filters:\n{listener_filters}") };
    format!(
        "  - name: {name}\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n{lf}    filter_chains:\n{}",
        chains.concat()
    )
}

/// One filter chain: `filter_chain_match` (flow YAML, or empty), a `transport_socket` block
/// (or empty) and a `filters` block, each indented 6.
fn chain(match_: &str, transport: &str, filters: &str) -> String {
    let m = if match_.is_empty() { String::new() } else { format!("      filter_chain_match: {match_}\n") };
    let body = format!("{m}{transport}{filters}");
    format!("    - {}", &body[6..])
}

/// An HTTP connection manager routing everything to `cluster`, access log on stdout;
/// `hcm_extra` is more HCM YAML (indented 10).
fn hcm(stat: &str, cluster: &str, hcm_extra: &str) -> String {
    format!(
        r#"      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat}
{hcm_extra}          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: "{cluster}"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

/// A tcp_proxy to `cluster`, access log on stdout.
fn tcp_proxy(stat: &str, cluster: &str) -> String {
    format!(
        r#"      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {stat}
          cluster: "{cluster}"
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}
"#
    )
}

/// A `tls_certificates` entry for a leaf's chain and key files.
fn cert_files(chain: &Path, key: &Path) -> String {
    format!(
        "{{certificate_chain: {{filename: \"{}\"}}, private_key: {{filename: \"{}\"}}}}",
        chain.display(),
        key.display()
    )
}

/// `validation_context` trusting `root`, optionally requiring a URI SAN prefix (indented 12).
fn validation(root: &Path, san_prefix: Option<&str>) -> String {
    let mut v =
        format!("            validation_context:\n              trusted_ca: {{filename: \"{}\"}}\n", root.display());
    if let Some(p) = san_prefix {
        v += &format!(
            "              match_typed_subject_alt_names: [{{san_type: URI, matcher: {{prefix: \"{p}\"}}}}]\n"
        );
    }
    v
}

/// A chain's `transport_socket`: DownstreamTlsContext with one certificate (flow YAML from
/// [`cert_files`]), `validation` (from [`validation`], or empty) and server ALPN.
fn downstream_tls(certificate: &str, validation: &str, require_client: bool, alpn: &[&str]) -> String {
    let alpn =
        if alpn.is_empty() { String::new() } else { format!("            alpn_protocols: [{}]\n", alpn.join(", ")) };
    format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: {require_client}
          common_tls_context:
{alpn}            tls_certificates: [{certificate}]
{validation}"#
    )
}

/// Istio's STRICT inbound TLS: the workload's chain, client certificate required, chain to
/// `root`, any SPIFFE id of the trust domain.
fn strict_tls(leaf: &Leaf, pki: &MeshPki, alpn: &[&str]) -> String {
    downstream_tls(
        &cert_files(&leaf.chain, &leaf.key),
        &validation(&pki.root, Some("spiffe://cluster.local/")),
        true,
        alpn,
    )
}

/// An UpstreamTlsContext as Istio's auto-mTLS sends it: Istio SNI, Istio ALPN tokens, the
/// workload chain, server verified to `root` and its URI SAN equal to `server_san`.
fn upstream_tls(client: &Leaf, root: &Path, server_san: &str) -> String {
    format!(
        r#"        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: {SNI}
          common_tls_context:
            alpn_protocols: [istio-peer-exchange, istio]
            tls_certificates: [{cert}]
            validation_context:
              trusted_ca: {{filename: "{root}"}}
              match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: "{server_san}"}}}}]
"#,
        cert = cert_files(&client.chain, &client.key),
        root = root.display(),
    )
}

/// A STATIC cluster with Istio's `transport_socket_matches` (`tlsMode: istio` → `tls`, else
/// plaintext) whose one endpoint is labelled `tlsMode: istio`.
fn auto_mtls_cluster(name: &str, host: SocketAddr, tls: &str) -> String {
    format!(
        r#"  - name: "{name}"
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    transport_socket_matches:
    - name: tlsMode-istio
      match: {{tlsMode: istio}}
      transport_socket:
{tls}    - name: tlsMode-disabled
      match: {{}}
      transport_socket:
        name: envoy.transport_sockets.raw_buffer
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}
    load_assignment:
      cluster_name: "{name}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
          metadata: {{filter_metadata: {{envoy.transport_socket_match: {{tlsMode: istio}}}}}}
"#,
        ip = host.ip(),
        port = host.port(),
    )
}

// ---------------------------------------------------------------------------------------
// Peers and observations.

/// `openssl s_client` arguments of an Istio client: SNI, ALPN, its chain, verifying the
/// server to `root`.
fn istio_client_args(client: &Leaf, root: &Path, alpn: &str) -> Vec<String> {
    let ca = path_str(root);
    let mut a: Vec<String> =
        ["-servername", SNI, "-alpn", alpn, "-CAfile", ca.as_str(), "-verify_return_error"].map(String::from).into();
    a.extend(client.openssl_args());
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A TCP echo that prefixes every reply with `[tag] `, so a test sees which upstream served.
async fn tagged_echo(tag: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut out = format!("[{tag}] ").into_bytes();
                            out.extend_from_slice(&buf[..n]);
                            if s.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Plain TCP: sends `msg`, then reads until `until` shows up, the peer closes, or [`WAIT`].
async fn tcp_exchange(addr: SocketAddr, msg: &[u8], until: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(msg).await; // a proxy that refuses may already have reset the connection
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !until.is_empty() && String::from_utf8_lossy(&got).contains(until) {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// An `openssl s_server` as a mesh workload: `leaf`'s chain, client certificates required and
/// verified to the mesh root, the given ALPN list, a status page (`-www`) and SNI logging.
fn mesh_s_server(pki: &MeshPki, leaf: &Leaf, alpn: &str) -> SServer {
    let ca = path_str(&pki.root);
    let mut args: Vec<String> =
        ["-CAfile", ca.as_str(), "-Verify", "1", "-verify_return_error", "-alpn", alpn, "-www", "-tlsextdebug"]
            .map(String::from)
            .into();
    args.extend(leaf.openssl_args());
    SServer::start(&strs(&args))
}

/// The `x-forwarded-client-cert` the upstream received for one mTLS request from `client`
/// (a forged header is sent along, to be replaced).
fn xfcc_seen_upstream(addr: SocketAddr, client: &Leaf, pki: &MeshPki) -> String {
    let args = istio_client_args(client, &pki.root, ISTIO_HTTP_ALPN);
    let req = b"GET /headers HTTP/1.1\r\nHost: x\r\nx-forwarded-client-cert: By=spoofed\r\nConnection: close\r\n\r\n";
    let (ok, out, err) = tls_exchange(addr, &strs(&args), req);
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}\n{err}");
    // The body (the upstream's `/headers` JSON) follows the response head.
    let head_end = out.find("HTTP/1.1 200").and_then(|i| out[i..].find("\r\n\r\n").map(|j| i + j)).expect("head");
    let body = &out[head_end..];
    let json = &body[body.find('{').expect("headers JSON")..];
    let headers: serde_json::Value =
        serde_json::Deserializer::from_str(json).into_iter::<serde_json::Value>().next().expect("JSON").unwrap();
    headers["x-forwarded-client-cert"].as_str().expect("XFCC header").to_string()
}

/// curl (bounded): (success, response head + body).
fn curl(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(tests::tool("curl"));
    cmd.args(["-sS", "-i", "--max-time", "10"]).args(args);
    let out = run_bounded(cmd, b"", Duration::from_secs(15));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `isthmus_tls_handshake_errors_total{side, reason}`.
fn tls_errors(proxy: &Proxy, side: &str, reason: &str) -> f64 {
    proxy.metric_with(
        "isthmus_tls_handshake_errors_total",
        &[&format!("side=\"{side}\""), &format!("reason=\"{reason}\"")],
    )
}

/// Waits until `isthmus_tls_handshake_errors_total{side, reason}` reaches `n`.
async fn await_tls_errors(proxy: &Proxy, side: &str, reason: &str, n: f64) {
    tests::eventually(WAIT, || (tls_errors(proxy, side, reason) >= n).then_some(())).await;
}

/// The first access-log entry (JSON on stdout) whose `downstream_peer_uri_san` is `san`.
fn access_log_for_peer(proxy: &Proxy, san: &str) -> Option<serde_json::Value> {
    proxy
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["downstream_peer_uri_san"] == san)
}

/// Asserts a failed mTLS attempt: no completed session, no application data.
fn assert_refused((ok, out, err): &(bool, String, String), what: &str) {
    assert!(!ok, "{what}: the handshake must fail\n{out}\n{err}");
    assert!(!out.contains("HTTP/1.1 200"), "{what}: no response may come back\n{out}");
}

// ---------------------------------------------------------------------------------------
// The tests.

/// §6.3 Inbound STRICT: an Istio HTTP client (full chain from the other cluster's
/// intermediate, Istio SNI, `istio-http/1.1,istio,http/1.1`) gets the upstream's 200 and the
/// access log names its SPIFFE id; no client certificate, a foreign root, an expired leaf
/// and a SPIFFE id outside the trust domain are refused with their reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_inbound_http_chain_admits_only_mesh_client_certificates() {
    let pki = MeshPki::new("strict");
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster2", &spiffe("default", "sleep"), &[]);
    let up = Upstream::start("strict-http", Behaviour::default()).await;
    let l = listener(
        "inbound",
        TLS_INSPECTOR,
        &[chain(MATCH_MTLS_HTTP, &strict_tls(&server, &pki, &["h2", "http/1.1"]), &hcm("inbound", "backend", ""))],
    );
    let proxy = Proxy::start(&bootstrap(&[l], &[cluster("backend", &[up.addr], "")]));
    let addr = proxy.listener("inbound");

    let args = istio_client_args(&client, &pki.root, ISTIO_HTTP_ALPN);
    let (ok, out, err) = tls_exchange(addr, &strs(&args), GET);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("HTTP/1.1 200"), "{out}\n{err}");
    assert!(out.to_ascii_lowercase().contains("x-upstream: strict-http"), "{out}");
    // The server offers plain tokens only: the client's plain `http/1.1` is chosen.
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    // The proxy presented leaf + intermediate: OpenSSL, trusting only the root, verified it.
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert_eq!(up.hits(), 1);
    let entry = tests::eventually(WAIT, || access_log_for_peer(&proxy, &client.spiffe)).await;
    assert_eq!(entry["downstream_tls"], true, "{entry}");
    assert!(proxy.metric_with("isthmus_tls_handshakes_total", &["side=\"downstream\""]) >= 1.0);

    // No client certificate: TLS 1.3 `certificate required`.
    let ca = path_str(&pki.root);
    let bare = ["-servername", SNI, "-alpn", ISTIO_HTTP_ALPN, "-CAfile", ca.as_str()];
    assert_refused(&tls_exchange(addr, &bare, GET), "no client certificate");
    await_tls_errors(&proxy, "downstream", "no_client_cert", 1.0).await;

    // A leaf of another mesh (its own root), presented with its full chain.
    let other = MeshPki::new("other");
    let foreign = other.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    let args = istio_client_args(&foreign, &pki.root, ISTIO_HTTP_ALPN);
    assert_refused(&tls_exchange(addr, &strs(&args), GET), "foreign root");
    await_tls_errors(&proxy, "downstream", "unknown_ca", 1.0).await;

    // Expired leaf of the right mesh.
    let old = pki.expired_leaf("cluster1", &spiffe("default", "sleep"));
    let args = istio_client_args(&old, &pki.root, ISTIO_HTTP_ALPN);
    assert_refused(&tls_exchange(addr, &strs(&args), GET), "expired client certificate");
    await_tls_errors(&proxy, "downstream", "expired", 1.0).await;

    // Right root, but a SPIFFE id outside `spiffe://cluster.local/`.
    let alien = pki.leaf("cluster1", "spiffe://elsewhere.example/ns/default/sa/sleep", &[]);
    let args = istio_client_args(&alien, &pki.root, ISTIO_HTTP_ALPN);
    assert_refused(&tls_exchange(addr, &strs(&args), GET), "SAN outside the trust domain");
    await_tls_errors(&proxy, "downstream", "san_mismatch", 1.0).await;

    assert_eq!(up.hits(), 1, "no refused client may reach the upstream");
}

/// §6.3 Istio TCP client shape (regression for the rustls ALPN no-overlap pitfall, §5.2):
/// `-alpn istio-peer-exchange,istio` lands on the mTLS TCP chain (no server ALPN), the
/// handshake completes without ALPN, bytes echo, and the TCP access log names the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_tcp_alpn_reaches_the_mtls_tcp_chain() {
    let pki = MeshPki::new("tcp");
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    let echo = tagged_echo("mtls-tcp").await;
    let l = listener(
        "inbound",
        TLS_INSPECTOR,
        &[chain(MATCH_MTLS_TCP, &strict_tls(&server, &pki, &[]), &tcp_proxy("inbound", "echo"))],
    );
    let proxy = Proxy::start(&bootstrap(&[l], &[cluster("echo", &[echo], "")]));
    let args = istio_client_args(&client, &pki.root, ISTIO_TCP_ALPN);
    let mut s = SClient::connect(proxy.listener("inbound"), &strs(&args));
    assert!(s.wait_handshake(WAIT), "{}\n{}", s.stdout.text(), s.stderr.text());
    assert!(s.stdout.wait_for("No ALPN negotiated", WAIT), "{}", s.stdout.text());
    s.send(b"ping over mtls\n");
    assert!(s.stdout.wait_for("[mtls-tcp] ping over mtls", WAIT), "{}\n{}", s.stdout.text(), s.stderr.text());
    drop(s); // closes the connection: the TCP access log is written at close
    let entry = tests::eventually(WAIT, || access_log_for_peer(&proxy, &client.spiffe)).await;
    assert_eq!(entry["downstream_tls"], true, "{entry}");
    assert_eq!(tls_errors(&proxy, "downstream", "no_alpn"), 0.0);
}

/// §6.3 Inbound PERMISSIVE: one listener (tls_inspector + http_inspector) with Istio's five
/// chains, each to its own upstream: plaintext HTTP/1.1 and h2c, mTLS HTTP with Istio ALPN,
/// mTLS TCP with Istio TCP ALPN, plain TLS without a client certificate (passed through to
/// an `openssl s_server`, whose certificate the client sees), plaintext opaque TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_listener_picks_the_chain_from_the_first_bytes() {
    let pki = MeshPki::new("permissive");
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster2", &spiffe("default", "sleep"), &[]);
    // A TLS server outside the mesh behind the passthrough chain.
    let legacy = pki.leaf("cluster2", &spiffe("legacy", "legacy"), &["legacy.example"]);
    let mut sargs = vec!["-www".to_string()];
    sargs.extend(legacy.openssl_args());
    let passthrough = SServer::start(&strs(&sargs));

    let mtls_http = Upstream::start("mtls-http", Behaviour::default()).await;
    let plain_http = Upstream::start("plain-http", Behaviour::default()).await;
    let mtls_tcp = tagged_echo("mtls-tcp").await;
    let plain_tcp = tagged_echo("plain-tcp").await;
    let chains = [
        chain(MATCH_MTLS_HTTP, &strict_tls(&server, &pki, &["h2", "http/1.1"]), &hcm("mtls_http", "mtls-http", "")),
        chain(MATCH_MTLS_TCP, &strict_tls(&server, &pki, &[]), &tcp_proxy("mtls_tcp", "mtls-tcp")),
        chain(
            "{transport_protocol: raw_buffer, application_protocols: [http/1.1, http/1.0, h2c]}",
            "",
            &hcm("plain_http", "plain-http", ""),
        ),
        chain("{transport_protocol: tls}", "", &tcp_proxy("passthrough", "passthrough")),
        chain("{transport_protocol: raw_buffer}", "", &tcp_proxy("plain_tcp", "plain-tcp")),
    ];
    let l = listener("permissive", &format!("{TLS_INSPECTOR}{HTTP_INSPECTOR}"), &chains);
    let proxy = Proxy::start(&bootstrap(
        &[l],
        &[
            cluster("mtls-http", &[mtls_http.addr], ""),
            cluster("plain-http", &[plain_http.addr], ""),
            cluster("mtls-tcp", &[mtls_tcp], ""),
            cluster("plain-tcp", &[plain_tcp], ""),
            cluster("passthrough", &[passthrough.addr], ""),
        ],
    ));
    let addr = proxy.listener("permissive");
    let url = format!("http://{addr}/");

    // Plaintext HTTP/1.1 and h2c.
    let (ok, out) = curl(&[&url]);
    assert!(ok && out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-upstream: plain-http"), "{out}");
    let (ok, out) = curl(&["--http2-prior-knowledge", &url]);
    assert!(ok && out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-upstream: plain-http"), "{out}");
    assert_eq!((plain_http.hits(), mtls_http.hits()), (2, 0));

    // mTLS HTTP: the offered `istio-http/1.1` (listed before `istio`) picks the HTTP chain.
    let args = istio_client_args(&client, &pki.root, ISTIO_HTTP_ALPN);
    let (ok, out, err) = tls_exchange(addr, &strs(&args), GET);
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}\n{err}");
    assert!(out.to_ascii_lowercase().contains("x-upstream: mtls-http"), "{out}");
    assert_eq!(mtls_http.hits(), 1);

    // mTLS TCP.
    let args = istio_client_args(&client, &pki.root, ISTIO_TCP_ALPN);
    let mut s = SClient::connect(addr, &strs(&args));
    assert!(s.wait_handshake(WAIT), "{}\n{}", s.stdout.text(), s.stderr.text());
    s.send(b"hello tcp\n");
    assert!(s.stdout.wait_for("[mtls-tcp] hello tcp", WAIT), "{}\n{}", s.stdout.text(), s.stderr.text());
    drop(s);

    // Plain TLS, no client certificate, ALPN h2: passed through untouched, so the client
    // sees the s_server's certificate, not the proxy's.
    let (san, serial) = peer_san_and_serial(addr, "legacy.example", &["-alpn", "h2"]);
    assert_eq!(serial, legacy.serial, "passthrough must show the backend's certificate ({san})");
    assert!(san.contains("DNS:legacy.example"), "{san}");
    let (ok, out, err) =
        tls_exchange(addr, &["-servername", "legacy.example", "-alpn", "h2"], b"GET / HTTP/1.0\r\n\r\n");
    assert!(ok && out.contains("HTTP/1.0 200 ok"), "the s_server's status page comes back:\n{out}\n{err}");

    // Plaintext opaque TCP (neither TLS nor HTTP).
    let got = tcp_exchange(addr, b"\x01\x02 opaque bytes\n", "opaque bytes").await;
    assert!(got.contains("[plain-tcp] \u{1}\u{2} opaque bytes"), "{got:?}");

    assert_eq!((plain_http.hits(), mtls_http.hits()), (2, 1), "each request reached exactly its own chain");
}

/// §6.3 Outbound: a tcp_proxy and an HTTP route to an auto-mTLS cluster (endpoint labelled
/// `tlsMode: istio`) whose peer is `openssl s_server -Verify 1 -verify_return_error` trusting
/// only the root. The proxy presents its chain (client under cluster1's intermediate, server
/// under cluster2's: cross-cluster), sends the Istio SNI, offers `istio` on TCP and
/// `istio-http/1.1, istio, http/1.1` on HTTP/1.1 (never `istio-peer-exchange`); a cluster
/// expecting another service account refuses the same server (`san_mismatch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_auto_mtls_presents_the_chain_and_verifies_the_server_identity() {
    let pki = MeshPki::new("outbound");
    let server = pki.leaf("cluster2", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    // OpenSSL's s_server aborts on an ALPN offer it shares nothing with (unlike Envoy), so it
    // also lists `istio` to accept the TCP offer; `-tlsextdebug` prints the SNI it got.
    let backend = mesh_s_server(&pki, &server, "h2,http/1.1,istio");

    let good = "outbound|8080||echo.default.svc.cluster.local";
    let clusters = [
        auto_mtls_cluster(good, backend.addr, &upstream_tls(&client, &pki.root, &spiffe("default", "echo"))),
        auto_mtls_cluster("wrong-sa", backend.addr, &upstream_tls(&client, &pki.root, &spiffe("default", "other"))),
    ];
    let listeners = [
        tcp_listener("outbound-tcp", good),
        tcp_listener("outbound-wrong", "wrong-sa"),
        listener("outbound-http", "", &[chain("", "", &hcm("outbound_http", good, ""))]),
    ];
    let proxy = Proxy::start(&bootstrap(&listeners, &clusters));

    // TCP: the status page the s_server returns describes the client certificate it verified.
    let page = tcp_exchange(proxy.listener("outbound-tcp"), b"GET / HTTP/1.0\r\n\r\n", "").await;
    assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
    assert!(page.contains("Client certificate"), "{page}");
    assert!(page.contains(&format!("URI:{}", client.spiffe)), "{page}");
    assert!(backend.snis().iter().any(|s| s == SNI), "SNI seen: {:?}", backend.snis());
    assert_eq!(backend.alpn_offers().first().map(String::as_str), Some("istio"), "{:?}", backend.alpn_offers());

    // HTTP/1.1 pool: the Istio HTTP tokens, then the plain one.
    let (ok, out) = curl(&[&format!("http://{}/", proxy.listener("outbound-http"))]);
    assert!(ok && out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(&format!("URI:{}", client.spiffe)), "{out}");
    assert!(
        backend.alpn_offers().iter().any(|a| a == "istio-http/1.1, istio, http/1.1"),
        "{:?}",
        backend.alpn_offers()
    );
    assert!(!backend.alpn_offers().iter().any(|a| a.contains("istio-peer-exchange")), "{:?}", backend.alpn_offers());
    assert!(proxy.metric_with("isthmus_tls_handshakes_total", &["side=\"upstream\""]) >= 2.0);

    // The server's URI SAN is not the expected one: the proxy aborts and closes downstream.
    let got = tcp_exchange(proxy.listener("outbound-wrong"), b"GET / HTTP/1.0\r\n\r\n", "").await;
    assert!(!got.contains("HTTP/1.0 200"), "a server with the wrong identity must not be used:\n{got}");
    await_tls_errors(&proxy, "upstream", "san_mismatch", 1.0).await;
}

/// §6.3 East-west AUTO_PASSTHROUGH (contract §3): a gateway listener with only
/// tls_inspector, SNI chains and `sni_cluster` → tcp_proxy and no certificate of its own.
/// The client's handshake completes with the backend (its serial and SAN, and the backend
/// sees the client's certificate: mTLS end to end); an unknown SNI or no SNI is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn east_west_gateway_routes_tls_by_sni_without_terminating_it() {
    let pki = MeshPki::new("eastwest");
    let backend_leaf = pki.leaf("cluster2", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    let backend = mesh_s_server(&pki, &backend_leaf, "h2,http/1.1");
    let fallback = tagged_echo("fallback").await;

    let filters = format!(
        "      filters:\n      - name: envoy.filters.network.sni_cluster\n        typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster}}\n{}",
        &tcp_proxy("eastwest", "fallback")["      filters:\n".len()..]
    );
    let l = listener("eastwest", TLS_INSPECTOR, &[chain(&format!("{{server_names: [\"{SNI}\"]}}"), "", &filters)]);
    let yaml = bootstrap(&[l], &[cluster(SNI, &[backend.addr], ""), cluster("fallback", &[fallback], "")]);
    assert!(!yaml.contains("transport_socket"), "the gateway has no TLS material at all");
    let proxy = Proxy::start(&yaml);
    let gw = proxy.listener("eastwest");

    let args = istio_client_args(&client, &pki.root, ISTIO_HTTP_ALPN);
    let (san, serial) = peer_san_and_serial(gw, SNI, &strs(&args[2..]));
    assert_eq!(serial, backend_leaf.serial, "the backend's certificate, not a gateway one ({san})");
    assert!(san.contains(&format!("URI:{}", backend_leaf.spiffe)), "{san}");
    let (ok, out, err) = tls_exchange(gw, &strs(&args), b"GET / HTTP/1.0\r\n\r\n");
    assert!(ok && out.contains("HTTP/1.0 200 ok"), "{out}\n{err}");
    assert!(out.contains(&format!("URI:{}", client.spiffe)), "the backend verified the client itself:\n{out}");
    let snis = backend.snis();
    assert!(!snis.is_empty() && snis.iter().all(|s| s == SNI), "the client's SNI reaches the backend: {snis:?}");

    // An SNI no chain names, and no SNI at all: closed, no certificate ever shown.
    let unknown = "outbound_.9090_._.nope.default.svc.cluster.local";
    assert_eq!(peer_san_and_serial(gw, unknown, &[]), (String::new(), String::new()));
    assert_eq!(peer_san_and_serial(gw, "", &[]), (String::new(), String::new()));
    let (ok, out, _) = tls_exchange(gw, &["-servername", unknown], b"GET / HTTP/1.0\r\n\r\n");
    assert!(!ok && !out.contains("HTTP/1.0"), "{out}");
    assert_eq!(proxy.metric_with("isthmus_tls_handshakes_total", &[]), 0.0, "the gateway terminates no TLS");
}

/// A Kubernetes-style secret mount: `cert-chain.pem` and `key.pem` are symlinks through
/// `..data`, a symlink to a versioned directory; [`Mount::install`] writes a new version and
/// swaps `..data` with one rename, so readers see the old pair or the new one.
struct Mount {
    dir: PathBuf,
    version: u32,
}

impl Mount {
    fn new(chain_pem: &str, key_pem: &str) -> Mount {
        let dir = tests::scratch("mounted-certs");
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Mount { dir, version: 0 };
        m.install(chain_pem, key_pem);
        for f in ["cert-chain.pem", "key.pem"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), m.dir.join(f)).unwrap();
        }
        m
    }

    fn install(&mut self, chain_pem: &str, key_pem: &str) {
        self.version += 1;
        let v = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&v)).unwrap();
        std::fs::write(self.dir.join(&v).join("cert-chain.pem"), chain_pem).unwrap();
        std::fs::write(self.dir.join(&v).join("key.pem"), key_pem).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&v, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn chain(&self) -> PathBuf {
        self.dir.join("cert-chain.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

/// §6.3 Rotation, file flavour (contract §7, `watched_directory`): new handshakes pick up a
/// swapped leaf (new serial) while an open mTLS session keeps echoing; a garbage update is
/// refused (log line naming the file, `isthmus_tls_secret_errors_total`) and the last good
/// leaf keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_certificate_files_rotate_without_cutting_sessions() {
    let pki = MeshPki::new("rotate");
    let a = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let b = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster2", &spiffe("default", "sleep"), &[]);
    let mut mount = Mount::new(&a.chain_pem, &a.key_pem);
    let echo = tagged_echo("rot").await;
    let certificate = format!(
        "{{certificate_chain: {{filename: \"{}\"}}, private_key: {{filename: \"{}\"}}, watched_directory: {{path: \"{}\"}}}}",
        mount.chain().display(),
        mount.key().display(),
        mount.dir.display()
    );
    let tls = downstream_tls(&certificate, &validation(&pki.root, Some("spiffe://cluster.local/")), true, &[]);
    let l = listener("inbound", "", &[chain("", &tls, &tcp_proxy("inbound", "echo"))]);
    let proxy = Proxy::start(&bootstrap(&[l], &[cluster("echo", &[echo], "")]));
    let addr = proxy.listener("inbound");
    let args = istio_client_args(&client, &pki.root, "istio");
    let serial_now = || peer_san_and_serial(addr, SNI, &strs(&args[2..])).1;
    assert_eq!(serial_now(), a.serial);
    let secret = format!("secret=\"{}\"", mount.chain().display());
    let expiry = tests::eventually(WAIT, || {
        let v = proxy.metric_with("isthmus_tls_cert_expiry_seconds", &[&secret]);
        (v > 0.0).then_some(v)
    })
    .await;
    assert!(expiry > 86400.0 * 365.0, "leaf A is valid until 4096: {expiry}");

    // A long-lived session on leaf A.
    let mut session = SClient::connect(addr, &strs(&args));
    assert!(session.wait_handshake(WAIT), "{}\n{}", session.stdout.text(), session.stderr.text());
    session.send(b"before rotation\n");
    assert!(session.stdout.wait_for("[rot] before rotation", WAIT), "{}", session.stdout.text());

    mount.install(&b.chain_pem, &b.key_pem);
    tests::eventually(WAIT, || (serial_now() == b.serial).then_some(())).await;
    session.send(b"after rotation\n");
    assert!(
        session.stdout.wait_for("[rot] after rotation", WAIT),
        "the session opened on the old leaf survives: {}\n{}",
        session.stdout.text(),
        session.stderr.text()
    );

    // A broken update is refused and B keeps serving.
    let errors = |p: &Proxy| p.metric_with("isthmus_tls_secret_errors_total", &[&secret]);
    let before = errors(&proxy);
    mount.install("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", &b.key_pem);
    tests::eventually(WAIT, || (errors(&proxy) > before).then_some(())).await;
    let dir = mount.dir.display().to_string();
    assert!(
        proxy.stderr.lock().unwrap().iter().any(|l| l.contains(&dir) && l.contains("cert-chain.pem")),
        "a log line names the refused file"
    );
    assert_eq!(serial_now(), b.serial);
    session.send(b"still here\n");
    assert!(session.stdout.wait_for("[rot] still here", WAIT), "{}", session.stdout.text());
}

/// Contract §5: on the STRICT HTTP chain with `forward_client_cert_details: SANITIZE_SET` and
/// `set_current_client_cert_details: {uri: true}`, the upstream gets Envoy's XFCC:
/// `By=<own URI SAN>;Hash=<sha256 of the peer leaf DER>;URI=<peer URI SAN>`, and a client's own
/// XFCC header is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_http_chain_sets_x_forwarded_client_cert() {
    let pki = MeshPki::new("xfcc");
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    let up = Upstream::start("xfcc", Behaviour::default()).await;
    let xfcc =
        "          forward_client_cert_details: SANITIZE_SET\n          set_current_client_cert_details: {uri: true}\n";
    let l = listener(
        "inbound",
        TLS_INSPECTOR,
        &[chain(MATCH_MTLS_HTTP, &strict_tls(&server, &pki, &["h2", "http/1.1"]), &hcm("inbound", "backend", xfcc))],
    );
    let proxy = Proxy::start(&bootstrap(&[l], &[cluster("backend", &[up.addr], "")]));
    let got = xfcc_seen_upstream(proxy.listener("inbound"), &client, &pki);

    // sha256 of the client leaf's DER, by openssl.
    let mut der = Command::new(tests::tool("openssl"));
    der.args(["x509", "-outform", "DER"]);
    let der = run_bounded(der, client.cert_pem.as_bytes(), WAIT).stdout;
    let mut dgst = Command::new(tests::tool("openssl"));
    dgst.args(["dgst", "-sha256", "-r"]);
    let hash =
        String::from_utf8_lossy(&run_bounded(dgst, &der, WAIT).stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert_eq!(got, format!("By={};Hash={hash};URI={}", server.spiffe, client.spiffe));
}

/// Contract §7 start-up checks: an unreadable key, a key that does not match the
/// certificate, an expired certificate, a garbage certificate PEM and a garbage CA file each
/// make `isthmus -c` exit 1 with the field path and the file named.
#[test]
fn bad_certificate_files_fail_start_up_naming_the_file_and_the_field() {
    let pki = MeshPki::new("bad");
    let good = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let other = pki.leaf("cluster1", &spiffe("default", "other"), &[]);
    let expired = pki.expired_leaf("cluster1", &spiffe("default", "echo"));
    let garbage = tests::scratch("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let missing = tests::scratch("no-such-key.pem");

    const KEY: &str = "transport_socket.typed_config.common_tls_context.tls_certificates[0].private_key.filename";
    const CHAIN: &str =
        "transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.filename";
    const CA: &str = "transport_socket.typed_config.common_tls_context.validation_context.trusted_ca.filename";
    // (case, certificate_chain, private_key, trusted_ca, field named, file named)
    let cases: Vec<(&str, &PathBuf, &PathBuf, &PathBuf, &str, &PathBuf)> = vec![
        ("unreadable (missing) key", &good.chain, &missing, &pki.root, KEY, &missing),
        ("key/cert mismatch", &good.chain, &other.key, &pki.root, KEY, &other.key),
        ("expired cert", &expired.chain, &expired.key, &pki.root, CHAIN, &expired.chain),
        ("garbage cert", &garbage, &good.key, &pki.root, CHAIN, &garbage),
        ("garbage CA", &good.chain, &good.key, &garbage, CA, &garbage),
    ];
    for (what, chain_file, key_file, root, field, named) in cases {
        let tls = downstream_tls(&cert_files(chain_file, key_file), &validation(root, None), true, &[]);
        let l = listener("inbound", "", &[chain("", &tls, &tcp_proxy("inbound", "backend"))]);
        let yaml = bootstrap(&[l], &[cluster("backend", &["127.0.0.1:9".parse().unwrap()], "")]);
        let path = tests::scratch("bad-tls.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = tests::proxy::run(&["-c", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(field), "{what}: the field {field} is named:\n{err}");
        assert!(err.contains(&path_str(named)), "{what}: the file {} is named:\n{err}", named.display());
        if what == "expired cert" {
            assert!(err.to_ascii_lowercase().contains("expired"), "{err}");
        }
    }
}

/// Edge gateway TLS termination (issue item 6): one listener, a chain per `server_names`
/// entry, each with its own certificate (one-way TLS, no client certificate). The SNI picks
/// the chain and so the certificate; an unknown SNI matches no chain and is closed; and a
/// STRICT mTLS listener (no plaintext chain) refuses plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_gateway_selects_the_certificate_by_sni_and_strict_refuses_plaintext() {
    let pki = MeshPki::new("edge");
    let shop = pki.leaf("cluster1", &spiffe("edge", "shop"), &["shop.example.com"]);
    let blog = pki.leaf("cluster1", &spiffe("edge", "blog"), &["blog.example.com"]);
    let up_shop = Upstream::start("edge-shop", Behaviour::default()).await;
    let up_blog = Upstream::start("edge-blog", Behaviour::default()).await;
    let edge_chain = |name: &str, leaf: &Leaf, cluster: &str| {
        chain(
            &format!("{{server_names: [\"{name}\"]}}"),
            &downstream_tls(&cert_files(&leaf.chain, &leaf.key), "", false, &["h2", "http/1.1"]),
            &hcm(cluster, cluster, ""),
        )
    };
    let edge = listener(
        "edge",
        TLS_INSPECTOR,
        &[edge_chain("shop.example.com", &shop, "shop"), edge_chain("blog.example.com", &blog, "blog")],
    );
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let strict = listener(
        "strict",
        TLS_INSPECTOR,
        &[chain(MATCH_MTLS_HTTP, &strict_tls(&server, &pki, &["h2", "http/1.1"]), &hcm("strict", "shop", ""))],
    );
    let clusters = [cluster("shop", &[up_shop.addr], ""), cluster("blog", &[up_blog.addr], "")];
    let proxy = Proxy::start(&bootstrap(&[edge, strict], &clusters));
    let addr = proxy.listener("edge");

    for (name, leaf, upstream) in [("shop.example.com", &shop, "edge-shop"), ("blog.example.com", &blog, "edge-blog")] {
        let (san, serial) = peer_san_and_serial(addr, name, &[]);
        assert_eq!(serial, leaf.serial, "{name} is served with its own certificate ({san})");
        assert!(san.contains(&format!("DNS:{name}")), "{san}");
        let ca = path_str(&pki.root);
        let args = ["-servername", name, "-alpn", "http/1.1", "-CAfile", ca.as_str(), "-verify_return_error"];
        let (ok, out, err) = tls_exchange(addr, &args, GET);
        assert!(ok && out.contains("HTTP/1.1 200"), "{out}\n{err}");
        assert!(out.to_ascii_lowercase().contains(&format!("x-upstream: {upstream}")), "{out}");
    }
    assert_eq!(peer_san_and_serial(addr, "other.example.com", &[]), (String::new(), String::new()));
    assert_eq!((up_shop.hits(), up_blog.hits()), (1, 1));

    // STRICT: plaintext HTTP finds no chain and is closed without a response.
    let strict_addr = proxy.listener("strict");
    let mut s = std::net::TcpStream::connect(strict_addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut s, GET).unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut got);
    assert!(got.is_empty(), "plaintext must not be served by a STRICT listener: {}", String::from_utf8_lossy(&got));
    assert_eq!(up_shop.hits(), 1);
}

/// A TLS listener without `tls_inspector` still negotiates ALPN from the real ClientHello
/// (rustls' lazy acceptor), so h2 clients such as gRPC get h2; and an upstream that accepts
/// TCP but never answers the ClientHello is given up after the cluster's `connect_timeout`
/// (Envoy counts a TLS connection as made only once the handshake is done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_without_inspector_and_a_silent_upstream_handshake_times_out() {
    let pki = MeshPki::new("alpn");
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &["echo.example"]);
    let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    let up = Upstream::start("alpn-h2", Behaviour::default()).await;
    let plain_tls = listener(
        "tls",
        "",
        &[chain(
            "",
            &downstream_tls(&cert_files(&server.chain, &server.key), "", false, &["h2", "http/1.1"]),
            &hcm("tls", "app", ""),
        )],
    );
    // A host that accepts the TCP connection and then says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let silent_cluster =
        auto_mtls_cluster("silent", silent_addr, &upstream_tls(&client, &pki.root, &spiffe("default", "echo")))
            .replace("connect_timeout: 1s", "connect_timeout: 0.3s");
    assert!(silent_cluster.contains("connect_timeout: 0.3s"), "{silent_cluster}");
    let proxy = Proxy::start(&bootstrap(
        &[plain_tls, tcp_listener("to-silent", "silent")],
        &[cluster("app", &[up.addr], ""), silent_cluster],
    ));

    let ca = path_str(&pki.root);
    let addr = proxy.listener("tls").to_string();
    let args = ["-connect", addr.as_str(), "-servername", "echo.example", "-alpn", "h2", "-CAfile", ca.as_str()];
    let out = tests::openssl::s_client(&args, b"", WAIT);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("ALPN protocol: h2"), "h2 must be negotiated without an inspector:\n{out}");

    let started = std::time::Instant::now();
    let got = tcp_exchange(proxy.listener("to-silent"), b"hello", "").await;
    assert!(got.is_empty(), "{got}");
    assert!(started.elapsed() < WAIT, "the stuck handshake was not given up: {:?}", started.elapsed());
    await_tls_errors(&proxy, "upstream", "timeout", 1.0).await;
    held.abort();
}

/// Envoy is the reference for `x-forwarded-client-cert`: the same bootstrap (STRICT inbound,
/// `SANITIZE_SET` with `subject`, `uri` and `dns`) run by Envoy 1.40 and by Isthmus, the same
/// client certificate (an Istio leaf with an empty subject plus a DNS SAN), and the upstream
/// must see byte-identical headers from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_matches_envoy_for_the_same_config_and_client() {
    let pki = MeshPki::new("xfcc-envoy");
    let server = pki.leaf("cluster1", &spiffe("default", "echo"), &[]);
    let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &["sleep.default.svc"]);
    let up = Upstream::start("xfcc-ref", Behaviour::default()).await;
    let xfcc = "          forward_client_cert_details: SANITIZE_SET\n          set_current_client_cert_details: {subject: true, cert: true, uri: true, dns: true}\n";
    let l = listener(
        "inbound",
        TLS_INSPECTOR,
        &[chain(MATCH_MTLS_HTTP, &strict_tls(&server, &pki, &["h2", "http/1.1"]), &hcm("inbound", "backend", xfcc))],
    );
    let yaml = bootstrap(&[l], &[cluster("backend", &[up.addr], "")]);
    let envoy = tests::envoy::Envoy::start(&yaml).await;
    let proxy = Proxy::start(&yaml);
    let from_envoy = xfcc_seen_upstream(envoy.listener("inbound"), &client, &pki);
    let from_isthmus = xfcc_seen_upstream(proxy.listener("inbound"), &client, &pki);
    assert!(from_envoy.contains(&format!("URI={}", client.spiffe)), "{from_envoy}");
    assert_eq!(from_isthmus, from_envoy, "Isthmus must build the element exactly as Envoy does");
    assert!(from_envoy.contains("DNS=sleep.default.svc") && from_envoy.contains("Subject="), "{from_envoy}");
    // `cert: true` (Istio's gateways set it): the URL-encoded PEM of the client leaf.
    assert!(from_envoy.contains("Cert=\"-----BEGIN%20CERTIFICATE-----%0A"), "{from_envoy}");
}
