//! gRPC through the proxy with Python grpcio on both ends, and TCP through tcp_proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tests::proxy::Proxy;
use tests::yaml::{bootstrap, cluster, http_listener, route_to, tcp_listener, H2_UPSTREAM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct GrpcServer(Child, std::net::SocketAddr);

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn grpc_server() -> GrpcServer {
    let script = tests::repo_root().join("tests/peers/grpc_echo.py");
    let mut child = Command::new(tests::python())
        .arg(script)
        .args(["server", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python grpc server");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("LISTENING ").expect("LISTENING line").parse().unwrap();
    GrpcServer(child, format!("127.0.0.1:{port}").parse().unwrap())
}

fn grpc_client(target: std::net::SocketAddr, case: &str) -> serde_json::Value {
    let script = tests::repo_root().join("tests/peers/grpc_echo.py");
    let out = Command::new(tests::python())
        .arg(script)
        .args(["client", "--target", &target.to_string(), "--case", case, "--count", "200"])
        .output()
        .expect("python grpc client");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_unary_error_and_bidi_streaming_keep_status_and_trailers() {
    let server = grpc_server();
    let yaml =
        bootstrap(&[http_listener("grpc", &route_to("echo", ""), "")], &[cluster("echo", &[server.1], H2_UPSTREAM)]);
    let proxy = Proxy::start(&yaml);
    let target = proxy.listener("grpc");

    let unary = grpc_client(target, "unary");
    assert_eq!(unary["code"], "OK", "{unary}");
    assert_eq!(unary["responses"][0], "echo:hello");
    assert_eq!(unary["trailers"]["x-test-trailer"], "bye");

    let fail = grpc_client(target, "fail");
    assert_eq!(fail["code"], "INVALID_ARGUMENT", "{fail}");
    assert_eq!(fail["details"], "asked to fail");
    assert_eq!(fail["trailers"]["x-test-trailer"], "bye");

    let bidi = grpc_client(target, "bidi");
    assert_eq!(bidi["code"], "OK", "{bidi}");
    let got: Vec<String> =
        bidi["responses"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let want: Vec<String> = (0..200).map(|i| format!("echo:m{i}")).collect();
    assert_eq!(got, want);
    assert_eq!(bidi["trailers"]["x-test-trailer"], "bidi-done");
    // Status codes are recorded from trailers.
    assert_eq!(proxy.metric("istio_requests_total", "grpc_response_status=\"3\""), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_to_a_dead_upstream_gets_unavailable_not_a_protocol_error() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let yaml = bootstrap(&[http_listener("grpc", &route_to("echo", ""), "")], &[cluster("echo", &[dead], H2_UPSTREAM)]);
    let proxy = Proxy::start(&yaml);
    let r = grpc_client(proxy.listener("grpc"), "unary");
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_echo_with_half_close() {
    let echo = tests::upstream::tcp_echo().await;
    let proxy = Proxy::start(&bootstrap(&[tcp_listener("tcp", "echo")], &[cluster("echo", &[echo], "")]));
    let mut s = tokio::net::TcpStream::connect(proxy.listener("tcp")).await.unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&payload).await.unwrap();
    // Half-close: the upstream sees EOF, answers "<bye>" and closes; we still read it all.
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), payload.len() + 5);
    assert_eq!(&got[..payload.len()], &payload[..]);
    assert_eq!(&got[payload.len()..], b"<bye>");
    drop(s);
    let closed = tests::eventually(std::time::Duration::from_secs(5), || {
        let v = proxy.metric("istio_tcp_connections_closed_total", "");
        (v >= 1.0).then_some(v)
    })
    .await;
    assert_eq!(closed, 1.0);
    assert_eq!(proxy.metric("istio_tcp_received_bytes_total", ""), payload.len() as f64);
    assert_eq!(proxy.metric("istio_tcp_sent_bytes_total", ""), (payload.len() + 5) as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_to_a_dead_upstream_closes_that_connection_only() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let echo = tests::upstream::tcp_echo().await;
    let yaml = bootstrap(
        &[tcp_listener("dead", "dead"), tcp_listener("live", "echo")],
        &[cluster("dead", &[dead], ""), cluster("echo", &[echo], "")],
    );
    let proxy = Proxy::start(&yaml);
    let mut s = tokio::net::TcpStream::connect(proxy.listener("dead")).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.read_to_end(&mut buf).await.unwrap_or(0), 0);
    let mut s = tokio::net::TcpStream::connect(proxy.listener("live")).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping<bye>");
}
