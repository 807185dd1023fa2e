//! The L4 zero-copy path (issue 8): plaintext tcp_proxy moves bytes with `splice(2)`, visible
//! in `isthmus_tcp_proxy_io_total{mode}`, and both the splice and the `--l4-copy` paths carry
//! 100 MiB each way intact with exact `istio_tcp_*_bytes_total` counts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use tests::proxy::Proxy;
use tests::yaml::{bootstrap, cluster, tcp_listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SIZE: u64 = 100 * 1024 * 1024;

fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

/// Reads to EOF, returning (bytes, bytes that broke the pattern).
async fn drain_checked(r: &mut (impl AsyncReadExt + Unpin)) -> (u64, u64) {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut total, mut bad) = (0u64, 0u64);
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (total, bad);
        }
        for (i, b) in buf[..n].iter().enumerate() {
            if *b != ((total + i as u64) % 251) as u8 {
                bad += 1;
            }
        }
        total += n as u64;
    }
}

async fn send_pattern(w: &mut (impl AsyncWriteExt + Unpin), size: u64) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while sent < size {
        let n = (size - sent).min(buf.len() as u64) as usize;
        pattern(sent, &mut buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        sent += n as u64;
    }
    w.shutdown().await.unwrap();
}

/// An upstream that checks what it receives, and after the client's FIN sends `SIZE` back.
async fn sink_then_source() -> (SocketAddr, tokio::task::JoinHandle<(u64, u64)>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let got = drain_checked(&mut s).await;
        send_pattern(&mut s, SIZE).await;
        got
    });
    (addr, task)
}

async fn transfer(flags: &[&str], mode: &str) {
    let (up, upstream) = sink_then_source().await;
    let yaml = bootstrap(&[tcp_listener("tcp", "up")], &[cluster("up", &[up], "")]);
    let proxy = Proxy::start_with(&yaml, flags);
    let mut c = TcpStream::connect(proxy.listener("tcp")).await.unwrap();
    let (mut r, mut w) = c.split();
    let ((), back) = tokio::join!(send_pattern(&mut w, SIZE), drain_checked(&mut r));
    assert_eq!(back, (SIZE, 0), "{mode}: the upstream's bytes came back intact");
    assert_eq!(upstream.await.unwrap(), (SIZE, 0), "{mode}: the upstream received every byte intact");

    // The counters are written when the proxy finishes the connection, just after our EOF.
    let cluster = "destination_service_name=\"up\"";
    tests::eventually(Duration::from_secs(10), || {
        (proxy.metric("istio_tcp_connections_closed_total", cluster) == 1.0).then_some(())
    })
    .await;
    assert_eq!(proxy.metric("istio_tcp_received_bytes_total", cluster), SIZE as f64, "{mode}");
    assert_eq!(proxy.metric("istio_tcp_sent_bytes_total", cluster), SIZE as f64, "{mode}");
    let other = if mode == "splice" { "copy" } else { "splice" };
    assert_eq!(proxy.metric("isthmus_tcp_proxy_io_total", &format!("mode=\"{mode}\"")), 2.0, "both directions");
    assert_eq!(proxy.metric("isthmus_tcp_proxy_io_total", &format!("mode=\"{other}\"")), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_moves_100_mib_each_way_with_exact_counts() {
    transfer(&[], "splice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_path_moves_100_mib_each_way_with_exact_counts() {
    transfer(&["--l4-copy"], "copy").await;
}
