//! HTTP/1.1 upstream connections on hyper's connection-level client, pooled per worker thread
//! as Envoy pools them: a checkout pops an idle connection of this (pool, host, TLS) from the
//! thread's own list — no lock shared between workers — and a response body that ends gives
//! its connection back to the list of the thread it ends on. (hyper-util's legacy pool took a
//! shared lock and SipHashed its key on every checkout and return, and added a oneshot channel
//! per request.)
//!
//! A connection idle for the cluster's `idle_timeout` closes itself; every connection of a pool
//! closes when the pool is dropped (the cluster removed or replaced).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::connector::{ConnectError, Connector};
use super::ProxyBody;
use crate::clock::now;

/// Why an HTTP/1.1 try failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The TCP or TLS connection could not be made (or the connection limit was hit).
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// The HTTP/1.1 connection could not be set up.
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(hyper::Error),
    /// The request failed on its connection (reset, closed, an unparsable response).
    #[error("HTTP/1.1 request: {0}")]
    Request(hyper::Error),
}

/// Idle connections kept per (pool, host, TLS) on one thread; more are closed.
const MAX_IDLE_PER_KEY: usize = 256;

type Key = (u64, SocketAddr, bool);

/// An idle connection: its sender and when it last carried a request (shared with the task
/// that closes it once idle too long).
struct Idle {
    send: SendRequest<ProxyBody>,
    used: Arc<AtomicU64>,
}

thread_local! {
    static IDLE: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// One cluster's HTTP/1.1 connections.
pub struct H1Pool {
    id: u64,
    connector: Connector,
    /// `common_http_protocol_options.idle_timeout`.
    idle: Option<Duration>,
    /// `max_requests_per_connection: 1`: a connection is never reused.
    one_shot: bool,
    /// Fired on drop: every connection of the pool closes.
    closed: CancellationToken,
    /// When the pool was made: `used` stamps are milliseconds after it.
    epoch: Instant,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for H1Pool {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl H1Pool {
    /// A pool dialling through `connector`.
    pub fn new(connector: Connector, idle: Option<Duration>, one_shot: bool) -> H1Pool {
        static IDS: AtomicU64 = AtomicU64::new(1);
        H1Pool {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            connector,
            idle,
            one_shot,
            closed: CancellationToken::new(),
            epoch: now(),
        }
    }

    fn stamp(&self) -> u64 {
        u64::try_from(now().saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends `req` to `addr` on an idle connection of this thread, or a new one. A request a
    /// pooled connection could not take (it closed as the request was handed to it) goes out
    /// once more on a new connection, as hyper's legacy client did.
    pub async fn request(
        &self,
        addr: SocketAddr,
        tls: bool,
        req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, H1Error> {
        let key: Key = (self.id, addr, tls);
        let pooled = match self.checkout(&key) {
            Some((idle, true)) => Some(idle),
            // Given back as its last response ended, and hyper has not marked it ready yet
            // (its task has not run since): a moment's wait beats a new connection.
            Some((mut idle, false)) => idle.send.ready().await.is_ok().then_some(idle),
            None => None,
        };
        let req = match pooled {
            Some(mut idle) => match idle.send.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(resp, key, idle)),
                Err(mut e) => match e.take_message() {
                    Some(req) => req,
                    None => return Err(H1Error::Request(e.into_error())),
                },
            },
            None => req,
        };
        // Boxed: connecting (TCP, TLS, the handshake) is the cold path and its future is the
        // largest part of a request's; inline, every request's future carried its size.
        let mut idle = Box::pin(self.connect(addr, tls)).await?;
        let resp = idle.send.send_request(req).await.map_err(H1Error::Request)?;
        idle.used.store(self.stamp(), Ordering::Relaxed);
        Ok(self.pooled(resp, key, idle))
    }

    /// The most recently used idle connection of `key` on this thread, and whether it is
    /// ready now (else it is the most recent one still finishing its last response).
    fn checkout(&self, key: &Key) -> Option<(Idle, bool)> {
        IDLE.with(|m| {
            let mut m = m.borrow_mut();
            let list = m.get_mut(key)?;
            let mut pending: Option<Idle> = None;
            let mut found = None;
            while let Some(mut c) = list.pop() {
                if c.send.is_closed() {
                    continue;
                }
                match c.send.ready().now_or_never() {
                    Some(Ok(())) => {
                        found = Some((c, true));
                        break;
                    }
                    Some(Err(_)) => {}
                    None => {
                        if let Some(older) = pending.replace(c) {
                            list.insert(0, older);
                        }
                    }
                }
            }
            match found {
                Some(f) => {
                    list.extend(pending);
                    f.0.used.store(self.stamp(), Ordering::Relaxed);
                    Some(f)
                }
                None => pending.map(|c| (c, false)),
            }
        })
    }

    async fn connect(&self, addr: SocketAddr, tls: bool) -> Result<Idle, H1Error> {
        let scheme = if tls { "https" } else { "http" };
        let uri: Uri = format!("{scheme}://{addr}").parse().map_err(|_| ConnectError::BadUri(addr.to_string()))?;
        let io = self.connector.clone().call(uri).await?;
        let (send, conn) = Builder::new().handshake(io).await.map_err(H1Error::Handshake)?;
        let used = Arc::new(AtomicU64::new(self.stamp()));
        let (closed, idle, epoch, watched) = (self.closed.clone(), self.idle, self.epoch, used.clone());
        tokio::spawn(async move {
            let conn = conn.with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(upstream = %addr, error = %e, "HTTP/1.1 upstream connection ended");
                },
                () = closed.cancelled() => {}
                () = idle_for(idle, epoch, &watched) => {
                    tracing::debug!(upstream = %addr, "idle HTTP/1.1 upstream connection closed");
                }
            }
        });
        Ok(Idle { send, used })
    }

    fn pooled(&self, resp: Response<Incoming>, key: Key, idle: Idle) -> Response<PooledBody> {
        let keep = !self.one_shot && !closes(&resp);
        let (parts, inner) = resp.into_parts();
        let back = keep.then_some(idle);
        let mut body = PooledBody { inner, back: None, key };
        if body.inner.is_end_stream() {
            if let Some(idle) = back {
                give_back(key, idle);
            }
        } else {
            body.back = back;
        }
        Response::from_parts(parts, body)
    }
}

/// Whether the upstream said this is the connection's last response.
fn closes(resp: &Response<Incoming>) -> bool {
    resp.headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))))
        || resp.version() == http::Version::HTTP_10
}

fn give_back(key: Key, idle: Idle) {
    if idle.send.is_closed() {
        return;
    }
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        let list = m.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(idle);
        }
    });
}

/// Resolves once the connection has carried no request for `idle` (never without one).
async fn idle_for(idle: Option<Duration>, epoch: Instant, used: &AtomicU64) {
    let Some(idle) = idle else { return std::future::pending().await };
    loop {
        let last = epoch + Duration::from_millis(used.load(Ordering::Relaxed));
        let left = (last + idle).saturating_duration_since(now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left).await;
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body that gives its connection back to the pool when it ends.
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        back: Option<Idle>,
        key: Key,
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let res = inner.as_mut().poll_frame(cx);
        let ended = match &res {
            Poll::Ready(None) => true,
            // With a known length hyper stops polling once the body says it has ended.
            Poll::Ready(Some(Ok(f))) => f.is_trailers() || inner.is_end_stream(),
            // A failed body leaves its connection unusable: it is dropped, not given back.
            Poll::Ready(Some(Err(_))) => {
                this.back.take();
                false
            }
            Poll::Pending => false,
        };
        if ended {
            if let Some(idle) = this.back.take() {
                give_back(*this.key, idle);
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
