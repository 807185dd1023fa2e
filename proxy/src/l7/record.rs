//! The per-request record: counts bytes both ways and, when the response body is done (or
//! dropped), writes Istio metrics and the access log line exactly once.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Request body bytes, shared with the request body wrapper.
    pub received: Arc<AtomicU64>,
    /// Set by the request body wrapper when the client's body failed: a failed upstream try is
    /// then the client's doing, not the host's — [`GONE`] (it went away mid-upload: `DC`) or
    /// [`MALFORMED`] (a bad chunk: `400`, `DPE`).
    pub downstream_failed: Arc<std::sync::atomic::AtomicU8>,
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
        Record {
            start: now(),
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
            received: Arc::new(AtomicU64::new(0)),
            downstream_failed: Arc::default(),
            span: None,
            active_fault: None,
            logs: if log { logs.clone() } else { Default::default() },
            dest_locality: String::new(),
            sent: 0,
        }
    }

    fn finish(&mut self) {
        self.entry.bytes_received = self.received.load(Ordering::Relaxed);
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

pin_project_lite::pin_project! {
    /// The response body sent downstream: counts bytes, notes gRPC trailers, and finishes the
    /// record when done or dropped (client went away: flag DC).
    pub struct Tracked<B: Body> {
        #[pin]
        inner: B,
        record: Option<Record>,
    }

    impl<B: Body> PinnedDrop for Tracked<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut r) = this.record.take() {
                // hyper does not poll a body that is already complete (empty replies, HEAD);
                // only an unfinished body dropped early means the client went away.
                if !this.inner.is_end_stream() {
                    r.flags.push(Flag::DownstreamTerminated);
                }
                r.finish();
            }
        }
    }
}

impl<B: Body> Tracked<B> {
    /// Wraps a response body; `record` is finished exactly once.
    pub fn new(inner: B, record: Record) -> Self {
        Tracked { inner, record: Some(record) }
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
            Poll::Pending => {}
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

/// Whether `e` says a body ended before its length (hyper's `IncompleteBody`, an
/// `UnexpectedEof` I/O error in the chain).
fn cut_short(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof) {
            return true;
        }
        cur = c.source();
    }
    false
}

/// The kind of the first I/O error in `e`'s source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = c.source();
    }
    None
}

/// The `hyper::Error` somewhere in `e`'s source chain.
pub fn hyper_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        cur = c.source();
    }
    None
}

pin_project_lite::pin_project! {
    /// The request body sent upstream: counts bytes received from downstream and notes when
    /// the client's body fails.
    pub struct Counting<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
        failed: Arc<std::sync::atomic::AtomicU8>,
    }
}

impl<B> Counting<B> {
    /// Counts `inner`'s data bytes into the record's `received`, and its failure into
    /// `downstream_failed`.
    pub fn new(inner: B, rec: &Record) -> Self {
        Counting { inner, count: rec.received.clone(), failed: rec.downstream_failed.clone() }
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
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                let malformed = io_kind(e.as_ref())
                    .is_some_and(|k| matches!(k, std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput));
                this.failed.store(if malformed { MALFORMED } else { GONE }, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
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
