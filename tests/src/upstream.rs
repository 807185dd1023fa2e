//! Real upstream servers for the tests (hyper on 127.0.0.1) and a small HTTP client.
//!
//! An upstream answers every request with its name in `x-upstream`, the request headers as
//! JSON (`/headers`), the request body streamed back (`/echo`), or per-request behaviour from
//! `x-test-status` / `x-test-delay-ms`; it can also be told to fail every request. `/drip`
//! sends its headers at once and then `x-test-drip-count` (default 5) one-byte chunks
//! `x-test-drip-ms` (default 100) apart: a response whose body takes its time. `/big` sends
//! `x-test-bytes` (default 16 MiB) as fast as it is taken. `/sink` reads
//! the whole request body before it answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Body = BoxBody<Bytes, hyper::Error>;

/// How an upstream behaves beyond per-request headers.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer every request with this status.
    pub status: Option<u16>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Close the connection without answering (upstream reset).
    pub reset: bool,
    /// While set, answer 500 (flip it to make a healthy host fail and recover).
    pub failing: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// A running upstream.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests it received.
    pub hits: Arc<AtomicU64>,
}

impl Upstream {
    /// Starts an HTTP/1.1 + h2c upstream named `name`.
    pub async fn start(name: &'static str, b: Behaviour) -> Upstream {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = l.local_addr().expect("addr");
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (b, h) = (b.clone(), h.clone());
                tokio::spawn(async move {
                    if b.reset {
                        h.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf).await;
                        return; // dropped: RST/FIN before any response
                    }
                    let svc = service_fn(move |req| handle(name, b.clone(), h.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Upstream { addr, hits }
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn handle(
    name: &'static str,
    b: Behaviour,
    hits: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::Relaxed);
    let hdr = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let delay = hdr("x-test-delay-ms").and_then(|v| v.parse().ok()).map(Duration::from_millis).or(b.delay);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if req.uri().path() == "/ws" && hdr("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Ok(websocket_echo(req));
    }
    if req.uri().path() == "/sink" {
        // Reads the whole request body before answering with its length.
        let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
        return Ok(Response::new(Full::new(Bytes::from(n.to_string())).map_err(|n| match n {}).boxed()));
    }
    let failing = b.failing.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
    let status =
        if failing { 500 } else { hdr("x-test-status").and_then(|v| v.parse().ok()).or(b.status).unwrap_or(200) };
    let body: Body = match req.uri().path() {
        "/echo" => req.into_body().boxed(),
        "/big" => {
            // `x-test-bytes` (default 16 MiB) as fast as the connection takes them.
            let total: usize = hdr("x-test-bytes").and_then(|v| v.parse().ok()).unwrap_or(16 << 20);
            let chunk = Bytes::from(vec![b'b'; 64 << 10]);
            let chunks = futures_util::stream::iter((0..total.div_ceil(chunk.len())).map(move |i| {
                let n = chunk.len().min(total - i * chunk.len());
                Ok::<_, hyper::Error>(hyper::body::Frame::data(chunk.slice(..n)))
            }));
            http_body_util::StreamBody::new(chunks).boxed()
        }
        "/drip" => {
            let every = Duration::from_millis(hdr("x-test-drip-ms").and_then(|v| v.parse().ok()).unwrap_or(100));
            let count: usize = hdr("x-test-drip-count").and_then(|v| v.parse().ok()).unwrap_or(5);
            let drip = futures_util::stream::unfold(0usize, move |i| async move {
                if i >= count {
                    return None;
                }
                tokio::time::sleep(every).await;
                Some((Ok::<_, hyper::Error>(hyper::body::Frame::data(Bytes::from_static(b"x"))), i + 1))
            });
            http_body_util::StreamBody::new(drip).boxed()
        }
        "/headers" => {
            let map: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("").to_string())))
                .collect();
            let mut m = map;
            m.insert(":path".into(), req.uri().to_string().into());
            Full::new(Bytes::from(serde_json::to_vec(&m).unwrap())).map_err(|n| match n {}).boxed()
        }
        _ => Full::new(Bytes::from(name)).map_err(|n| match n {}).boxed(),
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    r.headers_mut().insert("x-upstream-remove-me", "1".parse().unwrap());
    Ok(r)
}

/// Answers 101 and echoes raw bytes on the upgraded connection.
fn websocket_echo(mut req: Request<Incoming>) -> Response<Body> {
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let mut io = TokioIo::new(up);
            let mut buf = [0u8; 4096];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut r = Response::new(Empty::new().map_err(|n| match n {}).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert("connection", "upgrade".parse().unwrap());
    r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
    r
}

/// A TCP echo server that echoes until the client half-closes, then closes its side.
pub async fn tcp_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(b"<bye>").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// GET `path` on `addr` (HTTP/1.1) with extra headers; returns status, headers, body.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<(u16, HeaderMap, Bytes), String> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("http://{addr}{path}")).body(Empty::new()).map_err(|e| e.to_string())?;
    for (k, v) in headers {
        req.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status.as_u16(), parts.headers, bytes))
}
