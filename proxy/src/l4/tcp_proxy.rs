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
use crate::clock::now;
use crate::cluster::{connector, ClusterManager};
use crate::config::listener::TcpProxy;
use crate::error::Flag;
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
    let start = now();
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
    let metrics = crate::telemetry::tcp_metrics::handles(&crate::telemetry::istio_labels::Peer {
        inbound,
        principal: principal.as_deref(),
        cluster: &cluster_name,
    });
    metrics.opened.increment(1);
    let mut rec = ConnRecord {
        metrics,
        entry,
        start,
        log: cfg.access_log.clone(),
        received: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    };
    let result = match clusters.get(&cluster_name) {
        None => Err(Flag::NoCluster),
        Some(c) => match c.pick(original_dst, &|_| false, 1) {
            None => Err(Flag::NoHealthyUpstream),
            Some(host) => {
                rec.entry.upstream_host = Some(host.addr.to_string());
                match c.connections.try_acquire() {
                    None => {
                        c.stats.cx_overflow.increment(1);
                        Err(Flag::Overflow)
                    }
                    Some(_permit) => {
                        match connector::connect(host.addr, c.config.connect_timeout, &c.stats, c.config.source_address)
                            .await
                        {
                            Err(_) => {
                                c.record(&host, crate::outlier::Outcome::ConnectFailure);
                                Err(Flag::UpstreamConnectFailure)
                            }
                            Ok(tcp) => {
                                connector::keepalive(&tcp, c.config.tcp_keepalive.as_ref());
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
                                        Err(Flag::UpstreamConnectFailure)
                                    }
                                    Ok(up) => {
                                        c.record(&host, crate::outlier::Outcome::ConnectSuccess);
                                        c.stats.cx_total.increment(1);
                                        let _active = host.start_request();
                                        if let Some(d) = down.take() {
                                            let io = (&rec.received, &rec.sent, &mut rec.entry.response_flags);
                                            pump(d, up, cfg, io, (&drain, drain_time)).await;
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
        rec.entry.response_flags = flag.code().into();
        if let Some(mut d) = down {
            d.shutdown().await;
        }
    }
    // `rec` writes the counters and the access log as it drops, here or wherever the task ends.
}

async fn pump(
    down: Downstream,
    up: Upstream,
    cfg: &TcpProxy,
    (received, sent, flags): (&AtomicU64, &AtomicU64, &mut String),
    (drain, drain_time): (&CancellationToken, Duration),
) {
    let activity = AtomicU64::new(0);
    let (r, s, a) = (received, sent, &activity);
    let timed_out = match (down, up) {
        (Downstream::Plain(down, prefix), Upstream::Plain(mut up)) => {
            received.store(prefix.len() as u64, Ordering::Relaxed);
            if !prefix.is_empty() && up.write_all(&prefix).await.is_err() {
                return;
            }
            let (down, up) = (&down, &up);
            let both = async move {
                let try_splice = splice::enabled();
                let ((m1, e1), (m2, e2)) = tokio::join!(
                    splice::one_way(down, up, r, a, try_splice),
                    splice::one_way(up, down, s, a, try_splice)
                );
                for m in [m1, m2] {
                    counter!("isthmus_tcp_proxy_io_total", "mode" => m.label()).increment(1);
                }
                io_errors(e1.err(), e2.err());
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
                let (e1, e2) = tokio::join!(copy::one_way(dr, uw, r, a), copy::one_way(ur, dw, s, a));
                io_errors(e1.err(), e2.err());
                counter!("isthmus_tcp_proxy_io_total", "mode" => "tls").increment(2);
            };
            supervise(both, cfg, a, (drain, drain_time)).await
        }
    };
    if timed_out {
        *flags = Flag::StreamIdleTimeout.code().into();
    }
}

/// One proxied connection's accounting, written exactly once, on drop: Istio's closed-connection
/// and byte counters and the access log line. A connection cut short (the process shutting
/// down mid-transfer, the task dropped) is still counted, with the bytes moved so far.
struct ConnRecord {
    metrics: crate::telemetry::tcp_metrics::TcpHandles,
    entry: Entry,
    start: Instant,
    log: crate::config::access_log::AccessLogs,
    received: AtomicU64,
    sent: AtomicU64,
}

impl Drop for ConnRecord {
    fn drop(&mut self) {
        self.entry.bytes_received = self.received.load(Ordering::Relaxed);
        self.entry.bytes_sent = self.sent.load(Ordering::Relaxed);
        if self.entry.response_flags.is_empty() {
            self.entry.response_flags = "-".into();
        }
        let metrics = self.metrics.at_close();
        metrics.received.increment(self.entry.bytes_received);
        metrics.sent.increment(self.entry.bytes_sent);
        metrics.closed.increment(1);
        self.entry.duration = access_log::millis_since(self.start);
        if self.log.enabled() {
            access_log::emit(&self.log, &self.entry);
        }
    }
}

/// Errors the copy loops met, per direction: counted in `isthmus_tcp_proxy_errors_total
/// {direction, reason}` and logged, not dropped. An abrupt close by the peer (reset, broken
/// pipe) is an ordinary end for a TCP proxy and is not counted.
fn io_errors(down_to_up: Option<std::io::Error>, up_to_down: Option<std::io::Error>) {
    use crate::error::{ProxyError, Side};
    for (direction, e) in [("downstream_to_upstream", down_to_up), ("upstream_to_downstream", up_to_down)] {
        let Some(e) = e else { continue };
        let classified = ProxyError::io(Side::Upstream, &e);
        if classified.is_close() {
            continue;
        }
        tracing::debug!(direction, error = %e, reason = classified.reason, "tcp_proxy copy failed");
        counter!("isthmus_tcp_proxy_errors_total", "direction" => direction, "reason" => classified.reason)
            .increment(1);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::listener::NetworkFilter;

    /// The task of a connection dropped mid-transfer (the runtime shutting down, the listener
    /// force-closed) still writes Istio's closed-connection and byte counters: the record is
    /// written on drop. (The old end-of-function accounting wrote nothing here.)
    #[tokio::test]
    async fn a_connection_dropped_mid_transfer_is_still_counted() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let _guard = metrics::set_default_local_recorder(&rec);
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = upstream.local_addr().unwrap();
        let yaml = format!(
            "static_resources:\n  listeners:\n  - name: t\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n    - filters:\n      - name: tcp\n        typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}\n  clusters:\n  - name: c\n    load_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}\n",
            up.port()
        );
        let b = crate::config::load::from_value(crate::config::load::parse(&yaml, "t").unwrap(), "t").unwrap();
        let NetworkFilter::TcpProxy(cfg) = &b.listeners[0].filter_chains[0].filter else { panic!("not tcp_proxy") };
        let built = crate::build::snapshot(b.clone()).unwrap();
        let clusters =
            crate::cluster::ClusterManager::new(&built.clusters, crate::locality::NodeView::from_bootstrap(&b));
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(front.local_addr().unwrap()).await.unwrap();
        let (down, peer) = front.accept().await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let ends = Ends { peer, local: front.local_addr().unwrap(), original_dst: None, inbound: false };
        let conn = proxy(
            Downstream::Plain(down, Bytes::new()),
            cfg,
            &clusters,
            (ends, None),
            (CancellationToken::new(), Duration::from_secs(60)),
        );
        let upstream_saw_hello = async {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s
        };
        let _held = tokio::select! {
            _ = conn => panic!("the connection ended on its own"),
            s = upstream_saw_hello => s,
        };
        // `conn` was dropped mid-transfer by the select.
        let all = snap.snapshot().into_vec();
        let value = |name: &str| all.iter().find(|(k, ..)| k.key().name() == name).map(|(.., v)| v);
        assert!(matches!(value("istio_tcp_connections_closed_total"), Some(DebugValue::Counter(1))));
        let received = value("istio_tcp_received_bytes_total");
        assert!(matches!(received, Some(DebugValue::Counter(5))), "{received:?}");
        drop(Arc::new(client));
    }

    /// A connection of a replaced (draining) listener runs on for `--drain-time-s` exactly,
    /// then closes; before the drain nothing ends it. Paused clock: the times are exact.
    #[tokio::test(start_paused = true)]
    async fn a_draining_connection_runs_for_the_drain_time_then_closes() {
        let yaml = "static_resources:\n  listeners:\n  - name: t\n    address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n    filter_chains:\n    - filters:\n      - name: tcp\n        typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c, idle_timeout: 0s}\n  clusters:\n  - name: c\n    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}\n";
        let b = crate::config::load::from_value(crate::config::load::parse(yaml, "t").unwrap(), "t").unwrap();
        let NetworkFilter::TcpProxy(cfg) = &b.listeners[0].filter_chains[0].filter else { panic!("not tcp_proxy") };
        assert_eq!(cfg.idle_timeout, None, "idle_timeout: 0s disables the idle timer");
        let drain = CancellationToken::new();
        let activity = AtomicU64::new(0);
        let run = supervise(std::future::pending::<()>(), cfg, &activity, (&drain, Duration::from_secs(30)));
        tokio::pin!(run);
        assert!(tokio::time::timeout(Duration::from_secs(3600), &mut run).await.is_err(), "ended without a drain");
        drain.cancel();
        let start = tokio::time::Instant::now();
        let idle_closed = run.await;
        assert_eq!(start.elapsed(), Duration::from_secs(30), "closed at the end of the drain time");
        assert!(!idle_closed);
    }
}
