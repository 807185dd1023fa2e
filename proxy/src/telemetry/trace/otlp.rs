//! OTLP export over gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`, the
//! published `opentelemetry-proto` types): spans are queued (bounded by `max_cache_size`; a
//! full queue drops and counts), batched, and exported to a host of the collector cluster by
//! one task per collector, so a slow or dead collector costs the request path nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status, ResourceSpans, ScopeSpans, Span, Status};
use tokio::sync::mpsc;

use super::queue::{self, dropped};
use super::{Active, Kind};
use crate::cluster::ClusterManager;
use crate::config::listener::OpenTelemetry;

/// The most spans in one export call.
const MAX_BATCH: usize = 512;

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..KeyValue::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A finished span as OTLP.
pub fn encode(s: &Active, duration: Duration) -> Span {
    let c = &s.context;
    let mut trace_id = c.trace_high.to_be_bytes().to_vec();
    trace_id.extend_from_slice(&c.trace_low.to_be_bytes());
    let start = nanos(s.start);
    let error = s.tags.iter().any(|(k, v)| k == "error" && v == "true");
    Span {
        trace_id,
        span_id: c.span_id.to_be_bytes().to_vec(),
        parent_span_id: if c.parent_id == 0 { Vec::new() } else { c.parent_id.to_be_bytes().to_vec() },
        trace_state: s.tracestate.clone().unwrap_or_default(),
        name: s.name.clone(),
        kind: match s.kind {
            Kind::Client => SpanKind::Client,
            Kind::Server => SpanKind::Server,
        } as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration.as_nanos() as u64,
        attributes: s.tags.iter().map(|(k, v)| kv(k, v.as_str())).collect(),
        status: error.then(|| Status { message: String::new(), code: status::StatusCode::Error as i32 }),
        ..Span::default()
    }
}

fn senders() -> &'static Mutex<HashMap<String, mpsc::Sender<Span>>> {
    static S: OnceLock<Mutex<HashMap<String, mpsc::Sender<Span>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Queues a span for its collector (never waits).
pub fn submit(o: &OpenTelemetry, span: Span) {
    let Some(clusters) = queue::clusters() else { return dropped("no_collector", 1) };
    let key = format!("{}|{}|{}", o.cluster, o.authority, o.service_name);
    let tx = {
        let mut m = senders().lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(o.max_cache_size.max(1));
                tokio::spawn(export(o.clone(), clusters.clone(), rx));
                tx
            })
            .clone()
    };
    if tx.try_send(span).is_err() {
        dropped("queue_full", 1);
    }
}

fn resource(o: &OpenTelemetry) -> Resource {
    let mut attributes = Vec::new();
    if o.service_name_attribute {
        attributes.push(kv("service.name", o.service_name.as_str()));
    }
    if o.sdk_attributes {
        attributes.push(kv("telemetry.sdk.language", "rust"));
        attributes.push(kv("telemetry.sdk.name", "isthmus"));
        attributes.push(kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")));
    }
    Resource { attributes, ..Resource::default() }
}

async fn export(o: OpenTelemetry, clusters: Arc<ClusterManager>, mut rx: mpsc::Receiver<Span>) {
    let mut channels: HashMap<std::net::SocketAddr, tonic::transport::Channel> = HashMap::new();
    while let Some(batch) = queue::next_batch(&mut rx, MAX_BATCH).await {
        let n = batch.len() as u64;
        match send(&o, &clusters, &mut channels, batch).await {
            Ok(()) => metrics::counter!("isthmus_tracing_spans_sent_total").increment(n),
            Err(e) => {
                tracing::debug!(collector = %o.cluster, error = %e, "OTLP export failed");
                dropped("report_failed", n);
            }
        }
    }
}

async fn send(
    o: &OpenTelemetry,
    clusters: &ClusterManager,
    channels: &mut HashMap<std::net::SocketAddr, tonic::transport::Channel>,
    spans: Vec<Span>,
) -> Result<(), String> {
    let cluster = clusters.get(&o.cluster).ok_or("no such cluster")?;
    let host = cluster.pick(None, &|_| false, 1).ok_or("no healthy host")?;
    let channel = match channels.get(&host.addr) {
        Some(c) => c.clone(),
        None => {
            let origin: http::Uri = format!("http://{}", o.authority).parse().map_err(|e| format!("{e}"))?;
            let c = tonic::transport::Endpoint::from_shared(format!("http://{}", host.addr))
                .map_err(|e| e.to_string())?
                .origin(origin)
                .connect_timeout(cluster.config.connect_timeout)
                .connect_lazy();
            channels.insert(host.addr, c.clone());
            c
        }
    };
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(o)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "isthmus".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let mut req = tonic::Request::new(body);
    req.set_timeout(o.timeout);
    TraceServiceClient::new(channel).export(req).await.map(drop).map_err(|s| {
        // A broken connection is redialled next time.
        channels.remove(&host.addr);
        s.to_string()
    })
}
