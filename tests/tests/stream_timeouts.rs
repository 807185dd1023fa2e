//! Stream timeouts side by side with Envoy 1.40 (reliability issue, defect 8): HCM
//! `stream_idle_timeout` and `request_timeout`, a route's `idle_timeout`, the route timeout
//! over the whole response (not only until its headers), `max_stream_duration` with the
//! `grpc-timeout` header, and the legacy `max_grpc_timeout` — the two shapes istiod writes
//! (`timeout: 0s` + `max_stream_duration {0s, 0s}` without a VirtualService timeout;
//! `timeout: T` + `max_grpc_timeout: T` with one; pilot/pkg/networking/core/route/route.go
//! setTimeout). A route with `max_stream_duration` ignores its `timeout`, as Envoy's router does
//! (`usingNewTimeouts`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use tests::upstream::{Behaviour, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn route(prefix: &str, action: &str) -> String {
    format!("              - match: {{prefix: {prefix}}}\n                route: {{cluster: backend, prefix_rewrite: /, {action}}}\n")
}

fn listener(log: &Path) -> String {
    let routes = [
        route("/rt/", "timeout: 0.3s"),
        route("/idle/", "timeout: 0s"),
        route("/routeidle/", "timeout: 0s, idle_timeout: 2s"),
        route("/msd/", "timeout: 0.1s, max_stream_duration: {max_stream_duration: 0.5s}"),
        route("/grpc/", "timeout: 0s, max_stream_duration: {max_stream_duration: 0s, grpc_timeout_header_max: 0s}"),
        route("/legacy/", "timeout: 5s, max_grpc_timeout: 5s"),
    ]
    .concat();
    format!(
        r#"  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: timeouts
          stream_idle_timeout: 0.7s
          request_timeout: 1s
          access_log: [{{name: envoy.access_loggers.file, typed_config: {{"@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: "{log}", log_format: {{text_format_source: {{inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}}}}}}}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
          route_config:
            name: local
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
{routes}"#,
        log = log.display()
    )
}

/// What a client saw: status, body (or `<reset>` when the response was cut), grpc-status.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    body: String,
    grpc_status: Option<String>,
}

async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Seen {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let grpc = headers.iter().any(|(k, _)| *k == "content-type");
    let mut req =
        http::Request::builder().method(if grpc { "POST" } else { "GET" }).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => "<reset>".into(),
    };
    let grpc_status = parts.headers.get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    Seen { status: parts.status.as_u16(), body, grpc_status }
}

/// A POST whose body trickles in a byte every 100 ms (keeping the stream active) and never
/// completes: only `request_timeout` ends it. Returns the status line the proxy sent.
async fn slow_upload(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /idle/sink HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..50 {
        tokio::select! {
            n = s.read(&mut buf) => {
                let n = n.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                return text.lines().next().unwrap_or("<closed>").to_string();
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if s.write_all(b"x").await.is_err() {
                    return "<closed>".into();
                }
            }
        }
    }
    "<no answer in 5 s>".into()
}

fn log_lines(path: &Path, n: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(|l| l.replace("via_upstream", "-")).collect();
    (lines.len() >= n).then_some(lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_timeouts_match_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let grpc = ("content-type", "application/grpc");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // Route timeout 0.3 s: before the headers (504 UT), over a body that takes 0.8 s (cut),
        // and over one that takes 0.2 s.
        ("/rt/x", vec![("x-test-delay-ms", "1000")]),
        ("/rt/drip", vec![("x-test-drip-count", "8")]),
        ("/rt/drip", vec![("x-test-drip-count", "2")]),
        // Stream idle 0.7 s: no headers for 1.2 s (504, the request being complete); a body
        // pausing 1 s (cut); a body steadily dripping for 0.8 s (never idle that long).
        ("/idle/x", vec![("x-test-delay-ms", "1200")]),
        ("/idle/drip", vec![("x-test-drip-ms", "1000"), ("x-test-drip-count", "2")]),
        ("/idle/drip", vec![("x-test-drip-count", "8")]),
        // The route's idle_timeout (2 s) replaces the HCM's.
        ("/routeidle/x", vec![("x-test-delay-ms", "1200")]),
        // max_stream_duration 0.5 s; the route's 0.1 s timeout is not used beside it.
        ("/msd/x", vec![("x-test-delay-ms", "250")]),
        ("/msd/x", vec![("x-test-delay-ms", "1000")]),
        ("/msd/drip", vec![("x-test-drip-count", "10")]),
        // grpc-timeout as the stream's duration (uncapped): gRPC, gRPC without the header, and
        // a plain request carrying it (Envoy reads it whatever the content type).
        ("/grpc/x", vec![grpc, ("grpc-timeout", "200m"), ("x-test-delay-ms", "1000")]),
        ("/grpc/x", vec![grpc, ("x-test-delay-ms", "400")]),
        ("/grpc/x", vec![("grpc-timeout", "200m"), ("x-test-delay-ms", "400")]),
        // Legacy max_grpc_timeout: the header becomes the route timeout, capped.
        ("/legacy/x", vec![grpc, ("grpc-timeout", "200m"), ("x-test-delay-ms", "1000")]),
        ("/legacy/x", vec![grpc, ("x-test-delay-ms", "250")]),
    ];
    let mut seen: Vec<Vec<Seen>> = Vec::new();
    let mut logs: Vec<Vec<String>> = Vec::new();
    let mut uploads: Vec<String> = Vec::new();
    for who in tests::side::BOTH {
        let log = tests::scratch(&format!("timeouts-{who}.log"));
        let yaml = tests::yaml::bootstrap(&[listener(&log)], &[tests::yaml::cluster("backend", &[up.addr], "")]);
        let running = tests::side::Running::start(who, &yaml).await;
        let addr = running.listener("http");
        let mut mine = Vec::new();
        for (path, h) in &cases {
            mine.push(send(addr, path, h).await);
        }
        uploads.push(slow_upload(addr).await);
        logs.push(tests::eventually(Duration::from_secs(10), || log_lines(&log, cases.len() + 1)).await);
        seen.push(mine);
    }
    for (i, (e, s)) in seen[0].iter().zip(&seen[1]).enumerate() {
        assert_eq!(e, s, "case {i} {:?}: Envoy, then Isthmus", cases[i]);
    }
    assert_eq!(uploads[0], uploads[1], "slow upload under request_timeout: Envoy, then Isthmus");
    assert_eq!(logs[0], logs[1], "access log (code, flags, details): Envoy, then Isthmus");
    // What Envoy does, spelled out so the comparison cannot pass on two identical bugs.
    let i = &seen[1];
    assert_eq!((i[0].status, i[0].body.as_str()), (504, "upstream request timeout"));
    assert_eq!(i[1].body, "<reset>", "the route timeout covers the body");
    assert_eq!(i[2].body, "xx");
    assert_eq!((i[3].status, i[3].body.as_str()), (504, "stream timeout"));
    assert_eq!(i[4].body, "<reset>", "an idle body is cut");
    assert_eq!(i[5].body, "xxxxxxxx");
    assert_eq!(i[6].status, 200);
    assert_eq!(i[7].status, 200, "timeout is not used beside max_stream_duration");
    assert_eq!((i[8].status, i[8].body.as_str()), (504, "downstream duration timeout"));
    assert_eq!(i[9].body, "<reset>");
    assert_eq!(i[10].grpc_status.as_deref(), Some("4"));
    assert_eq!(i[11].status, 200);
    assert_eq!(i[13].grpc_status.as_deref(), Some("14"));
    assert!(uploads[1].contains("408"), "{}", uploads[1]);
}

/// A client that stops reading a large response: hyper stops polling the body once the socket
/// is full, so the stream's idle timer is enforced by the connection's watchdog. Both proxies
/// cut the response (the client gets far less than the 16 MiB) and log `SI`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_by_the_idle_timer_as_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let mut seen = Vec::new();
    for who in tests::side::BOTH {
        let log = tests::scratch(&format!("stalled-{who}.log"));
        let yaml = tests::yaml::bootstrap(&[listener(&log)], &[tests::yaml::cluster("backend", &[up.addr], "")]);
        let running = tests::side::Running::start(who, &yaml).await;
        let mut s = tokio::net::TcpStream::connect(running.listener("http")).await.unwrap();
        s.write_all(b"GET /idle/big HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        // Read nothing until the proxy has given up (0.7 s idle; the watchdog's own lateness
        // aside), then take what was buffered.
        let lines = tests::eventually(Duration::from_secs(10), || log_lines(&log, 1)).await;
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got += n,
                Err(_) => panic!("{who}: the connection stayed open after {got} bytes"),
            }
        }
        assert!(got < 16 << 20, "{who}: the whole body arrived ({got} bytes)");
        seen.push(lines);
    }
    assert_eq!(seen[0], seen[1], "access log: Envoy, then Isthmus");
    assert_eq!(seen[1], ["200 SI stream_idle_timeout"]);
}
