//! The tcp_proxy filter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use metrics::counter;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::splice;
use crate::cluster::{connector, ClusterManager};
use crate::config::listener::TcpProxy;
use crate::l7::forward::choose_cluster;
use crate::telemetry::access_log::{self, Entry};

/// The addresses of one downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    /// The client.
    pub peer: SocketAddr,
    /// Where it connected (the original destination when captured).
    pub local: SocketAddr,
    /// The pre-NAT destination, which ORIGINAL_DST clusters forward to.
    pub original_dst: Option<SocketAddr>,
}

/// Proxies one downstream connection; `prefix` holds the bytes listener inspection already
/// read, sent upstream first. Plain sockets on both sides, so the bytes go through `splice(2)`
/// (see [`splice`]). When `drain` fires (its listener was updated or removed, or the process is
/// shutting down) the connection may continue for the drain time, then is closed, as Envoy
/// closes a draining listener's connections.
pub async fn proxy(
    mut down: TcpStream,
    prefix: Bytes,
    cfg: &TcpProxy,
    clusters: &ClusterManager,
    ends: Ends,
    (drain, drain_time): (CancellationToken, Duration),
) {
    let Ends { peer, local, original_dst } = ends;
    let start = Instant::now();
    let mut entry = Entry {
        start_time: access_log::rfc3339(SystemTime::now()),
        protocol: "TCP".into(),
        downstream_remote_address: peer.to_string(),
        downstream_local_address: local.to_string(),
        ..Entry::default()
    };
    let cluster_name = choose_cluster(&cfg.target).unwrap_or_default().to_string();
    entry.upstream_cluster = Some(cluster_name.clone());
    let labels = [("reporter", "source".to_string()), ("destination_service_name", cluster_name.clone())];
    counter!("istio_tcp_connections_opened_total", &labels).increment(1);
    let result = match clusters.get(&cluster_name) {
        None => Err("NC"),
        Some(c) => match c.pick(original_dst, &|_| false, 1) {
            None => Err("UH"),
            Some(host) => {
                entry.upstream_host = Some(host.addr.to_string());
                match c.connections.try_acquire() {
                    None => {
                        c.stats.cx_overflow.increment(1);
                        Err("UO")
                    }
                    Some(_permit) => {
                        match connector::connect(host.addr, c.config.connect_timeout, &c.stats, c.config.source_address)
                            .await
                        {
                            Err(_) => {
                                c.record(&host, crate::outlier::Outcome::ConnectFailure);
                                Err("UF")
                            }
                            Ok(up) => {
                                c.record(&host, crate::outlier::Outcome::ConnectSuccess);
                                c.stats.cx_total.increment(1);
                                let _active = host.start_request();
                                pump(&down, up, prefix, cfg, &mut entry, (&drain, drain_time)).await
                            }
                        }
                    }
                }
            }
        },
    };
    if let Err(flag) = result {
        entry.response_flags = flag.into();
        let _ = down.shutdown().await;
    } else if entry.response_flags.is_empty() {
        entry.response_flags = "-".into();
    }
    counter!("istio_tcp_received_bytes_total", &labels).increment(entry.bytes_received);
    counter!("istio_tcp_sent_bytes_total", &labels).increment(entry.bytes_sent);
    counter!("istio_tcp_connections_closed_total", &labels).increment(1);
    entry.duration = access_log::millis_since(start);
    if cfg.access_log {
        access_log::write(&entry);
    }
}

async fn pump(
    down: &TcpStream,
    mut up: TcpStream,
    prefix: Bytes,
    cfg: &TcpProxy,
    entry: &mut Entry,
    (drain, drain_time): (&CancellationToken, Duration),
) -> Result<(), &'static str> {
    let received = AtomicU64::new(prefix.len() as u64);
    let sent = AtomicU64::new(0);
    let activity = AtomicU64::new(0);
    if !prefix.is_empty() && up.write_all(&prefix).await.is_err() {
        entry.bytes_received = prefix.len() as u64;
        return Ok(());
    }
    let up = &up;
    let both = async {
        let try_splice = splice::enabled();
        let ((m1, _), (m2, _)) = tokio::join!(
            splice::one_way(down, up, &received, &activity, try_splice),
            splice::one_way(up, down, &sent, &activity, try_splice)
        );
        for m in [m1, m2] {
            counter!("isthmus_tcp_proxy_io_total", "mode" => m.label()).increment(1);
        }
    };
    let drained = async {
        drain.cancelled().await;
        tokio::time::sleep(drain_time).await;
    };
    tokio::pin!(both);
    tokio::pin!(drained);
    let mut seen = u64::MAX;
    let timed_out = loop {
        let idle = async {
            match cfg.idle_timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut both => break false,
            _ = &mut drained => {
                tracing::debug!("listener drained; closing the connection");
                break false;
            }
            _ = idle => {
                let now = activity.load(Ordering::Relaxed);
                if now == seen { break true; }
                seen = now;
            }
        }
    };
    entry.bytes_received = received.load(Ordering::Relaxed);
    entry.bytes_sent = sent.load(Ordering::Relaxed);
    if timed_out {
        entry.response_flags = "SI".into();
    }
    Ok(())
}
