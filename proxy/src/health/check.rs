//! One probe against one host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Probe;
use crate::tls::context::{Purpose, UpstreamTls};

/// Runs the probe; true when the host passed. With `tls`, the probe runs over the cluster's
/// transport socket for this host (an mTLS cluster's hosts only speak TLS), as Envoy's
/// health checker does.
pub async fn probe(addr: SocketAddr, p: &Probe, timeout: Duration, tls: Option<Arc<UpstreamTls>>) -> bool {
    tokio::time::timeout(timeout, run(addr, p, tls, timeout)).await.unwrap_or(false)
}

async fn run(addr: SocketAddr, p: &Probe, tls: Option<Arc<UpstreamTls>>, timeout: Duration) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return false };
    match tls {
        None => on(stream, p).await,
        Some(t) => match t.connect(stream, addr, Purpose::Http1, timeout).await {
            Ok(s) => on(s, p).await,
            Err(_) => false,
        },
    }
}

async fn on<IO>(mut stream: IO, p: &Probe) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match p {
        Probe::Tcp { send, receive } => {
            if send.is_empty() {
                return true;
            }
            if stream.write_all(send).await.is_err() {
                return false;
            }
            // Only the last `receive.len() - 1` bytes can start a match that the next read
            // completes: keep those and the new read, nothing more, however much the host sends.
            let keep = receive.len().saturating_sub(1);
            let mut got = Vec::with_capacity(keep + 1024);
            let mut buf = [0u8; 1024];
            while !contains(&got, receive) {
                let cut = got.len().saturating_sub(keep);
                got.drain(..cut);
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
            }
            true
        }
        Probe::Http { path, host, expected } => {
            let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                return false;
            };
            tokio::spawn(conn);
            let req = http::Request::get(path.as_str())
                .header(http::header::HOST, host.as_str())
                .header(http::header::USER_AGENT, "Isthmus-HealthChecker/1.0")
                .body(Empty::<bytes::Bytes>::new());
            let Ok(req) = req else { return false };
            match send.send_request(req).await {
                // The status decides; the body is never read (the connection closes with the
                // response), so a host streaming an endless or huge body is judged at once and
                // costs no memory.
                Ok(resp) => expected.iter().any(|(lo, hi)| (*lo..*hi).contains(&resp.status().as_u16())),
                Err(_) => false,
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
