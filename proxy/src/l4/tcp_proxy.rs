//! The tcp_proxy filter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use metrics::counter;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::copy::one_way;
use crate::cluster::{connector, ClusterManager};
use crate::config::listener::TcpProxy;
use crate::l7::forward::choose_cluster;
use crate::telemetry::access_log::{self, Entry};

/// Proxies one downstream connection (bytes read for inspection are already put back in
/// front of `down`). `original_dst` serves ORIGINAL_DST clusters.
pub async fn proxy<I>(
    mut down: I,
    cfg: &TcpProxy,
    clusters: &ClusterManager,
    peer: SocketAddr,
    local: SocketAddr,
    original_dst: Option<SocketAddr>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
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
                                pump(&mut down, up, cfg, &mut entry).await
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

async fn pump<I>(down: &mut I, mut up: TcpStream, cfg: &TcpProxy, entry: &mut Entry) -> Result<(), &'static str>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let received = AtomicU64::new(0);
    let sent = AtomicU64::new(0);
    let activity = AtomicU64::new(0);
    let (dr, dw) = tokio::io::split(down);
    let (ur, uw) = up.split();
    let both = async {
        let _ = tokio::join!(one_way(dr, uw, &received, &activity), one_way(ur, dw, &sent, &activity));
    };
    let timed_out = match cfg.idle_timeout {
        None => {
            both.await;
            false
        }
        Some(idle) => {
            tokio::pin!(both);
            let mut seen = u64::MAX;
            loop {
                tokio::select! {
                    _ = &mut both => break false,
                    _ = tokio::time::sleep(idle) => {
                        let now = activity.load(Ordering::Relaxed);
                        if now == seen { break true; }
                        seen = now;
                    }
                }
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
