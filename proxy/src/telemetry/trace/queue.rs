//! What both exporters share: where collectors are found, the drop counter, and the batching
//! of queued spans (a batch goes out at Envoy's `min_flush_spans` or a second after its first
//! span, whichever comes first).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::cluster::ClusterManager;

/// A batch goes out at this size (Envoy's `min_flush_spans` default)...
const FLUSH_SPANS: usize = 5;
/// ...or this long after its first span.
const FLUSH_AFTER: Duration = Duration::from_secs(1);

static CLUSTERS: OnceLock<Arc<ClusterManager>> = OnceLock::new();

/// Where collectors are found (the running proxy's clusters); set once at start-up.
pub fn install(clusters: Arc<ClusterManager>) {
    let _ = CLUSTERS.set(clusters);
}

/// The running proxy's clusters, once installed.
pub fn clusters() -> Option<&'static Arc<ClusterManager>> {
    CLUSTERS.get()
}

/// Counts spans that were not exported, by why.
pub fn dropped(reason: &'static str, n: u64) {
    metrics::counter!("isthmus_tracing_spans_dropped_total", "reason" => reason).increment(n);
}

/// The next batch (at most `max` spans); `None` once every sender is gone.
pub async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut batch = vec![rx.recv().await?];
    let flush = tokio::time::sleep(FLUSH_AFTER);
    tokio::pin!(flush);
    while batch.len() < FLUSH_SPANS {
        tokio::select! {
            s = rx.recv() => match s { Some(s) => batch.push(s), None => break },
            _ = &mut flush => break,
        }
    }
    while batch.len() < max {
        match rx.try_recv() {
            Ok(s) => batch.push(s),
            Err(_) => break,
        }
    }
    Some(batch)
}
