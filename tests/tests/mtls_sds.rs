//! Certificates and trust from SDS, served by the independent control plane
//! (`tests/xds_server/ads_server.py`, Python grpcio + `xds-protos`): over the ADS stream, and
//! from a separate `sds-grpc` cluster on a Unix socket the way istio-agent serves a sidecar
//! (spec §1.9, §5.1 "Rotation", §6.2 step 10, §6.3 "Rotation"; contract §1, §8).
//!
//! What a peer sees is checked with `openssl s_client` presenting a client certificate: the
//! server's leaf must be the one last pushed, an open session must survive every rotation,
//! a bad secret must be NACKed naming it while the last good one keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tests::openssl::{self, SClient};
use tests::pki::{path_str, spiffe, Leaf, MeshPki};
use tests::proxy::Proxy;
use tests::upstream::{Behaviour, Upstream};
use tests::xds_server::AdsServer;

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

// ---- config builders (std + serde_json; every config they make was checked with `envoy --mode validate`,
// and the ADS/SDS runs were replayed against a real Envoy 1.40 with the same resources) ----

/// Istio's SNI for the service; any SNI would do here (one chain, no SNI match).
const SNI: &str = "outbound_.8080_._.echo.default.svc.cluster.local";

/// `sds_config` on the ADS stream.
fn ads_source() -> Value {
    json!({"ads": {}, "resource_api_version": "V3"})
}

/// `sds_config` from the bootstrap's `sds-grpc` cluster, as istio-agent's bootstrap writes it.
fn sds_grpc_source() -> Value {
    json!({"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                                 "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
           "resource_api_version": "V3"})
}

/// An inbound mTLS listener on `port` whose key and trust come from SDS `default` / `ROOTCA`
/// (istiod's DownstreamTlsContext, spec §2.1), tcp_proxy to the app's `inbound|8080||` cluster.
/// No `@type`: the caller adds it for LDS.
fn sds_listener(port: u16, source: Value) -> Value {
    json!({
        "name": "inbound",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                    "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": source.clone()}],
                    "combined_validation_context": {
                        "default_validation_context": {},
                        "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": source}}}}},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "inbound|8080||",
                "cluster": "inbound|8080||"}}]}]})
}

/// A STATIC cluster to `addr`, as one line of YAML flow (JSON), indented as a list item.
fn static_cluster(name: &str, addr: SocketAddr) -> String {
    let c = json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}}}}]}]}});
    format!("  - {c}\n")
}

/// Sidecar bootstrap with ADS (LDS, and the secrets the listener names) from `cp_port`.
fn ads_bootstrap(cp_port: u16, app: SocketAddr) -> String {
    let app_cluster = static_cluster("inbound|8080||", app);
    let h2 = tests::yaml::H2_UPSTREAM;
    format!(
        r#"node: {{id: "sidecar~127.0.0.1~echo-1.default~default.svc.cluster.local", cluster: echo.default}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 0s}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
{h2}    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {cp_port}}}}}}}}}]}}]
{app_cluster}"#
    )
}

/// istio-agent's shape (its bootstrap's `sds-grpc` cluster on a Unix socket, HTTP/2) with a
/// static inbound listener whose secrets come from that cluster.
fn uds_bootstrap(socket: &Path, app: SocketAddr) -> String {
    let socket = socket.display();
    let listener = sds_listener(0, sds_grpc_source());
    let app_cluster = static_cluster("inbound|8080||", app);
    let h2 = tests::yaml::H2_UPSTREAM;
    format!(
        r#"node: {{id: "sidecar~127.0.0.1~echo-1.default~default.svc.cluster.local", cluster: echo.default}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - {listener}
  clusters:
  - name: sds-grpc
    type: STATIC
    connect_timeout: 1s
{h2}    load_assignment:
      cluster_name: sds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{pipe: {{path: "{socket}"}}}}}}}}]}}]
{app_cluster}"#
    )
}

/// Istio's `default` secret: the workload's chain and key, inline.
fn cert_secret(chain_pem: &str, key_pem: &str) -> Value {
    json!({"@type": SECRET, "name": "default", "tls_certificate": {
        "certificate_chain": {"inline_string": chain_pem}, "private_key": {"inline_string": key_pem}}})
}

/// Istio's `ROOTCA` secret: the trust bundle (one or more roots, concatenated PEM).
fn roots_secret(pem: &str) -> Value {
    json!({"@type": SECRET, "name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": pem}}})
}

/// PEM that is not a certificate or a key.
const GARBAGE_CERT: &str = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
const GARBAGE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";

// ---- end of config builders ----

fn lds_listener(port: u16) -> Value {
    let mut l = sds_listener(port, ads_source());
    l["@type"] = json!(LDS);
    l
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The first PEM certificate in `text`, whitespace-normalised.
fn first_pem(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    Some(text[start..end].split_whitespace().collect())
}

/// `s_client` arguments presenting `leaf` with its intermediate and verifying the server's
/// chain against `ca`.
fn client_args(leaf: &Leaf, ca: &Path) -> Vec<String> {
    let mut a = leaf.openssl_args();
    a.extend(["-CAfile".to_string(), path_str(ca), "-verify_return_error".to_string()]);
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// One request on a fresh connection (the app answers and closes).
const REQUEST: &[u8] = b"GET /fresh HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n";

/// Whether a fresh mTLS connection with `client` completes and its request reaches the app.
fn passes(addr: SocketAddr, client: &[String]) -> bool {
    let mut args = vec!["-servername", SNI];
    args.extend(strs(client));
    let (ok, out, _) = openssl::tls_exchange(addr, &args, REQUEST);
    ok && out.contains("x-upstream: app")
}

/// The serial of the leaf the server presents to a fresh handshake with `client`.
fn served_serial(addr: SocketAddr, client: &[String]) -> String {
    openssl::peer_san_and_serial(addr, SNI, &strs(client)).1
}

/// Waits until fresh handshakes are served `leaf`.
async fn await_served(addr: SocketAddr, client: &[String], leaf: &Leaf) {
    tests::eventually(Duration::from_secs(10), || (served_serial(addr, client) == leaf.serial).then_some(())).await;
}

/// An mTLS session kept open (HTTP keep-alive through the listener's tcp_proxy to the app).
struct Session {
    s: SClient,
    answered: usize,
}

impl Session {
    /// Connects and completes one request.
    fn open(addr: SocketAddr, client: &[String]) -> Session {
        let mut args = vec!["-servername", SNI];
        args.extend(strs(client));
        let s = SClient::connect(addr, &args);
        assert!(s.wait_handshake(Duration::from_secs(10)), "handshake: {}\n{}", s.stdout.text(), s.stderr.text());
        let mut session = Session { s, answered: 0 };
        assert!(session.request(), "first request on the kept session");
        session
    }

    /// One more keep-alive request on the same TLS session; whether it was answered (5 s at
    /// most).
    fn request(&mut self) -> bool {
        assert!(!self.s.exited(), "the kept session ended:\n{}\n{}", self.s.stdout.text(), self.s.stderr.text());
        self.s.send(b"GET /kept HTTP/1.1\r\nHost: echo\r\n\r\n");
        self.answered += 1;
        let want = self.answered;
        self.s.stdout.wait_until(Duration::from_secs(5), |ls| {
            ls.iter().filter(|l| l.to_ascii_lowercase().starts_with("x-upstream: app")).count() >= want
        })
    }

    /// The leaf this session's server presented (whitespace-normalised PEM).
    fn server_leaf(&self) -> Option<String> {
        first_pem(&self.s.stdout.text())
    }
}

/// The identities of one test: root A with a cluster1 client and two cluster2 server leaves.
struct Certs {
    pki: MeshPki,
    client: Leaf,
    server_a: Leaf,
    server_b: Leaf,
}

impl Certs {
    fn new(tag: &str) -> Certs {
        let pki = MeshPki::new(tag);
        let client = pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
        let server_a = pki.leaf("cluster2", &spiffe("default", "echo"), &[]);
        let server_b = pki.leaf("cluster2", &spiffe("default", "echo"), &[]);
        assert_ne!(server_a.serial, server_b.serial);
        Certs { pki, client, server_a, server_b }
    }

    /// The client's `s_client` arguments (it verifies the server against root A).
    fn client(&self) -> Vec<String> {
        client_args(&self.client, &self.pki.root)
    }

    fn secret_a(&self) -> Value {
        cert_secret(&self.server_a.chain_pem, &self.server_a.key_pem)
    }

    fn secret_b(&self) -> Value {
        cert_secret(&self.server_b.chain_pem, &self.server_b.key_pem)
    }
}

/// Starts a proxy on ADS with `default` (leaf A) and `ROOTCA` and the SDS listener, and waits
/// until a client's request passes and sees serial A.
async fn ads_sidecar(certs: &Certs) -> (AdsServer, Proxy, SocketAddr, Upstream) {
    let app = Upstream::start("app", Behaviour::default()).await;
    let mut cp = AdsServer::start();
    let port = free_port();
    cp.set(SECRET, "s1", vec![certs.secret_a(), roots_secret(&certs.pki.root_pem)]);
    cp.set(LDS, "l1", vec![lds_listener(port)]);
    let proxy = Proxy::start_unready(&ads_bootstrap(cp.port, app.addr));
    cp.request(LDS, |e| e["nonce"] != "" && e["nack"] == false);
    // The listener's secrets are subscribed on the ADS stream and the answer is ACKed.
    cp.request(SECRET, |e| e["nonce"] != "" && e["nack"] == false);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = certs.client();
    tests::eventually(Duration::from_secs(10), || passes(addr, &client).then_some(())).await;
    assert_eq!(served_serial(addr, &client), certs.server_a.serial);
    (cp, proxy, addr, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_over_ads_serves_rotates_the_leaf_and_the_roots_without_cutting_sessions() {
    let certs = Certs::new("sds-ads-rotation");
    let (mut cp, _proxy, addr, _app) = ads_sidecar(&certs).await;
    let client = certs.client();

    // A session opened on leaf A stays open through everything below.
    let mut kept = Session::open(addr, &client);
    assert_eq!(kept.server_leaf(), first_pem(&certs.server_a.cert_pem), "the kept session is on leaf A");

    // Leaf rotation: new handshakes get B, the open session goes on.
    cp.set(SECRET, "s2", vec![certs.secret_b(), roots_secret(&certs.pki.root_pem)]);
    cp.push(SECRET, "leaf-b");
    let ack = cp.request(SECRET, |e| e["nonce"] == "leaf-b");
    assert_eq!(ack["nack"], false, "{ack}");
    await_served(addr, &client, &certs.server_b).await;
    assert!(kept.request(), "the session opened on leaf A survives the rotation");

    // Root rotation: a bundle with the old and the new root admits clients of both ...
    let new_pki = MeshPki::new("sds-ads-rotation-new-root");
    let new_leaf = new_pki.leaf("cluster1", &spiffe("default", "sleep"), &[]);
    let new_client = client_args(&new_leaf, &certs.pki.root);
    assert!(!passes(addr, &new_client), "a client of the new root is refused before the rotation");
    let both = format!("{}\n{}", certs.pki.root_pem.trim_end(), new_pki.root_pem);
    cp.set(SECRET, "s3", vec![certs.secret_b(), roots_secret(&both)]);
    cp.push(SECRET, "roots-both");
    assert_eq!(cp.request(SECRET, |e| e["nonce"] == "roots-both")["nack"], false);
    tests::eventually(Duration::from_secs(10), || passes(addr, &new_client).then_some(())).await;
    assert!(passes(addr, &client), "the old root's clients still pass with both roots");

    // ... then the new root alone refuses the old root's clients, but not the open session.
    cp.set(SECRET, "s4", vec![certs.secret_b(), roots_secret(&new_pki.root_pem)]);
    cp.push(SECRET, "roots-new");
    assert_eq!(cp.request(SECRET, |e| e["nonce"] == "roots-new")["nack"], false);
    tests::eventually(Duration::from_secs(10), || (!passes(addr, &client)).then_some(())).await;
    assert!(passes(addr, &new_client), "the new root's clients pass");
    assert!(kept.request(), "an established session is not cut by a trust change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_secrets_are_nacked_naming_the_secret_and_the_last_good_one_keeps_serving() {
    // Envoy 1.40 NACKs the first two with "Failed to load certificate chain from <inline>" /
    // "Failed to load private key from <inline>, ... KEY_VALUES_MISMATCH" (no secret name) and
    // accepts an expired certificate; the contract (§8) asks more of Isthmus: all three are
    // NACKed, naming the secret.
    let certs = Certs::new("sds-ads-bad");
    let (mut cp, _proxy, addr, _app) = ads_sidecar(&certs).await;
    let client = certs.client();
    let expired = certs.pki.expired_leaf("cluster2", &spiffe("default", "echo"));
    let roots = roots_secret(&certs.pki.root_pem);
    let cases: Vec<(&str, Value)> = vec![
        ("garbage PEM", cert_secret(GARBAGE_CERT, GARBAGE_KEY)),
        ("key of another certificate", cert_secret(&certs.server_b.chain_pem, &certs.server_a.key_pem)),
        ("expired certificate", cert_secret(&expired.chain_pem, &expired.key_pem)),
        // `default` is the listener's certificate: a trust bundle under that name could serve
        // no handshake, so the update is refused rather than installed.
        ("validation context where a certificate is used", {
            let mut v = roots_secret(&certs.pki.root_pem);
            v["name"] = "default".into();
            v
        }),
    ];
    for (i, (what, bad)) in cases.into_iter().enumerate() {
        let nonce = format!("bad-{i}");
        cp.set(SECRET, &nonce, vec![bad, roots.clone()]);
        cp.push(SECRET, &nonce);
        let nack = cp.request(SECRET, |e| e["nonce"] == nonce.as_str());
        assert_eq!(nack["nack"], true, "{what} must be NACKed: {nack}");
        let error = nack["error"].as_str().unwrap_or_default();
        assert!(error.contains("default"), "the NACK for the {what} must name the secret: {nack}");
        assert_eq!(served_serial(addr, &client), certs.server_a.serial, "leaf A keeps serving after the {what}");
        assert!(passes(addr, &client), "requests still pass after the {what}");
    }
    // A good secret after the bad ones is taken.
    cp.set(SECRET, "good", vec![certs.secret_b(), roots]);
    cp.push(SECRET, "good");
    assert_eq!(cp.request(SECRET, |e| e["nonce"] == "good")["nack"], false);
    await_served(addr, &client, &certs.server_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_from_a_unix_socket_cluster_like_istio_agent() {
    let certs = Certs::new("sds-uds");
    let app = Upstream::start("app", Behaviour::default()).await;
    let socket = tests::scratch("sds.sock");
    // The independent control plane also serves `SecretDiscoveryService` (what istio-agent's
    // socket serves and what Isthmus calls for an `api_config_source` secret).
    let mut sds = AdsServer::start_unix(&socket);
    sds.set(SECRET, "s1", vec![certs.secret_a(), roots_secret(&certs.pki.root_pem)]);
    let proxy = Proxy::start(&uds_bootstrap(&socket, app.addr));
    let addr = proxy.listener("inbound");

    // Both secrets are asked for over the socket (Envoy opens a stream per secret; one stream
    // for both is fine too) and the answers are ACKed.
    let call = sds.wait(|e| e["event"] == "sds_call");
    assert_eq!(call["method"], "StreamSecrets", "istio-agent's socket serves the SDS service, not ADS: {call}");
    let open = sds.wait(|e| e["event"] == "stream_open");
    assert!(open["peer"].as_str().unwrap_or_default().starts_with("unix:"), "SDS over the Unix socket: {open}");
    let (mut asked, mut acked) = (std::collections::BTreeSet::new(), false);
    while !(asked.contains("default") && asked.contains("ROOTCA") && acked) {
        let e = sds.request(SECRET, |_| true);
        assert_eq!(e["nack"], false, "{e}");
        asked.extend(e["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()));
        acked |= e["nonce"] != "";
    }

    let client = certs.client();
    tests::eventually(Duration::from_secs(10), || passes(addr, &client).then_some(())).await;
    assert_eq!(served_serial(addr, &client), certs.server_a.serial);

    // Rotation over the socket too (spec §6.2 step 10).
    let mut kept = Session::open(addr, &client);
    sds.set(SECRET, "s2", vec![certs.secret_b(), roots_secret(&certs.pki.root_pem)]);
    sds.push(SECRET, "leaf-b");
    let ack = sds.request(SECRET, |e| e["nonce"] == "leaf-b");
    assert_eq!(ack["nack"], false, "{ack}");
    await_served(addr, &client, &certs.server_b).await;
    assert!(kept.request(), "the session opened on leaf A survives the rotation");
}

/// Envoy's listener warming extends to secrets: a listener pushed before its SDS secrets is
/// not started (its port refuses connections, `/ready` stays 503) until `default` and
/// `ROOTCA` arrive; then it serves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_warms_until_its_sds_secrets_arrive() {
    let certs = Certs::new("sds-warming");
    let app = Upstream::start("app", Behaviour::default()).await;
    let mut cp = AdsServer::start();
    let port = free_port();
    cp.set(LDS, "l1", vec![lds_listener(port)]);
    let proxy = Proxy::start_unready(&ads_bootstrap(cp.port, app.addr));
    cp.request(LDS, |e| e["nonce"] != "" && e["nack"] == false);
    // The secrets are asked for; none exist yet.
    let asked = cp.request(SECRET, |e| e["names"].as_array().is_some_and(|n| n.len() == 2));
    assert_eq!(asked["nack"], false, "{asked}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(std::net::TcpStream::connect(addr).is_err(), "a listener waiting for its secrets is not bound");
    assert_eq!(proxy.admin_get("/ready").0, 503, "not ready while a listener warms");

    cp.set(SECRET, "s1", vec![certs.secret_a(), roots_secret(&certs.pki.root_pem)]);
    cp.push(SECRET, "secrets");
    assert_eq!(cp.request(SECRET, |e| e["nonce"] == "secrets")["nack"], false);
    let client = certs.client();
    tests::eventually(Duration::from_secs(10), || passes(addr, &client).then_some(())).await;
    assert_eq!(served_serial(addr, &client), certs.server_a.serial);
    tests::eventually(Duration::from_secs(10), || (proxy.admin_get("/ready").0 == 200).then_some(())).await;
    // The received secrets are in /config_dump, their private keys redacted (as Envoy does).
    let dump = proxy.admin_get("/config_dump").1;
    assert!(dump.contains("\"ROOTCA\"") && dump.contains("[redacted]"), "{dump}");
    assert!(!dump.contains("PRIVATE KEY") && !dump.contains(&certs.server_a.key_pem[40..80]), "a private key leaked");
}
