//! The L7 path streams bodies as `Bytes` frames: proxying a body allocates in proportion to
//! the number of frames, never to the body size, and nothing collects the body. A counting
//! global allocator measures the whole process (proxy, client and upstream in one runtime;
//! the client and upstream are written to allocate nothing per request, so what is counted
//! is the proxy's).
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Client write size: one frame as the proxy's reader sees it at most.
const FRAME: usize = 16 * 1024;
static CHUNK: [u8; FRAME] = [b'x'; FRAME];

/// An upstream that reads each request body into a fixed buffer and answers 200, allocating
/// nothing per request.
async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    // Headers, then exactly content-length body bytes.
                    let mut have = 0;
                    let head_end = loop {
                        let n = match s.read(&mut buf[have..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        have += n;
                        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = std::str::from_utf8(&buf[..head_end]).unwrap().to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    let mut left = len - (have - head_end);
                    while left > 0 {
                        let n = s.read(&mut buf[..left.min(256 * 1024)]).await.unwrap();
                        assert!(n > 0, "upstream: body cut short");
                        left -= n;
                    }
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                }
            });
        }
    });
    addr
}

/// Sends one POST of `size` bytes in `FRAME`-sized writes and reads the 200.
async fn post(s: &mut TcpStream, size: usize, resp: &mut [u8]) {
    let head = format!("POST /upload HTTP/1.1\r\nhost: alloc.test\r\ncontent-length: {size}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut left = size;
    while left > 0 {
        let n = left.min(FRAME);
        s.write_all(&CHUNK[..n]).await.unwrap();
        left -= n;
    }
    let mut have = 0;
    loop {
        let n = s.read(&mut resp[have..]).await.unwrap();
        assert!(n > 0, "proxy closed the connection");
        have += n;
        if resp[..have].ends_with(b"\r\n\r\nok") {
            break;
        }
    }
    assert!(resp.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&resp[..have]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxying_a_body_allocates_per_frame_not_per_byte() {
    let up = upstream().await;
    let yaml = format!(
        r#"static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          route_config: {{virtual_hosts: [{{name: v, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: c}}}}]}}]}}
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
  clusters:
  - name: c
    connect_timeout: 1s
    load_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}}}]}}]}}
"#,
        up.ip(),
        up.port()
    );
    let b = proxy::config::load::load(None, Some(&yaml)).unwrap();
    let running = proxy::app::start(
        proxy::build::snapshot(b).unwrap(),
        proxy::app::Options {
            drain_time: Duration::from_secs(1),
            readiness: None,
            command_line: serde_json::Value::Null,
        },
    )
    .await
    .unwrap();
    let addr = running.listener("l").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut resp = vec![0u8; 4096];
    // Warm-up: the upstream connection, metric handles and per-connection buffers exist after.
    // Bounded: a failed assertion in the upstream task would otherwise leave `post` waiting.
    let limit = Duration::from_secs(30);
    for _ in 0..3 {
        tokio::time::timeout(limit, post(&mut s, 1 << 20, &mut resp)).await.expect("warm-up request timed out");
    }
    let mut per_size = Vec::new();
    for size in [1usize << 20, 8 << 20] {
        let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
        tokio::time::timeout(limit, post(&mut s, size, &mut resp)).await.expect("request timed out");
        let (a, bytes) = (ALLOCS.load(Ordering::Relaxed) - a0, BYTES.load(Ordering::Relaxed) - b0);
        let frames = (size / FRAME) as u64;
        eprintln!("{size} bytes in {frames} frames: {a} allocations, {bytes} bytes allocated");
        per_size.push((size, frames, a, bytes));
    }
    for &(size, frames, allocs, _) in &per_size {
        // A bounded number of allocations per frame (hyper's read buffer and frame queue),
        // plus the request's fixed cost (headers, routing record, upstream request).
        assert!(allocs <= 4 * frames + 200, "{size}-byte body: {allocs} allocations for {frames} frames");
    }
    // Nothing collects the body: a collecting path allocates at least the body size (and
    // doubles while growing); streaming allocates read buffers, well under half of it.
    let (big_size, _, _, big) = per_size[1];
    assert!(big < big_size as u64 / 2, "8 MiB body: {big} bytes allocated");
    running.drain().await;
}
