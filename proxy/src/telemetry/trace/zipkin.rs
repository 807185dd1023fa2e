//! Zipkin v2 JSON export: spans are queued (bounded; a full queue drops and counts), batched
//! and POSTed to the collector cluster by one task per collector, so a slow or dead collector
//! costs the request path nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::queue::{self, dropped};
use super::{micros, Active, Kind, Local};
use crate::cluster::ClusterManager;
use crate::config::listener::Zipkin;

/// Spans waiting per collector; more are dropped (and counted) rather than held.
const QUEUE: usize = 4096;
/// The most spans in one POST.
const MAX_BATCH: usize = 1000;

/// A span as Zipkin's v2 JSON (`/api/v2/spans` takes an array of these).
pub fn encode(s: &Active, local: &Local, duration: Duration) -> Value {
    let mut endpoint = json!({"serviceName": local.cluster});
    match s.local_ip {
        Some(std::net::IpAddr::V4(ip)) => endpoint["ipv4"] = json!(ip.to_string()),
        Some(std::net::IpAddr::V6(ip)) => endpoint["ipv6"] = json!(ip.to_string()),
        None => {}
    }
    // Envoy's Zipkin span drops empty tags (the `zone` of a node without locality, say).
    let tags: serde_json::Map<String, Value> =
        s.tags.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut span = json!({
        "traceId": s.context.trace_id(),
        "id": format!("{:016x}", s.context.span_id),
        "name": s.name,
        "kind": match s.kind { Kind::Client => "CLIENT", Kind::Server => "SERVER" },
        "timestamp": micros(s.start),
        "duration": (duration.as_micros() as u64).max(1),
        "localEndpoint": endpoint,
        "tags": tags,
    });
    if s.context.parent_id != 0 {
        span["parentId"] = json!(format!("{:016x}", s.context.parent_id));
    }
    if s.shared {
        span["shared"] = json!(true);
    }
    span
}

type Key = (String, String, String);

fn senders() -> &'static Mutex<HashMap<Key, mpsc::Sender<Value>>> {
    static S: OnceLock<Mutex<HashMap<Key, mpsc::Sender<Value>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Queues a span for its collector (never waits).
pub fn submit(z: &Zipkin, span: Value) {
    let Some(clusters) = queue::clusters() else { return dropped("no_collector", 1) };
    let key = (z.collector_cluster.clone(), z.collector_endpoint.clone(), z.collector_hostname.clone());
    let tx = {
        let mut m = senders().lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(export(z.clone(), clusters.clone(), rx));
                tx
            })
            .clone()
    };
    if tx.try_send(span).is_err() {
        dropped("queue_full", 1);
    }
}

async fn export(z: Zipkin, clusters: Arc<ClusterManager>, mut rx: mpsc::Receiver<Value>) {
    while let Some(batch) = queue::next_batch(&mut rx, MAX_BATCH).await {
        let n = batch.len() as u64;
        match post(&z, &clusters, batch).await {
            Ok(()) => metrics::counter!("isthmus_tracing_spans_sent_total").increment(n),
            Err(e) => {
                tracing::debug!(collector = %z.collector_cluster, error = %e, "span report failed");
                dropped("report_failed", n);
            }
        }
    }
}

async fn post(z: &Zipkin, clusters: &ClusterManager, batch: Vec<Value>) -> Result<(), String> {
    let cluster = clusters.get(&z.collector_cluster).ok_or("no such cluster")?;
    let host = cluster.pick(None, &|_| false, 1).ok_or("no healthy host")?;
    let body = serde_json::to_vec(&Value::Array(batch)).map_err(|e| e.to_string())?;
    // Origin form: the pool dials the host; the URI is what goes on the request line.
    let req = http::Request::post(z.collector_endpoint.as_str())
        .header(http::header::HOST, &z.collector_hostname)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed_unsync())
        .map_err(|e| e.to_string())?;
    let tls = cluster.upstream_tls(&host).is_some();
    let resp = tokio::time::timeout(Duration::from_secs(5), cluster.h1.request(host.addr, tls, req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    // Drain the answer so the connection goes back to the pool.
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("collector answered {status}"))
    }
}
