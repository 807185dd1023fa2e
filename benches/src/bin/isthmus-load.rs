//! `isthmus-load`: a load generator for latency at a fixed rate, the measurement wrk and
//! h2load do not make.
//!
//! Open loop: request *i* is due at `start + i / rate` whether or not earlier ones finished;
//! its latency is measured from when it was due, so a stalled server is charged for the
//! requests that queued behind the stall (coordinated-omission correction, as wrk2 does).
//! `--rate 0` is closed loop (each connection sends its next request when the last returns):
//! maximum throughput. HTTP/1.1 (one request at a time per connection), HTTP/2 and gRPC
//! (streams multiplexed on `--connections` connections), raw TCP (echo round trips).
//! Prints one JSON object: counts, achieved rate and latency percentiles in microseconds
//! from an HDR histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Proto {
    /// HTTP/1.1 keep-alive.
    H1,
    /// HTTP/2 prior knowledge (h2c).
    H2,
    /// gRPC unary calls over h2c (empty message; success = grpc-status 0).
    Grpc,
    /// Raw TCP: write `--size` bytes, read them back (an echo upstream).
    Tcp,
}

#[derive(Debug, Parser)]
#[command(about = "Open-loop fixed-rate (or closed-loop) load with HDR latency percentiles")]
struct Args {
    /// Target `host:port`.
    target: String,
    /// Protocol.
    #[arg(long, value_enum, default_value = "h1")]
    proto: Proto,
    /// Requests per second in total; 0 = closed loop (as fast as the connections go).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Connections (HTTP/1.1 and TCP: also the concurrency; HTTP/2: streams share them).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of load (at most 300).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Request path (HTTP) or method path (gRPC, e.g. `/pkg.Svc/Method`).
    #[arg(long, default_value = "/")]
    path: String,
    /// Payload bytes for TCP round trips.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Upper bound on requests sent.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Seconds a request may take before it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Default)]
struct Totals {
    ok: AtomicU64,
    errors: AtomicU64,
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Tcp(TcpStream, Vec<u8>),
}

async fn connect(a: &Args) -> Result<Conn, String> {
    let s = TcpStream::connect(&a.target).await.map_err(|e| format!("connect {}: {e}", a.target))?;
    let _ = s.set_nodelay(true);
    match a.proto {
        Proto::H1 => {
            let (send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(s)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
        Proto::H2 | Proto::Grpc => {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        }
        Proto::Tcp => Ok(Conn::Tcp(s, vec![0u8; a.size])),
    }
}

fn request(a: &Args) -> http::Request<Full<Bytes>> {
    let b = http::Request::builder().uri(format!("http://{}{}", a.target, a.path));
    match a.proto {
        Proto::Grpc => b
            .method("POST")
            .version(http::Version::HTTP_2)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Proto::H2 => b.version(http::Version::HTTP_2).body(Full::new(Bytes::new())),
        _ => b.header("host", a.target.as_str()).body(Full::new(Bytes::new())),
    }
    .unwrap_or_default()
}

/// One request/response (or echo round trip); true on success.
async fn once(conn: &mut Conn, a: &Args) -> bool {
    match conn {
        Conn::H1(s) => {
            if s.ready().await.is_err() {
                return false;
            }
            match s.send_request(request(a)).await {
                Ok(r) => r.status().is_success() && r.into_body().collect().await.is_ok(),
                Err(_) => false,
            }
        }
        Conn::H2(s) => match s.send_request(request(a)).await {
            Ok(r) => {
                let ok = r.status().is_success();
                match r.into_body().collect().await {
                    Ok(c) if a.proto == Proto::Grpc => {
                        ok && c.trailers().and_then(|t| t.get("grpc-status")).is_some_and(|v| v == "0")
                    }
                    Ok(_) => ok,
                    Err(_) => false,
                }
            }
            Err(_) => false,
        },
        Conn::Tcp(s, buf) => {
            buf.fill(b'x');
            if s.write_all(buf).await.is_err() {
                return false;
            }
            s.read_exact(buf).await.is_ok()
        }
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let curve: Vec<[f64; 2]> = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0]
        .iter()
        .map(|q| [*q, h.value_at_percentile(*q) as f64])
        .collect();
    serde_json::json!({
        "p50": h.value_at_quantile(0.50), "p90": h.value_at_quantile(0.90), "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999), "p99_99": h.value_at_quantile(0.9999), "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "curve": curve,
    })
}

#[tokio::main]
async fn main() {
    let a = Arc::new(Args::parse());
    let duration = Duration::from_secs_f64(a.duration.clamp(0.1, 300.0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| {
        eprintln!("histogram: {e}");
        std::process::exit(2)
    })));
    let totals = Arc::new(Totals::default());
    // Shared connections for HTTP/2 (streams multiplex); one per worker otherwise.
    let workers = if a.rate == 0 {
        a.connections
    } else {
        a.connections.max(1) * if matches!(a.proto, Proto::H2 | Proto::Grpc) { 8 } else { 1 }
    };
    let mut conns = Vec::new();
    for _ in 0..a.connections.max(1) {
        match connect(&a).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!("isthmus-load: {e}");
                std::process::exit(1);
            }
        }
    }
    let start = Instant::now();
    let deadline = start + duration;
    let (tx, rx) = tokio::sync::mpsc::channel::<Instant>(1_000_000);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    let h2_shared: Vec<hyper::client::conn::http2::SendRequest<Full<Bytes>>> =
        conns.iter().filter_map(|c| if let Conn::H2(s) = c { Some(s.clone()) } else { None }).collect();
    let mut own = conns.into_iter();
    for w in 0..workers {
        let mut conn = if h2_shared.is_empty() {
            match own.next() {
                Some(c) => c,
                None => break,
            }
        } else {
            Conn::H2(h2_shared[w % h2_shared.len()].clone())
        };
        let (a, hist, totals, rx) = (a.clone(), hist.clone(), totals.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            loop {
                let due = if a.rate == 0 {
                    let now = Instant::now();
                    if now >= deadline
                        || totals.ok.load(Ordering::Relaxed) + totals.errors.load(Ordering::Relaxed) >= a.max_requests
                    {
                        break;
                    }
                    now
                } else {
                    match rx.lock().await.recv().await {
                        Some(d) => d,
                        None => break,
                    }
                };
                // Requests still queued this long after the end are given up (counted as errors),
                // so an overloaded target cannot hold the run open without bound.
                if Instant::now() > deadline + Duration::from_secs_f64(a.timeout) {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let limit = Duration::from_secs_f64(a.timeout.clamp(0.001, 300.0));
                let ok = tokio::time::timeout(limit, once(&mut conn, &a)).await.unwrap_or(false);
                let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                if ok {
                    totals.ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(h) = local.as_mut() {
                        let _ = h.record(us.min(60_000_000));
                    }
                } else {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                    // The connection is likely gone (a reset, or GOAWAY on HTTP/2): this worker
                    // continues on a new one of its own.
                    let gone = match &conn {
                        Conn::H2(s) => s.is_closed(),
                        _ => true,
                    };
                    if gone {
                        if let Ok(c) = connect(&a).await {
                            conn = c;
                        }
                    }
                }
            }
            if let (Some(l), Ok(mut h)) = (local, hist.lock()) {
                let _ = h.add(l);
            }
        }));
    }
    if a.rate > 0 {
        // The schedule runs on its own OS thread: `thread::sleep` wakes within tens of
        // microseconds, where the runtime's timer wheel rounds up to the next millisecond (which
        // would be charged to the server). Each request is stamped with the time it was due,
        // so a busy connection or a late release is charged to its latency (the correction).
        let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
        let max = a.max_requests;
        let ticker = std::thread::spawn(move || {
            let mut i: u64 = 0;
            loop {
                let due = start + interval.mul_f64(i as f64);
                if due >= deadline || i >= max {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.blocking_send(due).is_err() {
                    break;
                }
                i += 1;
            }
        });
        let _ = tokio::task::spawn_blocking(move || ticker.join()).await;
    } else {
        drop(tx);
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = hist.lock().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone());
    let ok = totals.ok.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "target": a.target, "proto": format!("{:?}", a.proto).to_lowercase(), "rate": a.rate,
        "connections": a.connections, "duration_s": (elapsed * 1000.0).round() / 1000.0,
        "ok": ok, "errors": totals.errors.load(Ordering::Relaxed),
        "achieved_rps": (ok as f64 / elapsed * 10.0).round() / 10.0,
        "latency_us": percentiles(&h),
    });
    println!("{out}");
}
