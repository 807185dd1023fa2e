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
