//! The tcp_proxy filter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use metrics::counter;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{copy, splice};
use crate::cluster::{connector, ClusterManager};
use crate::config::listener::TcpProxy;
use crate::l7::forward::choose_cluster;
use crate::listener::prefixed::Prefixed;
use crate::telemetry::access_log::{self, Entry};
use crate::tls::context::{PeerInfo, Purpose};
use crate::tls::stream::Upstream;

/// The addresses of one downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    /// The client.
    pub peer: SocketAddr,
    /// Where it connected (the original destination when captured).
    pub local: SocketAddr,
    /// The pre-NAT destination, which ORIGINAL_DST clusters forward to.
    pub original_dst: Option<SocketAddr>,
    /// The listener serves inbound traffic (Istio's `reporter="destination"`).
    pub inbound: bool,
}

/// The downstream side of a proxied connection.
pub enum Downstream {
    /// The socket and the bytes listener inspection already read from it.
    Plain(TcpStream, Bytes),
    /// TLS terminated by the filter chain, with what the handshake learned.
    Tls(Box<tokio_rustls::server::TlsStream<Prefixed<TcpStream>>>, PeerInfo),
}

impl Downstream {
    async fn shutdown(&mut self) {
        let _ = match self {
            Downstream::Plain(s, _) => s.shutdown().await,
            Downstream::Tls(s, _) => s.shutdown().await,
        };
    }
}

/// Proxies one downstream connection. Plain sockets on both sides go through `splice(2)`
/// (see [`splice`]); TLS on either side is copied through user space. `sni` is the TLS server
/// name seen by the listener (the cluster name when the chain has `sni_cluster`). When `drain`
/// fires (its listener was updated or removed, or the process is shutting down) the
/// connection may continue for the drain time, then is closed, as Envoy closes a draining
/// listener's connections.
pub async fn proxy(
    down: Downstream,
    cfg: &TcpProxy,
    clusters: &ClusterManager,
    (ends, sni): (Ends, Option<&str>),
    (drain, drain_time): (CancellationToken, Duration),
) {
    let Ends { peer, local, original_dst, inbound } = ends;
    let mut down = Some(down);
    let start = Instant::now();
    let mut entry = Entry {
        start_time: access_log::rfc3339(SystemTime::now()),
        protocol: "TCP".into(),
        downstream_remote_address: peer.to_string(),
        downstream_local_address: local.to_string(),
        ..Entry::default()
    };
    if let Some(Downstream::Tls(_, info)) = &down {
        entry.downstream_tls = true;
        entry.downstream_peer_uri_san = info.sans.identity().map(str::to_string);
    }
    let cluster_name = match sni {
        Some(s) if cfg.sni_cluster && !s.is_empty() => s.to_string(),
        _ => choose_cluster(&cfg.target).unwrap_or_default().to_string(),
    };
    entry.upstream_cluster = Some(cluster_name.clone());
    let principal = match &down {
        Some(Downstream::Tls(_, info)) => info.sans.identity().map(str::to_string),
        _ => None,
    };
    let labels = crate::telemetry::istio_labels::labels(&crate::telemetry::istio_labels::Peer {
        inbound,
        principal: principal.as_deref(),
        cluster: &cluster_name,
    });
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
                            Ok(tcp) => {
                                let up = match c.upstream_tls(&host) {
                                    None => Ok(Upstream::Plain(tcp)),
                                    Some(tls) => tls
                                        .connect(tcp, host.addr, Purpose::Tcp, c.config.connect_timeout)
                                        .await
                                        .map(|s| Upstream::Tls(Box::new(s))),
                                };
                                match up {
                                    Err(_) => {
                                        c.stats.cx_connect_fail.increment(1);
                                        c.record(&host, crate::outlier::Outcome::ConnectFailure);
                                        Err("UF")
                                    }
                                    Ok(up) => {
                                        c.record(&host, crate::outlier::Outcome::ConnectSuccess);
                                        c.stats.cx_total.increment(1);
                                        let _active = host.start_request();
                                        if let Some(d) = down.take() {
                                            pump(d, up, cfg, &mut entry, (&drain, drain_time)).await;
                                        }
                                        Ok(())
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    };
    if let Err(flag) = result {
        entry.response_flags = flag.into();
        if let Some(mut d) = down {
            d.shutdown().await;
        }
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
    down: Downstream,
    up: Upstream,
    cfg: &TcpProxy,
    entry: &mut Entry,
    (drain, drain_time): (&CancellationToken, Duration),
) {
    let received = AtomicU64::new(0);
    let sent = AtomicU64::new(0);
    let activity = AtomicU64::new(0);
    let (r, s, a) = (&received, &sent, &activity);
    let timed_out = match (down, up) {
        (Downstream::Plain(down, prefix), Upstream::Plain(mut up)) => {
            received.store(prefix.len() as u64, Ordering::Relaxed);
            if !prefix.is_empty() && up.write_all(&prefix).await.is_err() {
                entry.bytes_received = prefix.len() as u64;
                return;
            }
            let (down, up) = (&down, &up);
            let both = async move {
                let try_splice = splice::enabled();
                let ((m1, _), (m2, _)) = tokio::join!(
                    splice::one_way(down, up, r, a, try_splice),
                    splice::one_way(up, down, s, a, try_splice)
                );
                for m in [m1, m2] {
                    counter!("isthmus_tcp_proxy_io_total", "mode" => m.label()).increment(1);
                }
            };
            supervise(both, cfg, a, (drain, drain_time)).await
        }
        (down, up) => {
            let down: Box<dyn Io> = match down {
                Downstream::Plain(s, prefix) => Box::new(Prefixed::new(prefix, s)),
                Downstream::Tls(s, _) => s,
            };
            let (dr, dw) = tokio::io::split(down);
            let (ur, uw) = tokio::io::split(up);
            let both = async move {
                tokio::join!(copy::one_way(dr, uw, r, a), copy::one_way(ur, dw, s, a));
                counter!("isthmus_tcp_proxy_io_total", "mode" => "tls").increment(2);
            };
            supervise(both, cfg, a, (drain, drain_time)).await
        }
    };
    entry.bytes_received = received.load(Ordering::Relaxed);
    entry.bytes_sent = sent.load(Ordering::Relaxed);
    if timed_out {
        entry.response_flags = "SI".into();
    }
}

/// A downstream stream of either kind, for the copy path.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Runs the copy until both directions end, the idle timeout passes with no bytes, or the
/// listener's drain time is over. True when the idle timeout closed it.
async fn supervise(
    both: impl std::future::Future<Output = ()>,
    cfg: &TcpProxy,
    activity: &AtomicU64,
    (drain, drain_time): (&CancellationToken, Duration),
) -> bool {
    let drained = async {
        drain.cancelled().await;
        tokio::time::sleep(drain_time).await;
    };
    tokio::pin!(both);
    tokio::pin!(drained);
    let mut seen = u64::MAX;
    loop {
        let idle = async {
            match cfg.idle_timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut both => return false,
            _ = &mut drained => {
                tracing::debug!("listener drained; closing the connection");
                return false;
            }
            _ = idle => {
                let now = activity.load(Ordering::Relaxed);
                if now == seen { return true; }
                seen = now;
            }
        }
    }
}
