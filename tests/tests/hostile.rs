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

/// Sends `head` on a fresh connection and returns the status line (empty if the proxy closed
/// without answering).
fn raw_status(addr: SocketAddr, head: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(head);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_string()
}

/// Status of an h2c request with `n` extra headers of `size` bytes each, through curl.
fn h2c_status(addr: SocketAddr, n: usize, size: usize) -> String {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--http2-prior-knowledge"]);
    for i in 0..n {
        cmd.args(["-H", &format!("x-h{i}: {}", "v".repeat(size))]);
    }
    let out = cmd.arg(format!("http://{addr}/")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Oversized and too many request headers, side by side with Envoy 1.40 on its defaults
/// (`max_request_headers_kb` 60, `max_headers_count` 100): the same answer for HTTP/1.1 and
/// h2c, and an ordinary request next to them still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_too_many_headers_as_envoy() {
    let up = Upstream::start("up", Behaviour::default()).await;
    let yaml = bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]);
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..101 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let fine = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let _keep = tests::side::Running::start(who, &yaml).await;
        let addr = _keep.listener("web");
        let (a, big, many) = (addr, big.clone(), many.clone());
        let got = tokio::task::spawn_blocking(move || {
            vec![
                raw_status(a, big.as_bytes()),
                raw_status(a, many.as_bytes()),
                raw_status(a, fine.as_bytes()),
                h2c_status(a, 1, 70 * 1024),
                h2c_status(a, 101, 1),
                h2c_status(a, 1, 10),
            ]
        })
        .await
        .unwrap();
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "Envoy and Isthmus differ");
    // HTTP/1.1: 431 for 70 KiB of headers and for 101 headers; h2c: the stream is reset
    // (curl reports 000) for both.
    let too_large = "HTTP/1.1 431 Request Header Fields Too Large";
    assert_eq!(seen[1], [too_large, too_large, "HTTP/1.1 200 OK", "000", "000", "200"]);
}

/// Writes `ping` and reads until 4 bytes came back or the peer closed.
fn ping(s: &mut TcpStream) -> Vec<u8> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"ping");
    let mut got = vec![0u8; 4];
    let mut n = 0;
    while n < 4 {
        match s.read(&mut got[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    got.truncate(n);
    got
}

/// Against a TCP echo behind a limit of `limit` connections: `limit` connections held open
/// each echo, one more is closed unanswered, and once one closes a new one is served. Returns
/// what each exchange got back.
async fn connection_limit_sequence(addr: std::net::SocketAddr, limit: usize) -> Vec<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut open: Vec<TcpStream> = (0..limit).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut out: Vec<Vec<u8>> = open.iter_mut().map(ping).collect();
        let mut over = TcpStream::connect(addr).unwrap();
        out.push(ping(&mut over));
        drop(open.pop());
        // The freed slot is taken by the next connection once the proxy saw the close.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut again = Vec::new();
        while std::time::Instant::now() < deadline {
            again = ping(&mut TcpStream::connect(addr).unwrap());
            if !again.is_empty() {
                break;
            }
        }
        out.push(again);
        out
    })
    .await
    .unwrap()
}

/// The overload manager's `global_downstream_max_connections`, side by side with Envoy: with
/// three connections open a fourth is closed at once; when one closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_connection_limit_as_envoy() {
    let echo = tests::upstream::tcp_echo().await;
    let yaml = format!(
        "{}overload_manager:\n  resource_monitors:\n  - name: envoy.resource_monitors.global_downstream_max_connections\n    typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig, max_active_downstream_connections: 3}}\n",
        bootstrap(&[tests::yaml::tcp_listener("tcp", "echo")], &[cluster("echo", &[echo], "")])
    );
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let keep = tests::side::Running::start(who, &yaml).await;
        let got = connection_limit_sequence(keep.listener("tcp"), 3).await;
        if let Some(p) = keep.isthmus() {
            assert!(p.metric("isthmus_downstream_global_cx_overflow", "tcp") >= 1.0);
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "Envoy and Isthmus differ");
    let p = b"ping".to_vec();
    assert_eq!(seen[1], [p.clone(), p.clone(), p.clone(), vec![], p]);
}

/// A listener's own limit (`envoy.filters.network.connection_limit` before `tcp_proxy`),
/// side by side with Envoy: two connections open, a third is held for the filter's `delay` and
/// closed unanswered; a freed slot serves the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_connection_limit_as_envoy() {
    let echo = tests::upstream::tcp_echo().await;
    let limit = "      - name: envoy.filters.network.connection_limit\n        typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit, stat_prefix: tcp_limit, max_connections: 2, delay: 0.2s}\n";
    let listener =
        tests::yaml::tcp_listener("tcp", "echo").replace("    - filters:\n", &format!("    - filters:\n{limit}"));
    let yaml = bootstrap(&[listener], &[cluster("echo", &[echo], "")]);
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let keep = tests::side::Running::start(who, &yaml).await;
        let t = std::time::Instant::now();
        let got = connection_limit_sequence(keep.listener("tcp"), 2).await;
        // The refused connection was held for the delay before it closed.
        assert!(t.elapsed() >= Duration::from_millis(200), "{who}: {:?}", t.elapsed());
        if let Some(p) = keep.isthmus() {
            assert!(p.metric("envoy_connection_limit_limited_connections", "tcp_limit") >= 1.0);
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "Envoy and Isthmus differ");
    let p = b"ping".to_vec();
    assert_eq!(seen[1], [p.clone(), p.clone(), vec![], p]);
}

/// The overload manager's heap monitor, side by side with Envoy: with `max_heap_size_bytes`
/// far below what either process holds, `stop_accepting_requests` (threshold 0.95) turns on
/// within a refresh and requests get `503 envoy overloaded`; with a bound far above, they are
/// served. (Envoy measures tcmalloc's heap, Isthmus glibc's `mallinfo2`; both are megabytes,
/// so the two bounds decide the same way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_overload_stops_requests_as_envoy() {
    let up = Upstream::start("up", Behaviour::default()).await;
    let overload = |max: u64| {
        format!(
            "overload_manager:\n  refresh_interval: 0.1s\n  resource_monitors:\n  - name: envoy.resource_monitors.fixed_heap\n    typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig, max_heap_size_bytes: {max}}}\n  actions:\n  - name: envoy.overload_actions.stop_accepting_requests\n    triggers: [{{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.95}}}}]\n  - name: envoy.overload_actions.shrink_heap\n    triggers: [{{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.9}}}}]\n"
        )
    };
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let mut mine = Vec::new();
        for max in [1_048_576u64, 1 << 40] {
            let yaml = format!(
                "{}{}",
                bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]),
                overload(max)
            );
            let running = tests::side::Running::start(who, &yaml).await;
            let addr = running.listener("web");
            let ask = || async move {
                let (status, _, body) = get(addr, "/", &[]).await.unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            };
            if max < 1 << 30 {
                // The action turns on at the first refresh: await the refusal (10 s at most).
                let end = std::time::Instant::now() + Duration::from_secs(10);
                let mut got = ask().await;
                while got.0 != 503 && std::time::Instant::now() < end {
                    got = ask().await;
                }
                mine.push(got);
            } else {
                // An action that must stay off has no event to await: ask after five refreshes.
                tokio::time::sleep(Duration::from_millis(500)).await;
                mine.push(ask().await);
            }
        }
        seen.push(mine);
    }
    assert_eq!(seen[0], seen[1], "Envoy, then Isthmus");
    assert_eq!(seen[1][0], (503, "envoy overloaded".to_string()));
    assert_eq!(seen[1][1].0, 200);
}

/// Request-smuggling shapes over HTTP/1.1, side by side with Envoy 1.40: Content-Length with
/// chunked, two differing Content-Lengths, a bad chunk size, stacked transfer codings. The
/// upstream never sees the smuggled request. Where the two differ it is said here:
/// Content-Length with chunked is refused by Envoy (`allow_chunked_length: false`) while
/// hyper follows RFC 9112 §6.1 (chunked wins, Content-Length is dropped) and forwards one
/// well-framed request; a bad chunk size is 400 from both (Isthmus finds it while streaming
/// the body and answers `400 DPE`); `gzip, chunked` is 501 in Envoy and 400 in hyper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_shapes_are_refused_as_envoy() {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let shapes: Vec<String> = vec![
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"),
    ];
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let up = Upstream::start("up", Behaviour::default()).await;
        let yaml = bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]);
        let _keep = tests::side::Running::start(who, &yaml).await;
        let addr = _keep.listener("web");
        let shapes = shapes.clone();
        let statuses = tokio::task::spawn_blocking(move || {
            shapes.iter().map(|s| raw_status(addr, s.as_bytes())).collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let refused: Vec<bool> =
            statuses.iter().map(|s| s.starts_with("HTTP/1.1 4") || s.starts_with("HTTP/1.1 5")).collect();
        seen.push((refused, up.hits(), statuses));
    }
    let (envoy, isthmus) = (&seen[0], &seen[1]);
    assert_eq!(envoy.0, [true; 4], "{envoy:?}");
    assert_eq!(isthmus.0, [false, true, true, true], "{isthmus:?}");
    // Isthmus' upstream saw exactly one request: the first shape's POST, reframed as chunked
    // with an empty body; the smuggled GET behind it was never forwarded.
    assert_eq!((envoy.1, isthmus.1), (0, 1), "Envoy {envoy:?}, Isthmus {isthmus:?}");
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client opens streams and cancels each at once, as
/// fast as it can. The connection is cut (hyper's bound on streams reset before they are
/// accepted), few of the cancelled streams reach the upstream, and a well-behaved client on
/// another connection is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_cut_off() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let up = Upstream::start("up", Behaviour { delay: Some(Duration::from_millis(50)), ..Default::default() }).await;
    let yaml = bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]);
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("web");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let ended = tokio::spawn(conn);
    let mut sent = 0u32;
    // Bounded: 10,000 streams at most.
    for _ in 0..10_000 {
        if send.ready().await.is_err() {
            break;
        }
        let req = http::Request::get(format!("http://{addr}/")).body(Empty::new()).unwrap();
        let fut = send.send_request(req);
        // Polled once (the HEADERS frame goes out), then dropped: RST_STREAM(CANCEL).
        let _ = tokio::time::timeout(Duration::from_micros(1), fut).await;
        sent += 1;
        if ended.is_finished() {
            break;
        }
    }
    let cut = tokio::time::timeout(Duration::from_secs(10), ended).await;
    assert!(cut.is_ok(), "the attacking connection was never closed after {sent} streams");
    assert!(sent < 10_000, "all 10,000 cancelled streams were accepted");
    let (s, _, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(s, 200, "a well-behaved client is still served");
    assert!(up.hits() < 1_000, "{} cancelled streams reached the upstream", up.hits());
}

/// An HTTP/2 frame header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One HPACK literal header field without indexing, new name, a 1,000-byte value.
fn hpack_literal(i: usize) -> Vec<u8> {
    let name = format!("x-flood-{i:06}");
    let mut b = vec![0x00, u8::try_from(name.len()).unwrap()];
    b.extend_from_slice(name.as_bytes());
    // 1,000 in HPACK's 7-bit prefix integer: 127, then 873 = 0b110_1101001 → 0xE9 0x06.
    b.extend_from_slice(&[0x7f, 0xe9, 0x06]);
    b.extend_from_slice(&[b'a'; 1000]);
    b
}

/// HTTP/2 CONTINUATION flood (the 2024 class of CVEs): one HEADERS frame without END_HEADERS,
/// then CONTINUATION frames of 1 KB headers, never ending the block. Both proxies close the
/// connection within the header-size bound instead of buffering without end (Envoy side by
/// side), and an ordinary client is served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_is_cut_off_as_envoy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up", Behaviour::default()).await;
    let yaml = bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]);
    for who in ["envoy", "isthmus"] {
        let running = tests::side::Running::start(who, &yaml).await;
        let addr = running.listener("web");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(h2_frame(4, 0, 0, &[]));
        // HEADERS on stream 1: END_STREAM, no END_HEADERS; a valid start of a request.
        let mut block = vec![0x82, 0x86, 0x84, 0x41, 0x01, b'x']; // :method GET, :scheme http, :path /, :authority x
        block.extend(hpack_literal(0));
        hello.extend(h2_frame(1, 0x1, 1, &block));
        s.write_all(&hello).await.unwrap();
        // Up to 10 MB of CONTINUATION (bounded), reading whatever the proxy answers meanwhile.
        let mut sent = 0usize;
        let mut closed = false;
        let mut buf = vec![0u8; 65536];
        for i in 1..10_000 {
            if s.write_all(&h2_frame(9, 0, 1, &hpack_literal(i))).await.is_err() {
                closed = true;
                break;
            }
            sent += 1;
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_micros(50), s.read(&mut buf)).await {
                closed = true;
                break;
            }
        }
        if !closed {
            // Whatever is in flight: the proxy must end the connection soon.
            closed = matches!(
                tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await,
                Ok(())
            );
        }
        assert!(closed, "{who}: the flooding connection was never closed ({sent} CONTINUATION frames sent)");
        assert!(sent < 2_000, "{who}: {sent} KB of headers accepted before the cut");
        let (status, _, _) = get(addr, "/", &[]).await.unwrap();
        assert_eq!(status, 200, "{who}: an ordinary client is served afterwards");
    }
    assert_eq!(up.hits(), 2, "the flooded request never reached the upstream");
}

/// One keep-alive HTTP/1.1 request on `s`; the status line, or `None` if the proxy closed.
fn keepalive_get(s: &mut TcpStream) -> Option<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut status = String::new();
    if r.read_line(&mut status).ok()? == 0 {
        return None;
    }
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(status.trim().to_string())
}

/// HCM `idle_timeout` (0.3 s) closes a keep-alive connection with no request in flight, but
/// not one waiting on a slower response; `max_connection_duration` (0.5 s) drains a connection
/// that stays busy. Both used to be accepted and never enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_and_max_connection_duration_close_connections() {
    use std::io::Read;
    let up = Upstream::start("up", Behaviour { delay: Some(Duration::from_millis(600)), ..Default::default() }).await;
    let fast = Upstream::start("fast", Behaviour::default()).await;
    let listener = |name: &str, cluster: &str, options: &str| {
        http_listener(name, &route_to(cluster, ""), "").replace(
            &format!("          stat_prefix: {name}\n"),
            &format!("          stat_prefix: {name}\n          common_http_protocol_options: {options}\n"),
        )
    };
    let yaml = bootstrap(
        &[listener("idle", "slow", "{idle_timeout: 0.3s}"), listener("old", "fast", "{max_connection_duration: 0.5s}")],
        &[cluster("slow", &[up.addr], ""), cluster("fast", &[fast.addr], "")],
    );
    let proxy = Proxy::start(&yaml);
    let (idle, old) = (proxy.listener("idle"), proxy.listener("old"));
    let closed = tokio::task::spawn_blocking(move || {
        // A 600 ms response outlives the 300 ms idle timeout: in flight, it is not idle.
        let mut s = TcpStream::connect(idle).unwrap();
        let first = keepalive_get(&mut s);
        // Then, quiet, the proxy closes the connection (read sees EOF, bounded at 5 s).
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        let eof = matches!(s.read(&mut buf), Ok(0));
        // Busy for good: requests until the connection is drained (bounded: 100,000 or 10 s).
        let mut s = TcpStream::connect(old).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let start = std::time::Instant::now();
        let mut served = 0;
        while served < 100_000 && start.elapsed() < Duration::from_secs(10) {
            match keepalive_get(&mut s) {
                Some(st) if st.contains("200") => served += 1,
                _ => break,
            }
        }
        (first, eof, served, start.elapsed())
    })
    .await
    .unwrap();
    let (first, eof, served, took) = closed;
    assert_eq!(first.as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(eof, "an idle keep-alive connection was not closed");
    assert!(served > 0 && served < 100_000 && took < Duration::from_secs(10), "{served} requests in {took:?}");
}

/// p99 of `n` sequential keep-alive GETs through `addr`.
async fn p99(addr: SocketAddr, n: usize) -> Duration {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        let (s, _, _) = get(addr, "/", &[]).await.unwrap();
        assert_eq!(s, 200);
        lat.push(t.elapsed());
    }
    lat.sort();
    lat[(n * 99 / 100).min(n - 1)]
}

/// Slowloris: 2,000 connections each trickling a request's headers a byte at a time. They
/// hold a task and a few KiB each and nothing else: an ordinary client's p99 stays within 2×
/// its baseline (plus 10 ms, so a sub-millisecond baseline does not make scheduler noise a
/// failure), and the proxy's memory per slow connection stays bounded (measured 25 KiB: the
/// HTTP/1 read buffer and the connection task; the bound here is 64 KiB). The
/// trickle is bounded: 40 bytes per connection, one every 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_starve_other_clients() {
    use tokio::io::AsyncWriteExt;
    const SLOW: usize = 2_000;
    let up = Upstream::start("up", Behaviour::default()).await;
    let yaml = bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]);
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("web");
    let baseline = p99(addr, 200).await;
    let rss_before = proxy.rss_kib();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut stopped = stopped.clone();
        slow.push(tokio::spawn(async move {
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa";
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for b in head.iter().take(40) {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tick.tick() => {}
                }
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
            }
            let _ = stopped.changed().await;
        }));
    }
    // Every slow connection is accepted and holding (the proxy sees them all).
    tests::eventually(Duration::from_secs(20), || {
        (proxy.metric("isthmus_downstream_cx_total", "web") >= (SLOW + 200) as f64).then_some(())
    })
    .await;
    let attacked = p99(addr, 200).await;
    let rss_after = proxy.rss_kib();
    let _ = stop.send(true);
    for t in slow {
        let _ = t.await;
    }
    let limit = baseline * 2 + Duration::from_millis(10);
    assert!(attacked <= limit, "p99 {attacked:?} under slowloris, baseline {baseline:?}");
    let per_conn = rss_after.saturating_sub(rss_before) / SLOW as u64;
    assert!(per_conn < 64, "{per_conn} KiB per slow connection ({rss_before} → {rss_after} KiB)");
}

/// HTTP/2 upstreams get the client's authority as `:authority`, after `host_rewrite_literal`,
/// side by side with Envoy (the upstream echoes the URI it received, authority included). It
/// used to be the endpoint's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstreams_get_the_clients_authority_as_envoy() {
    let up = Upstream::start("up", Behaviour::default()).await;
    let routes = format!(
        "              - match: {{prefix: \"/\", headers: [{{name: x-rewrite, present_match: true}}]}}\n                route: {{cluster: c, host_rewrite_literal: rewritten.example}}\n{}",
        route_to("c", "")
    );
    let yaml = bootstrap(&[http_listener("web", &routes, "")], &[cluster("c", &[up.addr], tests::yaml::H2_UPSTREAM)]);
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let _keep = tests::side::Running::start(who, &yaml).await;
        let addr = _keep.listener("web");
        let mut uris = Vec::new();
        for rewrite in [false, true] {
            let mut h = vec![("host", "client.example:8080")];
            if rewrite {
                h.push(("x-rewrite", "1"));
            }
            let (s, _, body) = get(addr, "/headers", &h).await.unwrap();
            assert_eq!(s, 200, "{who} rewrite {rewrite}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            uris.push(v[":path"].as_str().unwrap_or_default().to_string());
        }
        seen.push(uris);
    }
    assert_eq!(seen[0], seen[1], "Envoy and Isthmus differ");
    assert_eq!(seen[1], ["http://client.example:8080/headers", "http://rewritten.example/headers"]);
}

/// The configured access-log path and formats are honoured, side by side with Envoy: a text
/// `log_format` (Istio's default operators) and a `json_format` give the same fields for the
/// same requests (times and ids aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_path_and_formats_as_envoy() {
    let up = Upstream::start("up", Behaviour::default()).await;
    let text = r#""%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% "%REQ(USER-AGENT):6%" "%REQ(:AUTHORITY)%" %UPSTREAM_CLUSTER_RAW% %ROUTE_NAME% %UPSTREAM_TRANSPORT_FAILURE_REASON%"#;
    let text = format!("{text}\n");
    let json = r#"{code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%", path: "%REQ(:PATH)%", cluster: "%UPSTREAM_CLUSTER%", static: 7, nested: {method: "%REQ(:METHOD)%"}, mixed: "m=%REQ(:METHOD)%"}"#;
    let logs = |dir: &str| {
        format!(
            "[{{name: envoy.access_loggers.file, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"{dir}/text.log\", log_format: {{text_format_source: {{inline_string: {}}}}}}}}}, {{name: envoy.access_loggers.file, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"{dir}/json.log\", log_format: {{json_format: {json}}}}}}}]",
            serde_json::to_string(&text).unwrap()
        )
    };
    let mut seen = Vec::new();
    for who in ["envoy", "isthmus"] {
        let dir = tests::scratch(&format!("access-log-{who}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        let routes =
            "              - name: main\n                match: {prefix: \"/\"}\n                route: {cluster: c}";
        let listener = http_listener("web", routes, "").replace(
            "          access_log:\n          - name: envoy.access_loggers.stdout\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}\n",
            &format!("          access_log: {}\n", logs(&d)),
        );
        let yaml = bootstrap(&[listener], &[cluster("c", &[up.addr], "")]);
        let _keep = tests::side::Running::start(who, &yaml).await;
        let addr = _keep.listener("web");
        for path in ["/a?x=1", "/b"] {
            let (s, _, _) = get(addr, path, &[("user-agent", "curl/8.5.0"), ("host", "svc.example")]).await.unwrap();
            assert_eq!(s, 200);
        }
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let lines = tests::eventually(Duration::from_secs(10), || {
            let (t, j) = (read("text.log"), read("json.log"));
            (t.lines().count() >= 2 && j.lines().count() >= 2).then_some((t, j))
        })
        .await;
        let json: Vec<serde_json::Value> = lines.1.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        seen.push((lines.0, json));
    }
    assert_eq!(seen[0].0, seen[1].0, "text lines differ");
    assert_eq!(seen[0].1, seen[1].1, "JSON lines differ");
    assert_eq!(
        seen[1].0.lines().next(),
        Some("\"GET /a?x=1 HTTP/1.1\" 200 - 2 \"curl/8\" \"svc.example\" c main -"),
        "{}",
        seen[1].0
    );
}

/// A slow reader cannot stall traffic: an access log on a FIFO nobody reads (opening it
/// blocks) loses lines, counted, while every request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_access_log_drops_lines_instead_of_stalling() {
    let up = Upstream::start("up", Behaviour::default()).await;
    let fifo = tests::scratch("stuck-access-log.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let listener = http_listener("web", &route_to("c", ""), "").replace(
        "          access_log:\n          - name: envoy.access_loggers.stdout\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}\n",
        &format!("          access_log: [{{name: f, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"{}\"}}}}]\n", fifo.display()),
    );
    let proxy = Proxy::start(&bootstrap(&[listener], &[cluster("c", &[up.addr], "")]));
    let addr = proxy.listener("web");
    // More requests than the log queue holds (1,024 lines), all served.
    for i in 0..1_500 {
        let (s, _, _) = get(addr, "/", &[]).await.unwrap();
        assert_eq!(s, 200, "request {i}");
    }
    let dropped = proxy.metric("isthmus_access_log_dropped_total", "fifo");
    assert!(dropped >= 400.0, "{dropped} lines dropped");
}

/// A raw upstream: reads a request head, then answers `reply` and closes (or, with `None`,
/// reads until the client gives up and reports how many body bytes arrived).
async fn raw_upstream(reply: Option<&'static [u8]>) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Bounded: the head plus at most 16 MiB, or 3 s.
                let _ = tokio::time::timeout(Duration::from_secs(3), async {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        if reply.is_some() && got.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                        if got.len() > 16 << 20 {
                            break;
                        }
                    }
                })
                .await;
                match reply {
                    Some(r) => {
                        let _ = s.write_all(r).await;
                    }
                    None => {
                        let head = got.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
                        let _ = tx.send(got.len().saturating_sub(head));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Broken upstreams and a vanishing client, side by side with Envoy: an upstream answering
/// garbage, one resetting mid-body, and a client that sends part of its upload and leaves. Each
/// is answered or cut as Envoy does (status and access-log flag), the upstream of the abandoned
/// upload never sees a whole request, and the proxy serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstreams_and_a_vanishing_client_as_envoy() {
    use std::io::Write;
    let (garbage, _) = raw_upstream(Some(b"HTTP/1.1 abc def\r\n\r\n")).await;
    let (short, _) =
        raw_upstream(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nx-upstream: short\r\n\r\n0123456789")).await;
    let (sink, mut received) = raw_upstream(None).await;
    let fine = Upstream::start("fine", Behaviour::default()).await;
    let routes = "              - match: {prefix: /garbage}\n                route: {cluster: garbage}\n              - match: {prefix: /short}\n                route: {cluster: short}\n              - match: {prefix: /upload}\n                route: {cluster: sink}\n              - match: {prefix: /}\n                route: {cluster: fine}";
    let log_of = |dir: &std::path::Path| {
        format!(
            "          access_log: [{{name: f, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"{}\", log_format: {{text_format_source: {{inline_string: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n\"}}}}}}}}]\n",
            dir.join("access.log").display()
        )
    };
    let mut seen = Vec::new();
    for who in tests::side::BOTH {
        let dir = tests::scratch(&format!("broken-{who}"));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = http_listener("web", routes, "").replace(
            "          access_log:\n          - name: envoy.access_loggers.stdout\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}\n",
            &log_of(&dir),
        );
        let yaml = bootstrap(
            &[listener],
            &[
                cluster("garbage", &[garbage], ""),
                cluster("short", &[short], ""),
                cluster("sink", &[sink], ""),
                cluster("fine", &[fine.addr], ""),
            ],
        );
        let running = tests::side::Running::start(who, &yaml).await;
        let addr = running.listener("web");
        let statuses = tokio::task::spawn_blocking(move || {
            let garbage = raw_status(addr, b"GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n");
            let short = raw_status(addr, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n");
            // Half of a 1 MiB upload, then gone.
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
            let _ = s.write_all(&vec![b'u'; 512 * 1024]);
            drop(s);
            (garbage, short)
        })
        .await
        .unwrap();
        // The abandoned upload's upstream never gets a whole request (Envoy was seen to forward
        // none of the body, Isthmus part of it: both stop at the client's close).
        let got = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
        assert!(got < 1 << 20, "{who}: the upstream got {got} body bytes");
        let (s, _, _) = get(addr, "/", &[]).await.unwrap();
        assert_eq!(s, 200, "{who} serves on");
        let log = dir.join("access.log");
        let lines = tests::eventually(Duration::from_secs(10), || {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            let mut l: Vec<String> = t.lines().filter(|l| !l.starts_with("/ ")).map(str::to_string).collect();
            l.sort();
            (l.len() >= 3).then_some(l)
        })
        .await;
        seen.push((statuses, lines));
    }
    assert_eq!(seen[0], seen[1], "Envoy and Isthmus differ");
}

/// 10,000 concurrent idle connections: all accepted, memory bounded (under 16 KiB each; the
/// compare bench measures about 7.7), and an ordinary request is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_in_bounded_memory() {
    const N: usize = 10_000;
    let up = Upstream::start("up", Behaviour::default()).await;
    let proxy =
        Proxy::start(&bootstrap(&[http_listener("web", &route_to("c", ""), "")], &[cluster("c", &[up.addr], "")]));
    let addr = proxy.listener("web");
    let before = proxy.rss_kib();
    let mut idle = Vec::with_capacity(N);
    for _ in 0..N {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tests::eventually(Duration::from_secs(30), || {
        (proxy.metric("isthmus_downstream_cx_total", "web") >= N as f64).then_some(())
    })
    .await;
    let per_conn = proxy.rss_kib().saturating_sub(before) * 1024 / N as u64;
    let (s, _, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(s, 200);
    drop(idle);
    assert!(per_conn < 16 * 1024, "{per_conn} bytes per idle connection");
}
