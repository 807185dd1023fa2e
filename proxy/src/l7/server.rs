//! Serving one downstream connection with hyper: HTTP/1.1 and HTTP/2 prior knowledge (auto),
//! upgrades, and Envoy's drain sequence: HTTP/2 gets GOAWAY at once; HTTP/1 answers
//! `Connection: close` from then on and is closed after the HCM's `drain_timeout`.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::service::handle;
use super::ConnCtx;
use crate::config::listener::CodecType;

/// An HTTP/2 request with more headers than `max_headers_count`: its stream is reset.
#[derive(Debug, thiserror::Error)]
#[error("{0} request headers exceed max_headers_count")]
struct TooManyHeaders(usize);

/// One request. HTTP/1 counts headers in the codec (431); an HTTP/2 request over the count
/// has its stream reset, as Envoy does.
async fn one(
    ctx: Arc<ConnCtx>,
    max_headers: usize,
    activity: Arc<Activity>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<super::record::Tracked<crate::cluster::ProxyBody>>, TooManyHeaders> {
    let h2 = req.version() == http::Version::HTTP_2;
    if h2 {
        activity.h2.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let in_flight = InFlight::new(activity);
    if h2 && req.headers().len() > max_headers {
        return Err(TooManyHeaders(req.headers().len()));
    }
    // Boxed: the request's future is several KiB (routing, filters, the upstream exchange),
    // and hyper moves the HTTP/2 stream future that holds it into a task of its own; behind a
    // box each move copies a pointer (memcpy was 17 % of an h2c request's instructions).
    let mut resp = match Box::pin(handle(ctx, req)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // A 101 keeps its `Connection: upgrade`: the tunnel is not a keep-alive connection.
    if !h2
        && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
        && (in_flight.0.draining.load(std::sync::atomic::Ordering::Relaxed)
            || crate::overload::active(crate::config::overload::Action::DisableHttpKeepalive))
    {
        // Draining HTTP/1 (or the overload manager's `disable_http_keepalive`): this response
        // closes the connection (Envoy's drain sequence), so a client sending its next request
        // learns it cleanly instead of racing a close.
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    if !h2 {
        // HTTP/1: one response at a time; the connection's watchdog enforces its timers.
        if let Some(w) = resp.body().watch() {
            in_flight.0.watch(w);
        }
    }
    Ok(resp)
}

/// Serves HTTP on `io` until the client closes or, after `drain` fires, the in-flight
/// requests finish (HTTP/1 closes after the current response; HTTP/2 sends GOAWAY).
pub async fn serve<I>(io: I, ctx: Arc<ConnCtx>, drain: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &ctx.hcm.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Request headers beyond the limit get 431 from the codec (HTTP/1: the buffer that holds
    // them; hyper's floor is 8 KiB). hyper counts 100 headers by default, Envoy's default too;
    // another count costs a heap allocation per request, so it is set only when configured.
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(limits.max_request_headers_bytes.max(8192))
        .header_read_timeout(ctx.hcm.request_headers_timeout);
    if limits.max_headers_count != 100 {
        builder.http1().max_headers(limits.max_headers_count);
    }
    let header_list = u32::try_from(limits.max_request_headers_bytes).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_list)
        // Rapid reset (CVE-2023-44487) and error-reset floods end the connection.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024);
    if let Some(n) = limits.h2_max_concurrent_streams {
        builder.http2().max_concurrent_streams(n);
    }
    if let Some(w) = limits.h2_initial_stream_window {
        builder.http2().initial_stream_window_size(w);
    }
    if let Some(w) = limits.h2_initial_connection_window {
        builder.http2().initial_connection_window_size(w);
    }
    let builder = match ctx.hcm.codec {
        CodecType::Auto => builder,
        CodecType::Http1 => builder.http1_only(),
        CodecType::Http2 => builder.http2_only(),
    };
    let svc_ctx = ctx.clone();
    let max_headers = limits.max_headers_count;
    let activity = Arc::new(Activity::default());
    let svc_activity = activity.clone();
    let svc = service_fn(move |req| one(svc_ctx.clone(), max_headers, svc_activity.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(client.addr = %ctx.peer, error = %e, "downstream connection ended with an error");
            }
        }
        _ = drain.cancelled() => {
            activity.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            let h2 = activity.h2.load(std::sync::atomic::Ordering::Relaxed) || ctx.hcm.codec == CodecType::Http2;
            if !h2 {
                // HTTP/1 (or nothing yet): each response from now on closes the connection;
                // what is still open after `drain_timeout` is closed once its request is done.
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = tokio::time::sleep(ctx.hcm.drain_timeout) => {}
                }
            }
            // HTTP/2: GOAWAY now; streams in flight finish.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        // `idle_timeout`: no request for that long; `max_connection_duration`: old enough.
        // Either drains the connection as a listener drain does.
        _ = idle(&activity, ctx.hcm.idle_timeout) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = after(ctx.hcm.max_connection_duration) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        // HTTP/1: a response whose timer fired while hyper was not polling its body (the
        // client stopped reading) ends with its connection; its record names the timer.
        () = stalled(&activity) => {}
    }
}

/// Resolves when the HTTP/1 response being sent outlives one of its timers.
async fn stalled(a: &Activity) {
    loop {
        let current = a.watched.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match current {
            Some((stream, limits)) => {
                tokio::select! {
                    why = super::stream_limits::after_response(limits, &stream) => {
                        stream.set_expired(why);
                        tracing::debug!(?why, "response cut by its timer while the client was not reading");
                        return;
                    }
                    () = a.watch_changed.notified() => {}
                }
            }
            None => a.watch_changed.notified().await,
        }
    }
}

/// Requests in flight on one connection and when the last one ended (lock-free: every
/// request touches it).
#[derive(Debug)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    opened: std::time::Instant,
    /// Nanoseconds after `opened` at which the last request ended (0: none yet).
    last_end: std::sync::atomic::AtomicU64,
    /// The connection carries HTTP/2.
    h2: std::sync::atomic::AtomicBool,
    /// The listener is draining it.
    draining: std::sync::atomic::AtomicBool,
    /// HTTP/1: the response being sent, for the watchdog.
    watched: std::sync::Mutex<Option<Watched>>,
    watch_changed: tokio::sync::Notify,
}

type Watched = (Arc<super::record::StreamState>, super::stream_limits::Limits);

impl Activity {
    fn watch(&self, w: Watched) {
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        self.watch_changed.notify_one();
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: Default::default(),
            opened: crate::clock::now(),
            last_end: Default::default(),
            h2: Default::default(),
            draining: Default::default(),
            watched: Default::default(),
            watch_changed: Default::default(),
        }
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since = crate::clock::now().saturating_duration_since(self.0.opened);
        self.0
            .last_end
            .store(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX), std::sync::atomic::Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resolves once the connection has had no request in flight for `limit` (never without one).
async fn idle(a: &Activity, limit: Option<std::time::Duration>) {
    let Some(limit) = limit else { return std::future::pending().await };
    loop {
        let busy = a.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0;
        let since = a.opened + std::time::Duration::from_nanos(a.last_end.load(std::sync::atomic::Ordering::Relaxed));
        let quiet = crate::clock::now().saturating_duration_since(since);
        if !busy && quiet >= limit {
            return;
        }
        tokio::time::sleep(if busy { limit } else { limit - quiet }).await;
    }
}

/// Resolves after `d` (never without one).
async fn after(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
