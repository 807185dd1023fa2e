//! HTTP/2 upstream connections, one per host, multiplexed: built on hyper's connection-level
//! client so that a request's `:authority` is the client's (after rewrites), as Envoy sends it,
//! while the connection goes to the host the balancer picked. (hyper-util's pooled client
//! takes both the authority and the address to dial from the request URI, so upstream HTTP/2
//! saw the endpoint address as `:authority`.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use super::connector::{ConnectError, Connector};
use super::ProxyBody;
use crate::config::cluster::H2Keepalive;

/// Why an HTTP/2 try failed.
#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    /// The TCP or TLS connection could not be made (or the connection limit was hit).
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// The HTTP/2 handshake failed.
    #[error("HTTP/2 handshake: {0}")]
    Handshake(hyper::Error),
    /// The stream failed (reset, GOAWAY, connection lost).
    #[error("HTTP/2 stream: {0}")]
    Stream(hyper::Error),
}

/// A pooled connection and when a request last took it.
struct Conn {
    send: SendRequest<ProxyBody>,
    id: u64,
    used: Instant,
}

type Conns = Mutex<HashMap<(SocketAddr, bool), Conn>>;

/// One cluster's HTTP/2 connections, by host address and TLS.
pub struct H2Pool {
    connector: Connector,
    builder: Builder<TokioExecutor>,
    conns: Arc<Conns>,
    /// `common_http_protocol_options.idle_timeout`: a connection no request has taken for this
    /// long leaves the pool and closes once its streams are done.
    idle: Option<Duration>,
    ids: AtomicU64,
}

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pool").finish_non_exhaustive()
    }
}

impl H2Pool {
    /// A pool dialling through `connector` (its TLS contexts, limits and stats).
    pub fn new(connector: Connector, keepalive: Option<H2Keepalive>, idle: Option<Duration>) -> H2Pool {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        if let Some(k) = keepalive {
            builder.keep_alive_interval(k.interval).keep_alive_timeout(k.timeout).keep_alive_while_idle(true);
        }
        H2Pool { connector, builder, conns: Arc::default(), idle, ids: AtomicU64::new(0) }
    }

    /// Sends `req` (whose URI carries the authority to send) to `addr`.
    pub async fn request(
        &self,
        addr: SocketAddr,
        tls: bool,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, H2Error> {
        let cached = self.conns.lock().ok().and_then(|mut m| {
            let c = m.get_mut(&(addr, tls))?;
            c.used = crate::clock::now();
            Some(c.send.clone())
        });
        let mut send = match cached {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                // Closed (GOAWAY, reset, idle close): a new connection.
                Err(_) => Box::pin(self.connect(addr, tls)).await?,
            },
            // Boxed, as in the HTTP/1 pool: the cold path's future is the largest part of a
            // request's, and inline every request would carry it.
            None => Box::pin(self.connect(addr, tls)).await?,
        };
        send.send_request(req).await.map_err(H2Error::Stream)
    }

    async fn connect(&self, addr: SocketAddr, tls: bool) -> Result<SendRequest<ProxyBody>, H2Error> {
        let scheme = if tls { "https" } else { "http" };
        let uri: Uri = format!("{scheme}://{addr}").parse().map_err(|_| ConnectError::BadUri(addr.to_string()))?;
        let io = self.connector.clone().call(uri).await?;
        let (mut send, conn) = self.builder.handshake(io).await.map_err(H2Error::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %e, "HTTP/2 upstream connection ended");
            }
        });
        send.ready().await.map_err(H2Error::Handshake)?;
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.conns.lock() {
            m.retain(|_, c| !c.send.is_closed());
            m.insert((addr, tls), Conn { send: send.clone(), id, used: crate::clock::now() });
        }
        if let Some(idle) = self.idle {
            tokio::spawn(evict_when_idle(Arc::downgrade(&self.conns), (addr, tls), id, idle));
        }
        Ok(send)
    }
}

/// Removes connection `id` from the pool once no request has taken it for `idle` (dropping the
/// pool's handle: hyper then closes it when its streams finish); ends early when the pool or
/// the connection is gone.
async fn evict_when_idle(conns: Weak<Conns>, key: (SocketAddr, bool), id: u64, idle: Duration) {
    loop {
        let Some(pool) = conns.upgrade() else { return };
        let wait = {
            let mut m = pool.lock().unwrap_or_else(|p| p.into_inner());
            let Some(c) = m.get(&key).filter(|c| c.id == id) else { return };
            let left = (c.used + idle).saturating_duration_since(crate::clock::now());
            if left.is_zero() {
                m.remove(&key);
                tracing::debug!(upstream = %key.0, "idle HTTP/2 upstream connection closed");
                return;
            }
            left
        };
        drop(pool);
        tokio::time::sleep(wait).await;
    }
}
