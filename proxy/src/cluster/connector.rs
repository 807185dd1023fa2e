//! The upstream connector for pooled HTTP clients: TCP connect with the cluster's timeout,
//! under the cluster's connection limit, counted.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::limits::{Gauge, Permit};
use super::stats::ClusterStats;
use crate::tls::context::{Purpose, UpstreamTls};
use crate::tls::stream::Upstream;

/// Why an upstream connection was not made; the request path maps these to response flags.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URI did not carry a socket address (a bug: pickers always put one there).
    #[error("upstream URI {0} has no IP:port authority")]
    BadUri(String),
    /// `connect_timeout` elapsed.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    /// The kernel refused or failed the connect.
    #[error("connect to {addr} failed: {source}")]
    Io {
        /// The host.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `circuit_breakers.max_connections` reached.
    #[error("cluster connection limit reached")]
    Overflow,
    /// The TLS handshake failed (reason as counted in `isthmus_tls_handshake_errors_total`).
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The host.
        addr: SocketAddr,
        /// Why.
        reason: crate::error::TlsFailure,
    },
}

/// Connects to the IP:port in the request URI (the picked host).
#[derive(Clone, Debug)]
pub struct Connector {
    /// Per-attempt limit.
    pub timeout: Duration,
    /// Open connections of the cluster.
    pub limit: Arc<Gauge>,
    /// Where counts go.
    pub stats: Arc<ClusterStats>,
    /// Local address to connect from (`upstream_bind_config`).
    pub source: Option<std::net::IpAddr>,
    /// TLS context per host address (`https` URIs).
    pub tls: Arc<arc_swap::ArcSwap<std::collections::HashMap<SocketAddr, Arc<UpstreamTls>>>>,
    /// Which pool this connector serves (decides the ALPN offer).
    pub purpose: Purpose,
    /// The socket for an endpoint without metadata, for hosts not in `tls` (ORIGINAL_DST).
    pub default_tls: Option<Arc<UpstreamTls>>,
    /// `upstream_connection_options.tcp_keepalive`.
    pub tcp_keepalive: Option<crate::config::cluster::TcpKeepalive>,
}

/// Turns on `SO_KEEPALIVE` with the configured timings (kernel defaults for unset ones), so
/// a peer that vanished without a FIN or RST is noticed on an idle pooled connection.
pub fn keepalive(stream: &TcpStream, k: Option<&crate::config::cluster::TcpKeepalive>) {
    let Some(k) = k else { return };
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(p) = k.probes {
        ka = ka.with_retries(p);
    }
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Counted;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Counted, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| ConnectError::BadUri(uri.to_string()))?;
            let Some(permit) = this.limit.try_acquire() else {
                this.stats.cx_overflow.increment(1);
                return Err(ConnectError::Overflow);
            };
            let stream = connect(addr, this.timeout, &this.stats, this.source).await?;
            keepalive(&stream, this.tcp_keepalive.as_ref());
            let stream = if uri.scheme_str() == Some("https") {
                let Some(ctx) = this.tls.load().get(&addr).cloned().or_else(|| this.default_tls.clone()) else {
                    return Err(ConnectError::Tls { addr, reason: crate::error::TlsFailure::NoContext });
                };
                match ctx.connect(stream, addr, this.purpose, this.timeout).await {
                    Ok(s) => Upstream::Tls(Box::new(s)),
                    Err(reason) => {
                        this.stats.cx_connect_fail.increment(1);
                        return Err(ConnectError::Tls { addr, reason });
                    }
                }
            } else {
                Upstream::Plain(stream)
            };
            this.stats.cx_total.increment(1);
            this.stats.cx_active.increment(1.0);
            Ok(Counted { io: TokioIo::new(stream), _permit: permit, stats: this.stats.clone() })
        })
    }
}

/// A TCP connect with timeout, counting failures on the cluster.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    stats: &ClusterStats,
    source: Option<std::net::IpAddr>,
) -> Result<TcpStream, ConnectError> {
    let dial = async {
        if let Some(target) = crate::listener::internal::target(addr) {
            return crate::listener::internal::dial(&target).await;
        }
        let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        if let Some(ip) = source {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        sock.connect(addr).await
    };
    match tokio::time::timeout(timeout, dial).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(source)) => {
            stats.cx_connect_fail.increment(1);
            Err(ConnectError::Io { addr, source })
        }
        Err(_) => {
            stats.cx_connect_fail.increment(1);
            stats.cx_connect_timeout.increment(1);
            Err(ConnectError::Timeout(addr))
        }
    }
}

pin_project_lite::pin_project! {
    /// A pooled upstream connection that holds its share of the connection limit.
    pub struct Counted {
        #[pin]
        io: TokioIo<Upstream>,
        _permit: Permit,
        stats: Arc<ClusterStats>,
    }

    impl PinnedDrop for Counted {
        fn drop(this: Pin<&mut Self>) {
            this.stats.cx_active.decrement(1.0);
        }
    }
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl Write for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
