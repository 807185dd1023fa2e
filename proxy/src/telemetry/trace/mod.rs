//! Distributed tracing, Envoy's way for an HTTP connection manager with a Zipkin or an
//! OpenTelemetry tracer: the trace decision is made from (and packed into) `x-request-id`, the
//! caller's context (B3 for Zipkin, W3C for OpenTelemetry) is continued, one span per request
//! per hop is made (CLIENT on an outbound listener, SERVER otherwise, Envoy's sidecar model),
//! its context goes upstream, and sampled spans are queued to an exporter that never blocks
//! the request path.

pub mod b3;
pub mod otlp;
pub mod queue;
pub mod sampling;
pub mod w3c;
pub mod zipkin;

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

use self::b3::SpanContext;
use crate::config::listener::{RequestId, TagValue, Tracer, Tracing};

/// What every span says about the proxy itself (Envoy's `node_id`, `zone`, and the Zipkin
/// local endpoint's service name).
#[derive(Debug, Default)]
pub struct Local {
    /// `node.id`.
    pub node_id: String,
    /// `node.locality.zone`.
    pub zone: String,
    /// `node.cluster` (`--service-cluster`): the local endpoint's service name.
    pub cluster: String,
    /// The bootstrap's `tracing.http`, for HCMs whose tracing names no provider.
    pub tracer: Option<Arc<Tracer>>,
}

static LOCAL: OnceLock<Local> = OnceLock::new();

/// Records who this proxy is and its bootstrap tracer (once, at start-up).
pub fn set_local(l: Local) {
    let _ = LOCAL.set(l);
}

fn local() -> &'static Local {
    static EMPTY: OnceLock<Local> = OnceLock::new();
    LOCAL.get().unwrap_or_else(|| EMPTY.get_or_init(Local::default))
}

/// Whether the span is the caller's side of the call or the callee's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An outbound listener (`traffic_direction: OUTBOUND`): Envoy's egress span.
    Client,
    /// Every other listener: Envoy's ingress span.
    Server,
}

/// A request's span while the request runs.
#[derive(Debug)]
pub struct Active {
    /// Its identity (what went upstream).
    pub context: SpanContext,
    /// Whether it shares the caller's span id (Zipkin `shared`).
    pub shared: bool,
    kind: Kind,
    name: String,
    start: SystemTime,
    started: Instant,
    tags: Vec<(String, String)>,
    /// W3C `tracestate` passed on (OpenTelemetry).
    tracestate: Option<String>,
    tracer: Arc<Tracer>,
    local_ip: Option<std::net::IpAddr>,
}

/// What the request path knows when a span starts.
pub struct Start<'a> {
    /// HCM `tracing`.
    pub tracing: &'a Tracing,
    /// HCM `request_id_extension`.
    pub request_id: &'a RequestId,
    /// Outbound listener.
    pub egress: bool,
    /// The request's authority (before rewrites): the span's name.
    pub host: &'a str,
    /// The route's `decorator`, if any.
    pub decorator: Option<&'a crate::config::route::Decorator>,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path and query as received.
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: &'a str,
    /// The downstream peer.
    pub peer: std::net::SocketAddr,
    /// The peer is an internal address (`internal_address_config`).
    pub internal: bool,
    /// This proxy's address on the connection.
    pub local: std::net::SocketAddr,
}

/// A request's trace: its context (what went upstream), and the span to report when sampled.
#[derive(Debug)]
pub struct Started {
    /// The request's span context.
    pub context: SpanContext,
    /// The span, only when sampled: an unsampled request allocates nothing for tracing.
    pub span: Option<Box<Active>>,
}

/// Makes the trace decision, continues or starts the trace and writes its context into the
/// upstream request's headers. `None` when the HCM has no tracer, or (OpenTelemetry) when the
/// caller's `traceparent` is malformed: Envoy makes no span then either.
pub fn start(s: &Start<'_>, h: &mut HeaderMap) -> Option<Started> {
    let tracer = s.tracing.provider.as_ref().or(local().tracer.as_ref())?;
    let reason = sampling::decide(h, s.tracing, s.request_id, s.internal, rand::random);
    let kind = if s.egress { Kind::Client } else { Kind::Server };
    let (context, shared, tracestate) = match &**tracer {
        Tracer::Zipkin(z) => {
            let extracted = b3::extract(h);
            let sampled = extracted.sampled.unwrap_or(reason.traced());
            let (context, shared) = match extracted.context {
                None => {
                    let id = nonzero();
                    let high = if z.trace_id_128bit { rand::random() } else { 0 };
                    (SpanContext { trace_high: high, trace_low: id, span_id: id, parent_id: 0, sampled }, false)
                }
                Some(prev) if kind == Kind::Client || !z.shared_span_context => {
                    (SpanContext { span_id: nonzero(), parent_id: prev.span_id, sampled, ..prev }, false)
                }
                // Zipkin's shared span: the server side of a call reuses the client's span id.
                Some(prev) => (SpanContext { sampled, ..prev }, true),
            };
            b3::inject_as(h, &context, extracted.single);
            (context, shared, None)
        }
        Tracer::OpenTelemetry(_) => match w3c::extract(h).ok()? {
            // The caller's sampled flag decides, as in Envoy's OpenTelemetry tracer.
            Some((prev, state)) => {
                let c = SpanContext { span_id: nonzero(), parent_id: prev.span_id, ..prev };
                w3c::inject(h, &c, state.as_deref());
                (c, false, state)
            }
            None => {
                let c = SpanContext {
                    trace_high: rand::random(),
                    trace_low: nonzero(),
                    span_id: nonzero(),
                    parent_id: 0,
                    sampled: reason.traced(),
                };
                w3c::inject(h, &c, None);
                (c, false, None)
            }
        },
    };
    let name = decorate(s, h);
    let span = context.sampled.then(|| {
        let mut span = Box::new(Active {
            context,
            shared,
            kind,
            name: name.unwrap_or_else(|| default_name(tracer, s)),
            start: SystemTime::now(),
            started: crate::clock::now(),
            tags: Vec::new(),
            tracestate,
            tracer: tracer.clone(),
            local_ip: Some(s.local.ip()),
        });
        span.request_tags(s, h);
        span
    });
    Some(Started { context, span })
}

/// A random id that is not zero (zero means "none" in both B3 and W3C).
fn nonzero() -> u64 {
    rand::random::<u64>().max(1)
}

const DECORATOR_OPERATION: http::header::HeaderName =
    http::header::HeaderName::from_static("x-envoy-decorator-operation");

/// The decorated operation, as Envoy applies it to every traced request: on egress it goes
/// upstream (for the callee's server span), on ingress the caller's overrides the route's
/// and is removed. Returns the span name it sets, if any.
fn decorate(s: &Start<'_>, h: &mut HeaderMap) -> Option<String> {
    let mut name = s.decorator.map(|d| d.operation.clone());
    if s.egress {
        let propagated = s.decorator.filter(|d| d.propagate).and_then(|d| HeaderValue::from_str(&d.operation).ok());
        if let Some(v) = propagated {
            h.insert(DECORATOR_OPERATION, v);
        }
    } else if let Some(op) = h.remove(DECORATOR_OPERATION) {
        if let Ok(op) = op.to_str() {
            if !op.is_empty() {
                name = Some(op.to_string());
            }
        }
    }
    name
}

/// Envoy's span name without a decorator: the authority for its Zipkin tracer, the operation
/// (`ingress`, `egress <authority>`) for its OpenTelemetry tracer.
fn default_name(tracer: &Tracer, s: &Start<'_>) -> String {
    match (tracer, s.egress) {
        (Tracer::Zipkin(_), _) => s.host.to_string(),
        (Tracer::OpenTelemetry(_), true) => format!("egress {}", s.host),
        (Tracer::OpenTelemetry(_), false) => "ingress".to_string(),
    }
}

fn header<'h>(h: &'h HeaderMap, n: &str) -> Option<&'h str> {
    h.get(n).and_then(|v| v.to_str().ok())
}

impl Active {
    /// Adds a tag (the Zipkin encoder drops empty ones, as Envoy's Zipkin span does; its
    /// OpenTelemetry span keeps them).
    fn tag(&mut self, k: &str, v: impl Into<String>) {
        self.tags.push((k.to_string(), v.into()));
    }

    /// Envoy's `finalizeDownstreamSpan` request half and the custom tags.
    fn request_tags(&mut self, s: &Start<'_>, h: &HeaderMap) {
        let l = local();
        self.tag("node_id", l.node_id.clone());
        self.tag("zone", l.zone.clone());
        if let Some(rid) = header(h, "x-request-id") {
            self.tag("guid:x-request-id", rid);
        }
        let mut url = format!("{}://{}{}", s.scheme, s.host, s.path);
        if url.len() > s.tracing.max_path_tag_length {
            let mut cut = s.tracing.max_path_tag_length;
            while !url.is_char_boundary(cut) {
                cut -= 1;
            }
            url.truncate(cut);
        }
        self.tag("http.url", url);
        self.tag("http.method", s.method);
        self.tag("downstream_cluster", header(h, "x-envoy-downstream-service-cluster").unwrap_or("-"));
        self.tag("user_agent", header(h, "user-agent").unwrap_or("-"));
        self.tag("http.protocol", s.protocol);
        self.tag("peer.address", s.peer.ip().to_string());
        if let Some(c) = header(h, "x-client-trace-id") {
            self.tag("guid:x-client-trace-id", c);
        }
        for t in &s.tracing.custom_tags {
            let value = match &t.value {
                TagValue::Literal(v) => v.clone(),
                TagValue::Environment { name, default } => std::env::var(name).unwrap_or_else(|_| default.clone()),
                TagValue::RequestHeader { name, default } => {
                    h.get(name).and_then(|v| v.to_str().ok()).map_or_else(|| default.clone(), str::to_string)
                }
                TagValue::RequestMetadata { default } => default.clone(),
            };
            if !value.is_empty() {
                self.tag(&t.tag, value);
            }
        }
    }

    /// Ends the span with the response side (Envoy's `setCommonTags` and status) and queues it
    /// for export when sampled.
    pub fn finish(mut self: Box<Self>, r: &Finish<'_>) {
        if !self.context.sampled {
            return;
        }
        self.tag("component", "proxy");
        self.tag("response_size", r.bytes_sent.to_string());
        self.tag("request_size", r.bytes_received.to_string());
        self.tag("response_flags", r.flags);
        // Envoy 1.40's downstream span carries the cluster, not the host address (checked
        // side by side in tests/tracing.rs).
        if let (Some(c), Some(_)) = (r.upstream_cluster, r.upstream_host) {
            self.tag("upstream_cluster", c);
            self.tag("upstream_cluster.name", c);
        }
        if r.status != 0 {
            self.tag("http.status_code", r.status.to_string());
        }
        if r.status == 0 || r.status >= 500 {
            self.tag("error", "true");
        }
        let duration = self.started.elapsed();
        match &*self.tracer.clone() {
            Tracer::Zipkin(z) => zipkin::submit(z, zipkin::encode(&self, local(), duration)),
            Tracer::OpenTelemetry(o) => otlp::submit(o, otlp::encode(&self, duration)),
        }
    }
}

/// What the request path knows when the response is done.
pub struct Finish<'a> {
    /// Response status (0 = none was sent).
    pub status: u16,
    /// Envoy response flags (`-` = none).
    pub flags: &'a str,
    /// Body bytes received from the downstream.
    pub bytes_received: u64,
    /// Body bytes sent to the downstream.
    pub bytes_sent: u64,
    /// The cluster that served it.
    pub upstream_cluster: Option<&'a str>,
    /// The host that served it.
    pub upstream_host: Option<&'a str>,
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
