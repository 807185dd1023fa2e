//! The real binary driven by the independent control plane (Python grpcio + `xds-protos`),
//! over SotW and Delta: listener + RDS warming, traffic through pushed config, weight and
//! endpoint changes under load with zero failed requests, a keep-alive connection surviving,
//! bad pushes NACKed while traffic keeps flowing, and a control-plane outage.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::xds_server::AdsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

fn bootstrap(cp_port: u16, delta: bool) -> String {
    format!(
        r#"node: {{id: "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local", cluster: web.shop, locality: {{region: cn-hangzhou, zone: cn-hangzhou-h}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
dynamic_resources:
  ads_config:
    api_type: {}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 0s}}
  lds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 0s}}
static_resources:
  clusters:
{}"#,
        if delta { "DELTA_GRPC" } else { "GRPC" },
        tests::yaml::xds_cluster(cp_port, "")
    )
}

fn eds_cluster(name: &str) -> Value {
    json!({"@type": CDS, "name": name, "type": "EDS", "connect_timeout": "1s",
           "eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": name}})
}

fn assignment(name: &str, ports: &[u16]) -> Value {
    let eps: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}))
        .collect();
    json!({"@type": EDS, "cluster_name": name,
           "endpoints": [{"locality": {"region": "cn-hangzhou", "zone": "cn-hangzhou-h"}, "lb_endpoints": eps}]})
}

fn listener(port: u16) -> Value {
    json!({"@type": LDS, "name": "ingress",
           "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
               "stat_prefix": "ingress",
               "rds": {"route_config_name": "r1", "config_source": {"ads": {}, "resource_api_version": "V3"}},
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
}

fn routes(weight_a: u32) -> Value {
    json!({"@type": RDS, "name": "r1", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "a", "weight": weight_a}, {"name": "b", "weight": 100 - weight_a}]},
            "retry_policy": {"retry_on": "connect-failure,reset", "num_retries": 2}}}]}]})
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn warming_traffic_and_updates(delta: bool) {
    let a1 = Upstream::start("a1", Behaviour::default()).await;
    let a2 = Upstream::start("a2", Behaviour::default()).await;
    let b1 = Upstream::start("b1", Behaviour::default()).await;
    let mut cp = AdsServer::start();
    let port = free_port();
    cp.set(CDS, "c1", vec![eds_cluster("a"), eds_cluster("b")]);
    cp.set(EDS, "e1", vec![assignment("a", &[a1.addr.port()]), assignment("b", &[b1.addr.port()])]);
    cp.set(LDS, "l1", vec![listener(port)]);
    let proxy = Proxy::start_unready(&bootstrap(cp.port, delta));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Step 3: the listener warms until its routes arrive: nothing accepts, not ready.
    cp.request(RDS, |e| {
        let n = if delta { &e["subscribe"] } else { &e["names"] };
        *n == json!(["r1"])
    });
    cp.request(LDS, |e| e["nonce"] != "" && e["nack"] == false);
    assert!(std::net::TcpStream::connect(addr).is_err(), "a warming listener must not accept");
    assert_eq!(proxy.admin_get("/ready").0, 503);
    cp.set(RDS, "r-1", vec![routes(100)]);
    cp.push(RDS, "rds-1");
    cp.request(RDS, |e| e["nonce"] == "rds-1" && e["nack"] == false);
    tests::eventually(Duration::from_secs(5), || (proxy.admin_get("/ready").0 == 200).then_some(())).await;
    let (s, h, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!((s, h["x-upstream"].to_str().unwrap()), (200, "a1"));

    // A keep-alive connection opened now must survive every push below.
    let mut keep = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ask = b"GET /keep HTTP/1.1\r\nHost: x\r\n\r\n";
    keep.write_all(ask).await.unwrap();
    read_response(&mut keep).await;

    // Step 4: 20 pushes (weights flip, endpoints change, identical re-pushes) under a bounded
    // h2load run; zero failed requests.
    let url = format!("http://{addr}/load");
    let load = std::thread::spawn(move || {
        Command::new(tests::tool("h2load")).args(["-c", "4", "-m", "4", "-D", "4", &url]).output().unwrap()
    });
    tests::eventually(Duration::from_secs(5), || (a1.hits() > 20).then_some(())).await;
    for i in 0..20u32 {
        let nonce = format!("p{i}");
        match i % 4 {
            0 => {
                cp.set(RDS, &format!("r-{i}"), vec![routes(0)]);
                cp.push(RDS, &nonce);
            }
            1 => {
                cp.set(
                    EDS,
                    &format!("e-{i}"),
                    vec![assignment("a", &[a1.addr.port(), a2.addr.port()]), assignment("b", &[b1.addr.port()])],
                );
                cp.push(EDS, &nonce);
            }
            2 => {
                cp.set(RDS, &format!("r-{i}"), vec![routes(50)]);
                cp.push(RDS, &nonce);
            }
            _ => {
                cp.push(LDS, &nonce); // identical listener: a no-op
            }
        }
        let ack = cp.wait(|e| e["event"] == "request" && e["nonce"] == nonce.as_str());
        assert_eq!(ack["nack"], false, "{ack}");
    }
    let out = load.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let done = text.lines().find(|l| l.starts_with("requests:")).unwrap_or_default().to_string();
    assert!(done.contains(" 0 failed, 0 errored, 0 timeout"), "{done}\n{text}");
    assert!(!text.contains("status codes: 0 2xx"), "{text}");
    let codes = text.lines().find(|l| l.starts_with("status codes:")).unwrap_or_default();
    assert!(codes.contains(" 0 3xx, 0 4xx, 0 5xx"), "{codes}");
    assert!(b1.hits() > 0 && a2.hits() > 0, "traffic moved: a1={} a2={} b1={}", a1.hits(), a2.hits(), b1.hits());
    keep.write_all(ask).await.unwrap();
    read_response(&mut keep).await;

    // Bad pushes are NACKed naming the field; traffic keeps flowing; a correction is ACKed.
    let bad_cds = json!({"@type": CDS, "name": "c-bad", "type": "EDS", "connect_timeout": "1s", "lb_policy": "LOAD_BALANCING_POLICY_CONFIG"});
    let mut bad_regex = routes(50);
    bad_regex["virtual_hosts"][0]["routes"][0]["match"] = json!({"safe_regex": {"regex": "/(unclosed"}});
    let mut ambiguous = listener(port);
    let chain = ambiguous["filter_chains"][0].clone();
    ambiguous["filter_chains"] = json!([chain.clone(), chain]);
    let mut dup_addr = listener(port);
    dup_addr["name"] = json!("ingress-2");
    let no_addr = json!({"@type": EDS, "cluster_name": "a", "endpoints": [{"lb_endpoints": [{"endpoint": {}}]}]});
    let custom_type = json!({"@type": CDS, "name": "c-custom", "connect_timeout": "1s",
        "cluster_type": {"name": "envoy.clusters.aggregate", "typed_config": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {}}}});
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            CDS,
            vec![eds_cluster("a"), eds_cluster("b"), custom_type],
            "c-custom: cluster \"c-custom\".cluster_type: is not supported",
        ),
        (
            CDS,
            vec![eds_cluster("a"), eds_cluster("b"), bad_cds],
            "lb_policy: LOAD_BALANCING_POLICY_CONFIG is not supported",
        ),
        (RDS, vec![bad_regex], "safe_regex.regex: invalid regex"),
        (LDS, vec![listener(port), dup_addr], "already"),
        (LDS, vec![ambiguous], "filter_chain_match: same matching rules"),
        (EDS, vec![no_addr, assignment("b", &[b1.addr.port()])], "endpoint.address: is required"),
    ];
    for (i, (t, resources, expect)) in cases.into_iter().enumerate() {
        cp.set(t, &format!("bad-{i}"), resources);
        if delta && t == LDS {
            cp.cmd(json!({"cmd": "remove", "type": LDS, "names": []}));
        }
        let nonce = format!("bad-{i}");
        cp.push(t, &nonce);
        let nack = cp.wait(|e| e["event"] == "request" && e["nonce"] == nonce.as_str());
        assert_eq!(nack["nack"], true, "{nack}");
        assert!(nack["error"].as_str().unwrap().contains(expect), "expected {expect:?} in {nack}");
        let (s, _, _) = get(addr, "/after-bad", &[]).await.unwrap();
        assert_eq!(s, 200, "traffic keeps flowing on the last good config");
    }
    cp.set(RDS, "fixed", vec![routes(100)]);
    cp.push(RDS, "fixed");
    assert_eq!(cp.wait(|e| e["event"] == "request" && e["nonce"] == "fixed")["nack"], false);
    let (_, dump) = proxy.admin_get("/config_dump");
    assert!(dump.contains("invalid regex"), "config_dump shows the last rejection");

    // Control plane down: traffic goes on; back up: the stream resumes with accepted versions.
    let cp_port = cp.port;
    drop(cp);
    for _ in 0..20 {
        assert_eq!(get(addr, "/while-down", &[]).await.unwrap().0, 200);
    }
    let mut cp2 = AdsServer::start_on(cp_port);
    cp2.set(CDS, "c1", vec![eds_cluster("a"), eds_cluster("b")]);
    let again = cp2.request(CDS, |_| true);
    if delta {
        assert!(again["initial_versions"].as_object().unwrap().contains_key("a"), "{again}");
    } else {
        assert_ne!(again["version"], "", "{again}");
    }
    assert_eq!(get(addr, "/after-restart", &[]).await.unwrap().0, 200);
}

async fn read_response(s: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n")
        || !buf.ends_with(b"a1") && !buf.ends_with(b"a2") && !buf.ends_with(b"b1")
    {
        let n =
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.expect("response in time").unwrap();
        assert!(n > 0, "keep-alive connection closed: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_config_over_sotw() {
    warming_traffic_and_updates(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_config_over_delta() {
    warming_traffic_and_updates(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_identity_comes_from_istio_environment_variables() {
    let mut cp = AdsServer::start();
    let path = tests::scratch("env-bootstrap.yaml");
    std::fs::write(
        &path,
        bootstrap(cp.port, false).replace(
            "node: {id: \"sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local\", cluster: web.shop, ",
            "node: {",
        ),
    )
    .unwrap();
    let mut child = Command::new(tests::isthmus_bin())
        .arg("-c")
        .arg(&path)
        .env("POD_NAME", "checkout-7f9c")
        .env("POD_NAMESPACE", "shop")
        .env("INSTANCE_IP", "10.8.0.12")
        .env("ISTIO_META_CLUSTER_ID", "hangzhou")
        .env("ISTIO_META_ISTIO_VERSION", "1.28.0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = cp.request(CDS, |_| true);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first["node_id"], "sidecar~10.8.0.12~checkout-7f9c.shop~shop.svc.cluster.local");
    assert_eq!(first["locality"]["zone"], "cn-hangzhou-h");
    let keys = first["metadata_keys"].as_array().unwrap();
    assert!(keys.contains(&json!("CLUSTER_ID")) && keys.contains(&json!("ISTIO_VERSION")), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_control_plane_outage_never_stops_traffic() {
    let a1 = Upstream::start("a1", Behaviour::default()).await;
    let b1 = Upstream::start("b1", Behaviour::default()).await;
    let mut cp = AdsServer::start();
    let port = free_port();
    cp.set(CDS, "c1", vec![eds_cluster("a"), eds_cluster("b")]);
    cp.set(EDS, "e1", vec![assignment("a", &[a1.addr.port()]), assignment("b", &[b1.addr.port()])]);
    cp.set(LDS, "l1", vec![listener(port)]);
    cp.set(RDS, "r1", vec![routes(100)]);
    let proxy = Proxy::start(&bootstrap(cp.port, true));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get(addr, "/", &[]).await.unwrap().0, 200);
    let cp_port = cp.port;
    drop(cp);
    // 30 s without a control plane: a request every 100 ms, every one answered from the last
    // accepted config.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while std::time::Instant::now() < until {
        let (s, h, _) = get(addr, "/outage", &[]).await.unwrap();
        assert_eq!((s, h["x-upstream"].to_str().unwrap()), (200, "a1"), "request {n} during the outage");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n > 200);
    let mut cp2 = AdsServer::start_on(cp_port);
    cp2.set(CDS, "c1", vec![eds_cluster("a"), eds_cluster("b")]);
    // Back-off is capped at 30 s (Envoy's), so the reconnect may take that long.
    let again = cp2.wait_for(Duration::from_secs(45), |e| e["event"] == "request" && e["type"] == CDS);
    let iv = again["initial_versions"].as_object().unwrap();
    assert!(iv.contains_key("a") && iv.contains_key("b"), "{again}");
    assert_eq!(get(addr, "/after", &[]).await.unwrap().0, 200);
    drop(proxy);
}

/// PEM files for a control plane reached over mutual TLS: a root, a server certificate for
/// istiod's name and a client certificate, all from the same root.
struct Pki {
    ca: std::path::PathBuf,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

fn pki(tag: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{tag} root"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, pem: &str| {
        let p = tests::scratch(&format!("{tag}-{name}.pem"));
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (sc, sk) = leaf("istiod.istio-system.svc");
    let (cc, ck) = leaf("sidecar.shop.svc");
    Pki {
        ca: write("ca", &ca.pem()),
        server_cert: write("server", &sc),
        server_key: write("server-key", &sk),
        client_cert: write("client", &cc),
        client_key: write("client-key", &ck),
    }
}

fn tls_bootstrap(cp_port: u16, ca: &std::path::Path, p: &Pki) -> String {
    let ts = format!(
        r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: istiod.istio-system.svc
        common_tls_context:
          tls_certificates: [{{certificate_chain: {{filename: "{}"}}, private_key: {{filename: "{}"}}}}]
          validation_context: {{trusted_ca: {{filename: "{}"}}}}
"#,
        p.client_cert.display(),
        p.client_key.display(),
        ca.display()
    );
    bootstrap(cp_port, false).replace("    connect_timeout: 1s\n", &format!("    connect_timeout: 1s\n{ts}"))
}

/// The xDS cluster's `transport_socket` (Istio's bootstrap reaches istiod on 15012 this way):
/// mutual TLS to the Python control plane, config applied and traffic flowing; then a root that
/// did not sign the server's certificate gets no config at all, and an unreadable CA file is a
/// start-up error naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_over_mutual_tls_from_the_bootstrap() {
    let a1 = Upstream::start("a1", Behaviour::default()).await;
    let p = pki("mtls");
    let mut cp = AdsServer::start_tls(&p.server_cert, &p.server_key, &p.ca);
    let port = free_port();
    cp.set(CDS, "c1", vec![eds_cluster("a"), eds_cluster("b")]);
    cp.set(EDS, "e1", vec![assignment("a", &[a1.addr.port()]), assignment("b", &[a1.addr.port()])]);
    cp.set(LDS, "l1", vec![listener(port)]);
    cp.set(RDS, "r1", vec![routes(100)]);
    let yaml = tls_bootstrap(cp.port, &p.ca, &p);
    assert!(yaml.contains("UpstreamTlsContext"));
    let proxy = Proxy::start_unready(&yaml);
    tests::eventually(Duration::from_secs(10), || (proxy.admin_get("/ready").0 == 200).then_some(())).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (s, h, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!((s, h["x-upstream"].to_str().unwrap()), (200, "a1"));
    drop(proxy);

    // A root that did not sign istiod's certificate: the handshake fails, so the control plane
    // never sees a request and the proxy logs the failure and stays unready.
    let other = pki("other");
    let mut cp2 = AdsServer::start_tls(&p.server_cert, &p.server_key, &p.ca);
    let proxy = Proxy::start_unready(&tls_bootstrap(cp2.port, &other.ca, &p));
    tests::eventually(Duration::from_secs(10), || {
        proxy.stderr.lock().unwrap().iter().any(|l| l.contains("cannot connect to the control plane")).then_some(())
    })
    .await;
    assert_eq!(proxy.admin_get("/ready").0, 503);
    // A command's "ok" follows every event the server emitted before it.
    cp2.set(CDS, "c0", vec![]);
    assert!(
        !cp2.seen.iter().any(|e| e["event"] == "stream_open" || e["event"] == "request"),
        "no stream may open to a server whose certificate did not verify"
    );

    // An unreadable CA file fails validation with the path and field.
    let missing = tests::scratch("no-such-ca.pem");
    let bad = tests::scratch("bad-tls-bootstrap.yaml");
    std::fs::write(&bad, tls_bootstrap(cp.port, &missing, &p)).unwrap();
    let out = tests::proxy::run(&["-c", bad.to_str().unwrap(), "--mode", "validate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("transport_socket.typed_config.common_tls_context.validation_context.trusted_ca.filename"),
        "{err}"
    );
    assert!(err.contains("no-such-ca.pem"), "{err}");
}

async fn echo_once(s: &mut tokio::net::TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, msg);
}

/// A listener update drains the TCP connections accepted under the old version: they keep
/// flowing for `--drain-time-s`, then are closed (Envoy closes a draining listener's
/// connections when its drain ends); new connections get the new version at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_update_closes_its_old_tcp_connections_after_the_drain_time() {
    let echo = tests::upstream::tcp_echo().await;
    let mut cp = AdsServer::start();
    let port = free_port();
    let cluster = json!({"@type": CDS, "name": "echo", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": echo.port()}}}}]}]}});
    let tcp = |prefix: &str| {
        json!({"@type": LDS, "name": "tcp",
               "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
               "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                   "stat_prefix": prefix, "cluster": "echo"}}]}]})
    };
    cp.set(CDS, "c1", vec![cluster]);
    cp.set(LDS, "l1", vec![tcp("v1")]);
    let _proxy = Proxy::start_with(&bootstrap(cp.port, false), &["--drain-time-s", "1"]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut old = tokio::net::TcpStream::connect(addr).await.unwrap();
    echo_once(&mut old, b"before").await;

    cp.set(LDS, "l2", vec![tcp("v2")]);
    cp.push(LDS, "lds-2");
    cp.request(LDS, |e| e["nonce"] == "lds-2" && e["nack"] == false);
    // Draining, not cut: the old connection still carries bytes, and a new one is served.
    echo_once(&mut old, b"during").await;
    let mut new = tokio::net::TcpStream::connect(addr).await.unwrap();
    echo_once(&mut new, b"new").await;

    // The drain ends: the old connection is closed by the proxy; the new one is untouched.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), old.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the old connection must be closed after the drain: {closed:?}");
    echo_once(&mut new, b"still").await;
}

/// Envoy's filter-chain-only update: a push that changes one chain of a listener (as istiod
/// does to 15006 whenever one inbound port changes) drains only that chain's connections; the
/// other chain's connections carry on after the drain time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_only_update_drains_only_the_changed_chain() {
    let echo = tests::upstream::tcp_echo().await;
    let mut cp = AdsServer::start();
    let port = free_port();
    let cluster = json!({"@type": CDS, "name": "echo", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": echo.port()}}}}]}]}});
    let chain = |source: &str, prefix: &str| {
        json!({"name": source, "filter_chain_match": {"source_prefix_ranges": [{"address_prefix": source, "prefix_len": 32}]},
               "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                   "stat_prefix": prefix, "cluster": "echo"}}]})
    };
    let listener = |b_prefix: &str| {
        json!({"@type": LDS, "name": "tcp",
               "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
               "filter_chains": [chain("127.0.0.1", "a"), chain("127.0.0.2", b_prefix)]})
    };
    cp.set(CDS, "c1", vec![cluster]);
    cp.set(LDS, "l1", vec![listener("b1")]);
    let _proxy = Proxy::start_with(&bootstrap(cp.port, false), &["--drain-time-s", "1"]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let from = |ip: &str| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        s.connect(addr)
    };
    let mut a = from("127.0.0.1").await.unwrap();
    let mut b = from("127.0.0.2").await.unwrap();
    echo_once(&mut a, b"a").await;
    echo_once(&mut b, b"b").await;

    cp.set(LDS, "l2", vec![listener("b2")]);
    cp.push(LDS, "lds-2");
    cp.request(LDS, |e| e["nonce"] == "lds-2" && e["nack"] == false);
    // The changed chain's connection is closed once the drain time is over ...
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), b.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "chain b's connection must drain: {closed:?}");
    // ... and the untouched chain's connection still carries bytes after it.
    echo_once(&mut a, b"a-after").await;
}
