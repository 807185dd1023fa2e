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
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut r) = this.record.take() {
                    r.flags.push(Flag::UpstreamReset);
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

pin_project_lite::pin_project! {
    /// The request body sent upstream: counts bytes received from downstream.
    pub struct Counting<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
    }
}

impl<B> Counting<B> {
    /// Counts `inner`'s data bytes into `count`.
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Counting { inner, count }
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
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
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
