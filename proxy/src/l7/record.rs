//! The per-request record: counts bytes both ways and, when the response body is done (or
//! dropped), writes Istio metrics and the access log line exactly once.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::reply::Flag;
use crate::clock::now;
use crate::cluster::BoxError;
use crate::telemetry::access_log::{self, Entry};
use crate::telemetry::request_metrics;

/// What is known about a request by the time its response starts.
#[derive(Debug)]
pub struct Record {
    /// When the request arrived.
    pub start: Instant,
    /// The access log entry being filled in.
    pub entry: Entry,
    /// Response flags.
    pub flags: Vec<Flag>,
    /// gRPC status from response headers (trailers-only) or trailers.
    pub grpc_status: Option<String>,
    /// Whether the request was gRPC.
    pub grpc: bool,
    /// Write the access log line.
    pub log: bool,
    /// `source_workload` label (kept for the access log's context).
    pub source: Arc<str>,
    /// Served by an inbound listener (`reporter="destination"`).
    pub inbound: bool,
    /// The downstream's SPIFFE id (inbound mTLS).
    pub peer_principal: Option<Arc<str>>,
    /// `region/zone` of the upstream host that answered (metric label).
    pub dest_locality: String,
    /// What the request body, the handler and the response body share (one allocation).
    pub stream: Arc<StreamState>,
    /// The stream's timers (set when the request is routed to a cluster).
    pub limits: super::stream_limits::Limits,
    /// The request's span, when the HCM traces.
    pub span: Option<Box<crate::telemetry::trace::Active>>,
    /// The fault filter's `active_faults` slot, released when the request ends.
    pub active_fault: Option<super::filters::fault::ActiveFault>,
    /// The HCM's access loggers (shared, not copied).
    logs: crate::config::access_log::AccessLogs,
    sent: u64,
}

impl Record {
    /// A record for a request that just arrived.
    pub fn new(logs: &crate::config::access_log::AccessLogs, source: Arc<str>) -> Self {
        let log = logs.enabled();
        let stream = Arc::new(StreamState::new());
        Record {
            start: stream.start,
            entry: Entry {
                start_time: if log { access_log::rfc3339(SystemTime::now()) } else { String::new() },
                ..Entry::default()
            },
            flags: Vec::new(),
            grpc_status: None,
            grpc: false,
            log,
            source,
            inbound: false,
            peer_principal: None,
            stream,
            limits: super::stream_limits::Limits::default(),
            span: None,
            active_fault: None,
            logs: if log { logs.clone() } else { Default::default() },
            dest_locality: String::new(),
            sent: 0,
        }
    }

    /// Whether the client's body failed (see [`StreamState::failed`]).
    pub fn downstream_failed(&self) -> u8 {
        self.stream.failed.load(Ordering::Relaxed)
    }

    fn finish(&mut self) {
        self.stream.response_done.store(true, Ordering::Relaxed);
        self.entry.bytes_received = self.stream.received.load(Ordering::Relaxed);
        self.entry.bytes_sent = self.sent;
        self.entry.duration = access_log::millis_since(self.start);
        self.entry.response_flags = if self.flags.is_empty() {
            "-".into()
        } else {
            self.flags.iter().map(|f| f.code()).collect::<Vec<_>>().join(",")
        };
        let cluster = self.entry.upstream_cluster.as_deref().unwrap_or("unknown");
        let labels = request_metrics::Labels {
            inbound: self.inbound,
            peer_principal: self.peer_principal.as_deref().unwrap_or_default(),
            cluster,
            grpc: self.grpc,
            code: self.entry.response_code,
            grpc_status: self.grpc_status.as_deref().unwrap_or_default(),
            flags: &self.entry.response_flags,
            locality: &self.dest_locality,
        };
        request_metrics::record(
            &labels,
            self.start.elapsed().as_secs_f64() * 1000.0,
            self.entry.bytes_received,
            self.sent,
        );
        if let Some(span) = self.span.take() {
            span.finish(&crate::telemetry::trace::Finish {
                status: self.entry.response_code,
                flags: &self.entry.response_flags,
                bytes_received: self.entry.bytes_received,
                bytes_sent: self.sent,
                upstream_cluster: self.entry.upstream_cluster.as_deref(),
                upstream_host: self.entry.upstream_host.as_deref(),
            });
        }
        if self.log {
            access_log::emit(&self.logs, &self.entry);
        }
    }
}

/// One stream's shared state: bytes received, how the client's body ended, and the activity
/// the stream timers read.
#[derive(Debug)]
pub struct StreamState {
    /// When the request arrived.
    pub start: Instant,
    /// Request body bytes.
    pub received: AtomicU64,
    /// Set by the request body wrapper when the client's body failed: a failed upstream try is
    /// then the client's doing, not the host's — [`GONE`] (it went away mid-upload: `DC`) or
    /// [`MALFORMED`] (a bad chunk: `400`, `DPE`).
    pub failed: AtomicU8,
    /// Nanoseconds after `start` of the last frame either way.
    last_activity: AtomicU64,
    request_done: AtomicBool,
    /// Set when the response ended (either way): a watchdog leaves the stream alone then.
    response_done: AtomicBool,
    /// Which timer a watchdog cut the stream for (`stream_limits::Expiry` as a number + 1).
    expired: AtomicU8,
}

impl StreamState {
    fn new() -> Self {
        StreamState {
            start: now(),
            received: AtomicU64::new(0),
            failed: AtomicU8::new(0),
            last_activity: AtomicU64::new(0),
            request_done: AtomicBool::new(false),
            response_done: AtomicBool::new(false),
            expired: AtomicU8::new(0),
        }
    }

    /// Notes a frame (either way) at `at`.
    pub fn touch(&self, at: Instant) {
        let ns = u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        self.last_activity.fetch_max(ns, Ordering::Relaxed);
    }

    /// When the last frame went either way (the request's arrival before any).
    pub fn last_activity(&self) -> Instant {
        self.start + std::time::Duration::from_nanos(self.last_activity.load(Ordering::Relaxed))
    }

    /// Whether the whole request has been received.
    pub fn request_done(&self) -> bool {
        self.request_done.load(Ordering::Relaxed)
    }

    /// Notes that the whole request has been received.
    pub fn set_request_done(&self) {
        self.request_done.store(true, Ordering::Relaxed);
    }

    /// Whether the response has ended (completed, failed or dropped).
    pub fn response_done(&self) -> bool {
        self.response_done.load(Ordering::Relaxed)
    }

    /// Records that a watchdog cuts the stream for `why` (before it drops the connection).
    pub fn set_expired(&self, why: super::stream_limits::Expiry) {
        self.expired.store(why as u8 + 1, Ordering::Relaxed);
    }

    /// The timer a watchdog cut the stream for, if any.
    pub fn expired(&self) -> Option<super::stream_limits::Expiry> {
        super::stream_limits::Expiry::from_index(self.expired.load(Ordering::Relaxed).checked_sub(1)?)
    }
}

pin_project_lite::pin_project! {
    /// The response body sent downstream: counts bytes, notes gRPC trailers, and finishes the
    /// record when done or dropped (client went away: flag DC).
    pub struct Tracked<B: Body> {
        #[pin]
        inner: B,
        record: Option<Record>,
        // The stream's timers while the body is sent (none armed: `None`).
        timer: Option<super::stream_limits::BodyTimer>,
    }

    impl<B: Body> PinnedDrop for Tracked<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut r) = this.record.take() {
                if let Some(why) = r.stream.expired() {
                    // Cut by the connection's watchdog (a client that stopped reading).
                    r.entry.response_code_details = Some(why.details().into());
                    r.flags.extend(why.flag());
                } else if !this.inner.is_end_stream() {
                    // hyper does not poll a body that is already complete (empty replies,
                    // HEAD); only an unfinished body dropped early means the client went away.
                    r.flags.push(Flag::DownstreamTerminated);
                }
                r.finish();
            }
        }
    }
}

impl<B: Body> Tracked<B> {
    /// The stream and timers a watchdog must enforce while hyper is not polling this body
    /// (a client that stopped reading leaves no room to write), or `None` when none is armed
    /// or the body is already complete.
    pub fn watch(&self) -> Option<(Arc<StreamState>, super::stream_limits::Limits)> {
        let r = self.record.as_ref()?;
        self.timer.as_ref()?;
        Some((r.stream.clone(), r.limits))
    }

    /// Wraps a response body; `record` is finished exactly once.
    pub fn new(inner: B, record: Record) -> Self {
        let timer = if inner.is_end_stream() { None } else { super::stream_limits::BodyTimer::new(record.limits) };
        Tracked { inner, record: Some(record), timer }
    }
}

impl<B: Body<Data = Bytes, Error = BoxError>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let mut inner = this.inner;
        let res = inner.as_mut().poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(_), Some(r)) = (this.timer.as_ref(), this.record.as_ref()) {
                    r.stream.touch(now());
                }
                let mut done = inner.is_end_stream();
                if let Some(r) = this.record.as_mut() {
                    if let Some(d) = f.data_ref() {
                        r.sent += d.len() as u64;
                    } else if let Some(t) = f.trailers_ref() {
                        // Trailers are the last frame; hyper may not poll again after them.
                        done = true;
                        if let Some(s) = t.get("grpc-status").and_then(|v| v.to_str().ok()) {
                            r.grpc_status = Some(s.to_string());
                        }
                    }
                }
                if done {
                    if let Some(mut r) = this.record.take() {
                        r.finish();
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut r) = this.record.take() {
                    r.finish();
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut r) = this.record.take() {
                    // A body cut short of its length is broken HTTP (`UPE`), as Envoy counts
                    // it; any other failure is a reset (`UC`).
                    let incomplete = hyper_error(e.as_ref()).is_some_and(|h| h.is_incomplete_message() || h.is_parse())
                        || cut_short(e.as_ref());
                    r.flags.push(if incomplete { Flag::UpstreamProtocolError } else { Flag::UpstreamReset });
                    r.finish();
                }
            }
            Poll::Pending => {
                if let (Some(t), Some(r)) = (this.timer.as_mut(), this.record.as_ref()) {
                    if let Poll::Ready(why) = t.poll_expired(&r.stream, cx) {
                        // Cut: hyper resets the stream (HTTP/2) or closes the connection.
                        if let Some(mut r) = this.record.take() {
                            r.entry.response_code_details = Some(why.details().into());
                            r.flags.extend(why.flag());
                            r.finish();
                        }
                        return Poll::Ready(Some(Err(Box::new(super::stream_limits::TimedOut(why)))));
                    }
                }
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

/// `downstream_failed`: the client went away.
pub const GONE: u8 = 1;
/// `downstream_failed`: the client's body was malformed.
pub const MALFORMED: u8 = 2;

/// The first error of type `T` in `e`'s source chain, `e` itself included.
pub fn find_source<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// Whether `e` says a body ended before its length (an `UnexpectedEof` I/O error in the chain).
fn cut_short(e: &(dyn std::error::Error + 'static)) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::UnexpectedEof)
}

/// The kind of the first I/O error in `e`'s source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    find_source::<std::io::Error>(e).map(std::io::Error::kind)
}

/// The `hyper::Error` somewhere in `e`'s source chain.
pub fn hyper_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    find_source(e)
}

pin_project_lite::pin_project! {
    /// The request body sent upstream: counts bytes received from downstream and notes when
    /// the client's body fails.
    pub struct Counting<B> {
        #[pin]
        inner: B,
        stream: Arc<StreamState>,
    }
}

impl<B: Body> Counting<B> {
    /// Counts `inner`'s data bytes into the stream's `received`, its failure into `failed`,
    /// and its frames and end as the stream's activity and completion.
    pub fn new(inner: B, rec: &Record) -> Self {
        if inner.is_end_stream() {
            rec.stream.set_request_done();
        }
        Counting { inner, stream: rec.stream.clone() }
    }
}

impl<B> Body for Counting<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let mut inner = this.inner;
        match inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.stream.received.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                this.stream.touch(now());
                if inner.is_end_stream() {
                    this.stream.set_request_done();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                let malformed = io_kind(e.as_ref())
                    .is_some_and(|k| matches!(k, std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput));
                this.stream.failed.store(if malformed { MALFORMED } else { GONE }, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.stream.set_request_done();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
