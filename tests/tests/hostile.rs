//! Reliability defects, each with the hostile or broken peer that shows it: the proxy at its
//! file-descriptor limit (run through `prlimit` and filled with idle connections), a health
//! endpoint streaming without end, a control plane frozen mid-stream, an mTLS-only upstream
//! probed by active health checks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to};

/// The proxy's open descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// User + system CPU time of the process, in clock ticks (`/proc/<pid>/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Out of descriptors, accept fails with EMFILE. The proxy must not spin on it (a tight retry
/// loop burns a core), must count it, and both the proxy listener and the admin listener must
/// accept again once descriptors are free (the admin loop used to end at its first error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_backs_off_and_recovers() {
    const LIMIT: u32 = 128;
    let up = Upstream::start("up", Behaviour::default()).await;
    let yaml = bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]);
    let prefix = ["prlimit".to_string(), format!("--nofile={LIMIT}:{LIMIT}"), "--".to_string()];
    let proxy = Proxy::start_prefixed(&yaml, &prefix);
    let addr = proxy.listener("web");
    let pid = proxy.pid();

    // Fill every descriptor with idle downstream connections (the kernel queues the rest).
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..LIMIT + 40 {
        idle.push(TcpStream::connect(addr).unwrap());
    }
    tests::eventually(Duration::from_secs(10), || (open_fds(pid) >= LIMIT as usize).then_some(())).await;
    // A connection to the admin port now fails its accept too.
    let admin: SocketAddr = proxy.admin;
    let _queued = TcpStream::connect(admin).unwrap();

    // One second at the limit with connections still queued: a spinning accept loop costs a
    // core (100 ticks); backing off costs next to nothing.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1)); // the measurement window, not a wait for an event
    let spent = cpu_ticks(pid) - before;
    assert!(spent < 30, "{spent} ticks of CPU in one second at the descriptor limit");

    drop(idle);
    drop(_queued);
    // Both listeners accept again.
    let page = tests::eventually(Duration::from_secs(10), || {
        tests::proxy::http_get_blocking(admin, "/stats/prometheus").filter(|(c, _)| *c == 200).map(|(_, b)| b)
    })
    .await;
    let emfile: f64 = page
        .lines()
        .filter(|l| l.starts_with("isthmus_accept_errors_total{") && l.contains("kind=\"emfile\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(emfile >= 1.0, "accept errors counted: {emfile}");
    let (status, _, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(status, 200);
}

/// A host whose health endpoint answers 200 and then streams a body without end: the status
/// decides at once. (Reading the whole body never finished, so every probe timed out and the
/// host was marked failing, while the proxy buffered what it streamed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_does_not_read_an_endless_body() {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = l.local_addr().unwrap();
    let probes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = probes.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut req).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                // 6.4 MB/s until the prober hangs up (bounded: 1,000 chunks, 10 s).
                let mut pace = tokio::time::interval(Duration::from_millis(10));
                for _ in 0..1_000 {
                    pace.tick().await;
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let c = cluster(
        "c",
        &[host],
        "    health_checks: [{timeout: 1s, interval: 0.2s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /healthz}}]\n",
    );
    let proxy = Proxy::start(&bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[c]));
    tests::eventually(Duration::from_secs(10), || {
        (probes.load(std::sync::atomic::Ordering::Relaxed) >= 3).then_some(())
    })
    .await;
    let clusters = proxy.admin_get("/clusters").1;
    assert!(clusters.contains(&format!("c::{host}::health_flags::healthy")), "{clusters}");
}

/// A control plane that stops answering without closing (frozen with SIGSTOP: its kernel
/// keeps the TCP connection up, nothing answers): HTTP/2 keepalive on the xDS stream notices
/// within `interval + timeout` and the client reconnects, instead of keeping the dead stream
/// (and stale config) forever. The xDS cluster's `connection_keepalive` sets the timings, as
/// in Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_control_plane_is_noticed_and_the_stream_reconnects() {
    let mut cp = tests::xds_server::AdsServer::start();
    cp.set("type.googleapis.com/envoy.config.listener.v3.Listener", "l1", vec![]);
    let yaml = format!(
        r#"node: {{id: "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local", cluster: web.shop}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
dynamic_resources:
  ads_config: {{api_type: GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc, max_receive_message_length: 8388608}}}}]}}
  lds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 0s}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    upstream_connection_options: {{tcp_keepalive: {{keepalive_time: 300}}}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{connection_keepalive: {{interval: 0.5s, timeout: 0.5s}}}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]
"#,
        cp.port
    );
    let proxy = Proxy::start_unready(&yaml);
    cp.wait(|e| e["event"] == "stream_open");
    let connected = || proxy.metric("xds_connected", "");
    tests::eventually(Duration::from_secs(10), || (connected() == 1.0).then_some(())).await;
    let pid = cp.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // Frozen: the stream is declared dead by keepalive alone.
    let noticed = tokio::time::timeout(
        Duration::from_secs(10),
        tests::eventually(Duration::from_secs(10), || (connected() == 0.0).then_some(())),
    )
    .await;
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    assert!(noticed.is_ok(), "the client kept a silent stream");
    // Thawed: a second stream opens and the client is connected again.
    cp.wait(|e| e["event"] == "stream_open" && e["stream"] != 1);
    tests::eventually(Duration::from_secs(10), || (connected() == 1.0).then_some(())).await;
}

/// Active health checks use the cluster's transport socket: an upstream that only speaks
/// mTLS (openssl s_server requiring a client certificate) passes them. (Probes were always
/// plaintext, so every host of an mTLS cluster failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_of_an_mtls_cluster_speak_mtls() {
    use tests::pki::{path_str, spiffe, MeshPki};
    let pki = MeshPki::new("hc");
    let server = pki.leaf("cluster2", &spiffe("default", "web"), &[]);
    let client = pki.leaf("cluster1", &spiffe("default", "sidecar"), &[]);
    let root = path_str(&pki.root);
    let (cert, key, chain) = (path_str(&server.cert), path_str(&server.key), path_str(&server.intermediate));
    let s = tests::openssl::SServer::start(&[
        "-www",
        "-cert",
        &cert,
        "-key",
        &key,
        "-cert_chain",
        &chain,
        "-CAfile",
        &root,
        "-Verify",
        "1",
    ]);
    let tls = format!(
        r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates: [{{certificate_chain: {{filename: "{}"}}, private_key: {{filename: "{}"}}}}]
          validation_context: {{trusted_ca: {{filename: "{root}"}}, match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: "{}"}}}}]}}
    health_checks: [{{timeout: 1s, interval: 0.2s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {{path: /healthz}}}}]
"#,
        path_str(&client.chain),
        path_str(&client.key),
        spiffe("default", "web")
    );
    let c = cluster("c", &[s.addr], &tls);
    let proxy = Proxy::start(&bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[c]));
    let counted = |k: &str| proxy.metric(&format!("envoy_cluster_health_check_{k}"), "\"c\"");
    tests::eventually(Duration::from_secs(10), || (counted("attempt") >= 3.0).then_some(())).await;
    assert_eq!(counted("failure"), 0.0, "{}", s.stderr.text());
    let clusters = proxy.admin_get("/clusters").1;
    assert!(clusters.contains(&format!("c::{}::health_flags::healthy", s.addr)), "{clusters}");
}
