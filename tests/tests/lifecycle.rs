//! Streaming large bodies in constant memory, and draining on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioExecutor;
use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mib_body_streams_both_ways_in_constant_memory() {
    let up = Upstream::start("echo", Behaviour::default()).await;
    let proxy = Proxy::start(&bootstrap(
        &[http_listener("ingress", &route_to("web", ", timeout: 0s"), "")],
        &[cluster("web", &[up.addr], "")],
    ));
    let before = proxy.rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), proxy.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let frames =
        futures_util::stream::iter((0..1600).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))));
    let body = StreamBody::new(frames);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("http://{}/echo", proxy.listener("ingress"))).body(body).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0usize;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            got += d.len();
        }
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(got, 100 * MIB);
    let growth_mib = (peak.load(Ordering::Relaxed) - before) as f64 / 1024.0;
    assert!(growth_mib < 32.0, "proxy RSS grew {growth_mib:.1} MiB while streaming 100 MiB each way");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_50_in_flight_requests_refuses_new_connections_and_exits_0() {
    let slow =
        Upstream::start("slow", Behaviour { delay: Some(Duration::from_millis(1500)), ..Default::default() }).await;
    let mut proxy = Proxy::start_with(
        &bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[cluster("web", &[slow.addr], "")]),
        &["--drain-time-s", "20"],
    );
    let addr = proxy.listener("ingress");
    let tasks: Vec<_> = (0..50).map(|_| tokio::spawn(async move { get(addr, "/", &[]).await })).collect();
    tests::eventually(Duration::from_secs(10), || (slow.hits() == 50).then_some(())).await;
    proxy.sigterm();
    // New connections are refused once the accept loop stops.
    tests::eventually(Duration::from_secs(5), || std::net::TcpStream::connect(addr).is_err().then_some(())).await;
    for t in tasks {
        let (status, _, body) = t.await.unwrap().expect("in-flight request completes");
        assert_eq!((status, &body[..]), (200, &b"slow"[..]));
    }
    let status = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(15))).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

/// What one load client saw: requests answered 200, failures (with the first error), and
/// whether it stopped on a refused connection (the proxy's listener closed).
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    first_failure: Option<String>,
    refused: bool,
}

/// Loops requests through one keep-alive client (HTTP/2 with prior knowledge when `h2`) until a
/// new connection is refused, `deadline` passes or 20,000 requests were sent.
async fn load_client(addr: std::net::SocketAddr, h2: bool, deadline: std::time::Instant) -> Tally {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http::<http_body_util::Empty<Bytes>>();
    let mut t = Tally::default();
    for _ in 0..20_000 {
        if std::time::Instant::now() > deadline {
            break;
        }
        let req = http::Request::get(format!("http://{addr}/")).body(http_body_util::Empty::new()).unwrap();
        let outcome = match client.request(req).await {
            Ok(resp) if resp.status() == 200 => match resp.into_body().collect().await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("body: {e:?}")),
            },
            Ok(resp) => Err(format!("status {}", resp.status())),
            // The listener is closed: a new connection was refused. Not a failed request.
            Err(e) if e.is_connect() => {
                t.refused = true;
                break;
            }
            Err(e) => Err(format!("{e:?}")),
        };
        match outcome {
            Ok(()) => t.ok += 1,
            Err(e) => {
                t.failed += 1;
                t.first_failure.get_or_insert(e);
            }
        }
    }
    t
}

/// SIGTERM under load (the adversarial suite's last case): 12 keep-alive HTTP/1.1 clients and
/// 4 HTTP/2 clients loop requests; after SIGTERM no request that reached the proxy fails —
/// HTTP/1 clients learn of the drain from `Connection: close` on their next response, HTTP/2
/// ones from GOAWAY — each client ends on a refused new connection, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request() {
    let up = Upstream::start("up", Behaviour { delay: Some(Duration::from_millis(5)), ..Default::default() }).await;
    let mut proxy = Proxy::start_with(
        &bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[cluster("web", &[up.addr], "")]),
        &["--drain-time-s", "10"],
    );
    let addr = proxy.listener("ingress");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> =
        (0..16).map(|i| tokio::spawn(async move { load_client(addr, i >= 12, deadline).await })).collect();
    // Under load (every client has had answers) before the signal.
    tests::eventually(Duration::from_secs(10), || (up.hits() >= 400).then_some(())).await;
    let before = up.hits();
    proxy.sigterm();
    let mut tallies = Vec::new();
    for c in clients {
        tallies.push(c.await.unwrap());
    }
    let failed: u64 = tallies.iter().map(|t| t.failed).sum();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    assert_eq!(failed, 0, "failed requests after SIGTERM: {tallies:?}");
    assert!(tallies.iter().all(|t| t.refused), "every client ends on a refused connection: {tallies:?}");
    assert!(ok >= before.saturating_sub(16) && ok >= 400, "{ok} answered, {before} upstream hits at the signal");
    let status = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(15))).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A TCP connection still open at shutdown is closed when the drain time runs out and is
/// accounted end to end: its access-log line carries the bytes it moved. (The drop-time record
/// itself — a task dropped mid-transfer — is tested in `proxy/src/l4/tcp_proxy.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_connection_cut_at_shutdown_is_still_logged() {
    use std::io::Write;
    // An upstream that accepts and never answers: the connection stays open until cut.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let listener = tests::yaml::tcp_listener("tcp", "silent").replace(
        "          cluster: silent",
        "          cluster: silent\n          access_log:\n          - name: envoy.access_loggers.stdout\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}",
    );
    let mut proxy =
        Proxy::start_with(&bootstrap(&[listener], &[cluster("silent", &[silent_addr], "")]), &["--drain-time-s", "1"]);
    let mut client = std::net::TcpStream::connect(proxy.listener("tcp")).unwrap();
    client.write_all(b"hello").unwrap();
    let (_held, _) = silent.accept().unwrap();
    proxy.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let s = proxy.wait_exit(Duration::from_secs(15));
        (s, proxy.stdout.lock().unwrap().clone())
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0));
    let line = status
        .1
        .iter()
        .find(|l| l.contains("\"upstream_cluster\":\"silent\""))
        .unwrap_or_else(|| panic!("no access-log line for the cut connection: {:?}", status.1));
    assert!(line.contains("\"bytes_received\":5"), "{line}");
    drop(client);
}
