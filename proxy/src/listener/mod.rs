//! Listeners: bind, accept, inspect the first bytes when chains need it, pick the filter
//! chain, and hand the connection to L4 or L7.

pub mod accept;
pub mod chain_match;
pub mod internal;
pub mod manager;
mod original_dst;
pub(crate) mod prefixed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use metrics::counter;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument};

use self::chain_match::ConnInfo;
use self::prefixed::Prefixed;
use crate::cluster::ClusterManager;
use crate::config::{Listener, NetworkFilter};
use crate::detect::{self, Detected};
use crate::l7::ConnCtx;

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("listener \"{name}\": cannot bind {addr}: {source}")]
pub struct BindError {
    /// Listener name.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// The OS error (e.g. address in use).
    #[source]
    pub source: std::io::Error,
}

/// Binds the listener's socket (SO_REUSEADDR, configured backlog).
pub fn bind(l: &Listener) -> Result<TcpListener, BindError> {
    bind_at(l, l.address)
}

/// Binds `l` at `address` (its own, or one of its `additional_addresses`).
pub fn bind_at(l: &Listener, address: SocketAddr) -> Result<TcpListener, BindError> {
    let err = |source| BindError { name: l.name.clone(), addr: address, source };
    let domain = socket2::Domain::for_address(address);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    if address.is_ipv6() {
        // Envoy's default (`ipv4_compat: false`): `[::]:15001` and `0.0.0.0:15001` coexist,
        // as Istio's dual-stack sidecar listeners need.
        s.set_only_v6(true).map_err(err)?;
    }
    if l.transparent {
        #[cfg(target_os = "linux")]
        {
            if address.is_ipv4() {
                s.set_ip_transparent_v4(true).map_err(err)?;
            } else {
                s.set_ip_transparent_v6(true).map_err(err)?;
            }
        }
    }
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&address.into()).map_err(err)?;
    s.listen(i32::try_from(l.backlog).unwrap_or(1024)).map_err(err)?;
    TcpListener::from_std(s.into()).map_err(err)
}

/// Everything a connection task needs.
#[derive(Clone)]
pub struct Shared {
    /// Clusters.
    pub clusters: Arc<ClusterManager>,
    /// RDS route tables.
    pub routes: Arc<crate::l7::routes::RouteRegistry>,
    /// Stops accept loops and drains connections.
    pub drain: CancellationToken,
    /// `--drain-time-s`: how long a draining listener's TCP connections may continue.
    pub drain_time: std::time::Duration,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// `source_workload` label.
    pub source: Arc<str>,
    /// Listeners with `bind_to_port: false`, by address: where `use_original_dst` listeners
    /// hand redirected connections.
    pub virtuals: Arc<arc_swap::ArcSwap<std::collections::HashMap<SocketAddr, Arc<Ready>>>>,
    /// Open downstream connections over every listener, against the overload manager's
    /// `global_downstream_max_connections`.
    pub connections: Arc<accept::ConnectionLimit>,
}

impl Shared {
    /// The listener owning `dst`: exact address first, then the wildcard address of its port
    /// (Envoy's `use_original_dst` hand-off).
    fn owner_of(&self, dst: SocketAddr) -> Option<Arc<Ready>> {
        let v = self.virtuals.load();
        let wildcard: SocketAddr = if dst.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], dst.port()))
        } else {
            SocketAddr::from(([0u16; 8], dst.port()))
        };
        v.get(&dst).or_else(|| v.get(&wildcard)).cloned()
    }
}

/// A listener config with its chains' TLS contexts built (`tls::build::listener`): what
/// runs. Derefs to the config.
#[derive(Debug)]
pub struct Ready {
    /// The converted config.
    pub config: Arc<Listener>,
    /// `filter_chains`, in order.
    pub chains: Vec<ReadyChain>,
    /// `default_filter_chain`.
    pub default_chain: Option<ReadyChain>,
}

impl std::ops::Deref for Ready {
    type Target = Listener;
    fn deref(&self) -> &Listener {
        &self.config
    }
}

impl Ready {
    /// Secrets its TLS chains still wait for (SDS not yet delivered): a listener warms until
    /// they arrive, as Envoy's does.
    pub fn pending_secrets(&self) -> Vec<String> {
        self.chains
            .iter()
            .chain(self.default_chain.iter())
            .filter_map(|c| c.server_tls.as_ref())
            .flat_map(|t| t.pending_secrets())
            .collect()
    }
}

/// A filter chain with its TLS termination built. Derefs to the config.
#[derive(Debug, Clone)]
pub struct ReadyChain {
    /// The converted chain.
    pub config: Arc<crate::config::FilterChain>,
    /// Its TLS termination (`None` = bytes as they arrive).
    pub server_tls: Option<Arc<crate::tls::context::ServerTls>>,
}

impl std::ops::Deref for ReadyChain {
    type Target = crate::config::FilterChain;
    fn deref(&self) -> &crate::config::FilterChain {
        &self.config
    }
}

/// The listener config in force and the drain signal of the connections accepted under it.
/// Swapped whole on update: connections keep the version they were accepted with.
#[derive(Debug)]
pub struct Version {
    /// The config.
    pub listener: Arc<Ready>,
    /// Fired when the listener is removed or drained, or replaced by one whose listener-level
    /// config differs (or on shutdown): every connection finishes its in-flight requests and
    /// closes.
    pub drain: CancellationToken,
    /// Per filter chain (by fingerprint), children of `drain`: a chain-only update fires the
    /// tokens of the chains that changed or went, and carries the others over.
    pub chains: HashMap<u64, CancellationToken>,
}

impl Version {
    /// A version with fresh drain tokens.
    pub fn fresh(listener: Arc<Ready>, drain: CancellationToken) -> Version {
        let chains = chain_prints(&listener).map(|fp| (fp, drain.child_token())).collect();
        Version { listener, drain, chains }
    }

    /// The version replacing `old` with `listener`. A chain-only update (the listener-level
    /// digest unchanged) keeps `old`'s token and the tokens of chains still present, and
    /// fires the others; any other update fires `old` entirely.
    pub fn replacing(old: &Version, listener: Arc<Ready>, fresh_drain: impl FnOnce() -> CancellationToken) -> Version {
        if old.listener.base_fingerprint != listener.base_fingerprint {
            old.drain.cancel();
            return Version::fresh(listener, fresh_drain());
        }
        let drain = old.drain.clone();
        let chains: HashMap<u64, CancellationToken> = chain_prints(&listener)
            .map(|fp| (fp, old.chains.get(&fp).cloned().unwrap_or_else(|| drain.child_token())))
            .collect();
        for (fp, t) in &old.chains {
            if !chains.contains_key(fp) {
                t.cancel();
            }
        }
        Version { listener, drain, chains }
    }

    /// The drain token of the connections of `chain`.
    fn drain_of(&self, chain: &ReadyChain) -> CancellationToken {
        self.chains.get(&chain.fingerprint).cloned().unwrap_or_else(|| self.drain.clone())
    }
}

fn chain_prints(l: &Ready) -> impl Iterator<Item = u64> + '_ {
    l.chains.iter().chain(l.default_chain.iter()).map(|c| c.fingerprint)
}

/// Accepts until `stop` (or global drain); every connection runs in its own tracked task with
/// the listener version current when it was accepted.
pub async fn serve(
    current: Arc<arc_swap::ArcSwap<Version>>,
    socket: TcpListener,
    shared: Shared,
    stop: CancellationToken,
) {
    let name = current.load().listener.name.clone();
    let accepted = counter!("isthmus_downstream_cx_total", "listener" => name.clone());
    let mut acceptor = accept::Acceptor::new(name.clone());
    let spawn = |stream: TcpStream, peer: SocketAddr| {
        accepted.increment(1);
        if crate::overload::active(crate::config::overload::Action::RejectIncomingConnections) {
            counter!("isthmus_downstream_cx_overload_reject", "listener" => name.clone()).increment(1);
            debug!(listener = %name, "overloaded: connection rejected");
            return;
        }
        let Some(slot) = shared.connections.admit() else {
            counter!("isthmus_downstream_global_cx_overflow", "listener" => name.clone()).increment(1);
            debug!(listener = %name, "global downstream connection limit reached; closing");
            return;
        };
        let _ = stream.set_nodelay(true);
        let v = current.load_full();
        let sh = shared.clone();
        let span = tracing::debug_span!("conn", listener = %name, client.addr = %peer);
        shared.tracker.spawn(
            async move {
                connection(v, stream, peer, sh).await;
                drop(slot);
            }
            .instrument(span),
        );
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.drain.cancelled() => break,
            _ = stop.cancelled() => break,
            c = async {
                // The overload manager's `stop_accepting_connections`: leave them in the
                // backlog (admin keeps accepting: it has its own loop).
                crate::overload::until_off(crate::config::overload::Action::StopAcceptingConnections).await;
                acceptor.accept(&socket).await
            } => c,
        };
        spawn(stream, peer);
    }
    // Connections the kernel completed before the socket closes would be reset with their
    // requests unread: take what is queued and serve it (draining: `Connection: close`).
    if let Ok(std) = socket.into_std() {
        while let Ok((s, peer)) = std.accept() {
            if let Ok(stream) = s.set_nonblocking(true).and_then(|()| TcpStream::from_std(s)) {
                spawn(stream, peer);
            }
        }
    }
    debug!(listener = %name, "stopped accepting");
}

async fn connection(v: Arc<Version>, mut stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let l = v.listener.clone();
    let original = if l.internal {
        // Only connections Isthmus dialled itself reach an internal listener; they carry the
        // original destination of the endpoint they were dialled for.
        match internal::accepted(peer) {
            Some(dst) => dst,
            None => {
                counter!("isthmus_downstream_cx_internal_refused", "listener" => l.name.clone()).increment(1);
                debug!("connection to an internal listener from outside Isthmus refused");
                return;
            }
        }
    } else {
        original_dst::original_dst(&stream).or_else(|| {
            // TPROXY: no NAT; the accepted socket's local address is the original destination.
            let local = stream.local_addr().ok()?;
            (l.transparent && local.port() != l.address.port()).then_some(local)
        })
    };
    if l.use_original_dst && original.is_none() {
        // Loop guard: a capture listener reached directly (or a connection that would loop
        // back into it) has no other destination to hand it to.
        counter!("isthmus_downstream_cx_loop_refused", "listener" => l.name.clone()).increment(1);
        debug!("connection to the capture port itself refused (loop guard)");
        return;
    }
    let l = match original.filter(|_| l.use_original_dst).and_then(|dst| shared.owner_of(dst)) {
        Some(owner) => {
            debug!(listener = %owner.name, "handed off by original destination");
            owner
        }
        None => l,
    };
    let local = original.unwrap_or_else(|| stream.local_addr().unwrap_or(l.address));
    let mut info = ConnInfo { local: Some(local), peer: Some(peer), transport: "raw_buffer", ..ConnInfo::default() };
    let mut prefix = BytesMut::new();
    if l.inspect {
        let inspected = inspect(&mut stream, &mut prefix, &mut info);
        let outcome = match l.inspect_timeout {
            Some(limit) => tokio::time::timeout(limit, inspected).await,
            None => Ok(inspected.await),
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "connection closed during inspection");
                return;
            }
            Err(_) if l.continue_on_inspect_timeout => {}
            Err(_) => {
                debug!("listener filter timeout");
                return;
            }
        }
    }
    let Some(chain) = chain_match::select_in(&l, &l.chains, l.default_chain.as_ref(), &info) else {
        counter!("isthmus_downstream_cx_no_chain_match", "listener" => l.name.clone()).increment(1);
        debug!("no filter chain matched; closing");
        return;
    };
    // The chain's own drain token on the listener that accepted (a chain-only update leaves
    // the other chains' connections alone); a handed-off connection drains with its capture
    // listener.
    let drain = if Arc::ptr_eq(&l, &v.listener) { v.drain_of(chain) } else { v.drain.clone() };
    // Held for the connection's life: a connection limit's slots.
    let _admitted = match crate::l4::policy::admit(&chain.policies) {
        crate::l4::policy::Admission::Admitted(slots) => slots,
        crate::l4::policy::Admission::Refused { delay } => {
            if let Some(d) = delay {
                // Held for the delay, but never past a drain.
                tokio::select! {
                    () = tokio::time::sleep(d) => {}
                    () = drain.cancelled() => {}
                }
            }
            return;
        }
    };
    let prefix = prefix.freeze();
    let io = Prefixed::new(prefix, stream);
    let (down, tls) = match &chain.server_tls {
        None => (Either::Plain(io), None),
        Some(tls) => match crate::l4::deadline(chain.handshake_timeout, tls.accept(io)).await {
            Ok(Ok((s, peer_info))) => (Either::Tls(Box::new(s)), Some(peer_info)),
            Ok(Err(reason)) => {
                debug!(chain = %chain.name, reason = reason.reason(), "TLS handshake failed; closing");
                return;
            }
            Err(_) => {
                crate::tls::handshake_error::count("downstream", crate::error::TlsFailure::Timeout);
                debug!(chain = %chain.name, "TLS handshake timed out; closing");
                return;
            }
        },
    };
    if !chain.policies.is_empty() {
        let attrs = crate::policy::rbac::Attrs {
            peer,
            local,
            sni: info.sni.as_deref(),
            // `authenticated` asks for TLS, not a client certificate (as Envoy).
            cert: tls.as_ref().map(|t| crate::policy::rbac::Peer { sans: &t.sans, subject: &t.subject }),
            request: None,
        };
        if !crate::l4::policy::authorize(&chain.policies, &attrs) {
            return;
        }
    }
    match &chain.filter {
        NetworkFilter::TcpProxy(t) => {
            use crate::l4::tcp_proxy::{proxy, Downstream, Ends};
            let ends = Ends { peer, local, original_dst: original, inbound: l.inbound };
            let down = match (down, tls) {
                (Either::Tls(s), Some(p)) => Downstream::Tls(s, p),
                (Either::Tls(s), None) => Downstream::Tls(s, Default::default()),
                (Either::Plain(io), _) => {
                    let (prefix, stream) = io.into_parts();
                    Downstream::Plain(stream, prefix)
                }
            };
            proxy(down, t, &shared.clusters, (ends, info.sni.as_deref()), (drain, shared.drain_time)).await
        }
        NetworkFilter::Http(hcm) => {
            let ctx = Arc::new(ConnCtx {
                hcm: hcm.clone(),
                clusters: shared.clusters.clone(),
                routes: shared.routes.clone(),
                peer,
                local,
                original_dst: original,
                source: shared.source.clone(),
                peer_principal: tls.as_ref().and_then(|t| t.sans.identity()).map(Arc::from),
                tls,
                inbound: l.inbound,
                outbound: l.outbound,
                sni: info.sni.clone(),
            });
            match down {
                Either::Plain(io) => crate::l7::server::serve(io, ctx, drain).await,
                Either::Tls(s) => crate::l7::server::serve(s, ctx, drain).await,
            }
        }
    }
}

enum Either {
    Plain(Prefixed<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Prefixed<TcpStream>>>),
}

/// Reads until the detector decides (TLS hello, h2 preface, HTTP/1 line, or other).
async fn inspect(stream: &mut TcpStream, buf: &mut BytesMut, info: &mut ConnInfo) -> std::io::Result<()> {
    let mut detector = detect::Detector::default();
    loop {
        match detector.feed(buf) {
            Detected::NeedMore if buf.len() < detect::MAX_PEEK => {}
            Detected::NeedMore => return Ok(()),
            Detected::Tls(hello) => {
                info.transport = "tls";
                info.sni = hello.sni;
                info.alpn = hello.alpn;
                return Ok(());
            }
            Detected::Plaintext(http) => {
                if let Some(kind) = http {
                    info.alpn = vec![kind.alpn().to_string()];
                }
                return Ok(());
            }
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Ok(());
        }
    }
}
