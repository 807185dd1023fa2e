//! The ADS client: connects (TCP or Unix socket), runs one stream at a time through the
//! [`Engine`], reconnects with jittered exponential back-off, and takes subscription changes
//! from any task.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn, Instrument};

use crate::engine::{Engine, Mode, Outbound};
use crate::handler::Handler;
use crate::protos::envoy::config::core::v3::Node;
use crate::protos::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient as AdsClient;
use crate::protos::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use crate::protos::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient as SdsClient;

/// Where the control plane is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port` (plaintext gRPC over TCP).
    Tcp(String),
    /// A Unix socket path (istio-agent's `./etc/istio/proxy/XDS`).
    Unix(PathBuf),
    /// gRPC over TLS (rustls): `https://host:port`, verified against `ca_pem` as `server_name`,
    /// optionally presenting a client certificate (mTLS to istiod:15012 and the like).
    Tls {
        /// `https://host:port`.
        uri: String,
        /// Trusted roots, PEM.
        ca_pem: Vec<u8>,
        /// Name the server certificate must carry (SNI and verification).
        server_name: String,
        /// Client certificate chain and key, PEM.
        identity: Option<(Vec<u8>, Vec<u8>)>,
    },
}

/// Reconnect pacing: full-jitter exponential from `base` to `max`, reset after a response.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay (Envoy: 500 ms).
    pub base: Duration,
    /// Cap (Envoy: 30 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

/// How the stream's connection is kept honest and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// HTTP/2 PING interval: a control plane that stops answering without closing (a frozen
    /// process, a silently dropped path) is noticed within `interval + timeout` and the
    /// stream reconnects, instead of serving stale config forever. `None` disables.
    pub keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered.
    pub keepalive_timeout: Duration,
    /// TCP keepalive idle time (`SO_KEEPALIVE`), for paths where even PINGs cannot be sent.
    pub tcp_keepalive: Option<Duration>,
    /// Largest message accepted from the control plane; a larger one ends the stream.
    pub max_message_size: usize,
}

impl Default for Transport {
    /// PING every 30 s, 10 s to answer; TCP keepalive after 300 s idle (Istio's bootstrap
    /// value); 64 MiB messages (a 100,000-endpoint EDS push is about 5 MB).
    fn default() -> Self {
        Transport {
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Some(Duration::from_secs(300)),
            max_message_size: 64 * 1024 * 1024,
        }
    }
}

/// Everything the client needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Control plane address.
    pub target: Target,
    /// SotW or Delta.
    pub mode: Mode,
    /// Sent on the first request of every stream.
    pub node: Node,
    /// Does-not-exist timer for named resources (Envoy default 15 s; None disables).
    pub initial_fetch_timeout: Option<Duration>,
    /// Extra per-call metadata, e.g. `("authorization", "Bearer …")`.
    pub metadata: Vec<(String, String)>,
    /// Reconnect pacing.
    pub backoff: Backoff,
    /// Which gRPC service to call.
    pub service: Service,
    /// Keepalive and message bounds.
    pub transport: Transport,
}

/// The gRPC service a stream calls. The messages are the same; the method differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Service {
    /// `AggregatedDiscoveryService` (ADS: every type on one stream).
    #[default]
    Ads,
    /// `SecretDiscoveryService` (`StreamSecrets`/`DeltaSecrets`): what istio-agent's SDS
    /// socket serves.
    Sds,
}

enum Command {
    Subscribe(String, BTreeSet<String>),
    Shutdown,
}

/// A handle to the running client. Cheap to clone; dropping every handle stops it.
#[derive(Clone)]
pub struct XdsClient {
    tx: mpsc::UnboundedSender<Command>,
}

impl XdsClient {
    /// Starts the client task on the current runtime.
    pub fn start(cfg: ClientConfig, handler: Arc<dyn Handler>) -> XdsClient {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Engine::new(cfg.mode, cfg.node.clone(), handler, cfg.initial_fetch_timeout);
        let span = tracing::info_span!("xds", target = ?cfg.target, mode = ?cfg.mode);
        tokio::spawn(run(cfg, engine, rx).instrument(span));
        XdsClient { tx }
    }

    /// Subscribes to a wildcard type (LDS, CDS): everything the server has for this node.
    pub fn watch_all(&self, type_url: &str) {
        let _ = self.tx.send(Command::Subscribe(type_url.to_string(), BTreeSet::new()));
    }

    /// Sets the names of a named type (RDS, EDS, SDS) to exactly `names`; names dropped are
    /// unsubscribed and reported to the handler as removed.
    pub fn watch_names(&self, type_url: &str, names: impl IntoIterator<Item = String>) {
        let _ = self.tx.send(Command::Subscribe(type_url.to_string(), names.into_iter().collect()));
    }

    /// Resolves when the client task has ended, for tasks that live as long as the client.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Stops the client.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// How a stream ended.
enum Ended {
    /// Lost after at least one response (back-off resets).
    AfterResponse,
    /// Lost before any response (back-off grows).
    BeforeResponse,
    /// Shutdown requested.
    Shutdown,
}

async fn run(cfg: ClientConfig, mut engine: Engine, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut delay = cfg.backoff.base;
    loop {
        let ended = match connect(&cfg.target, &cfg.transport).await {
            Ok(channel) => stream(&cfg, &mut engine, &mut rx, channel).await,
            Err(e) => {
                warn!(error = %e, "cannot connect to the control plane");
                Ended::BeforeResponse
            }
        };
        engine.on_disconnect();
        metrics::gauge!("xds_connected").set(0.0);
        engine.handler().connection_changed(false);
        match ended {
            Ended::Shutdown => return,
            Ended::AfterResponse => delay = cfg.backoff.base,
            Ended::BeforeResponse => {}
        }
        let wait =
            Duration::from_millis(rand::rng().random_range(0..=u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)));
        info!(retry_in_ms = wait.as_millis() as u64, "xDS stream down; keeping last accepted config");
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                cmd = rx.recv() => match cmd {
                    Some(Command::Subscribe(t, n)) => { engine.subscribe(&t, n, false); }
                    Some(Command::Shutdown) | None => return,
                },
            }
        }
        delay = (delay * 2).min(cfg.backoff.max);
    }
}

/// Keepalive on an endpoint, as `t` says.
fn tuned(e: Endpoint, t: &Transport) -> Endpoint {
    let e = e.connect_timeout(Duration::from_secs(5)).tcp_keepalive(t.tcp_keepalive);
    match t.keepalive_interval {
        Some(i) => e.http2_keep_alive_interval(i).keep_alive_timeout(t.keepalive_timeout).keep_alive_while_idle(true),
        None => e,
    }
}

async fn connect(target: &Target, t: &Transport) -> Result<Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    match target {
        Target::Tcp(uri) => tuned(Endpoint::from_shared(uri.clone())?, t).connect().await,
        Target::Tls { uri, ca_pem, server_name, identity } => {
            let mut tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(server_name.clone());
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            tuned(Endpoint::from_shared(uri.clone())?.tls_config(tls)?, t).connect().await
        }
        Target::Unix(path) => {
            let path = path.clone();
            tuned(Endpoint::from_static("http://localhost"), t)
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let p = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                    }
                }))
                .await
        }
    }
}

/// Runs one ADS stream until it fails or shutdown.
async fn stream(
    cfg: &ClientConfig,
    engine: &mut Engine,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    channel: Channel,
) -> Ended {
    let limit = cfg.transport.max_message_size;
    let mut client = AdsClient::new(channel.clone()).max_decoding_message_size(limit);
    let mut sds = SdsClient::new(channel).max_decoding_message_size(limit);
    let service = cfg.service;
    let (sotw_tx, sotw_rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let (delta_tx, delta_rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
    let send = |o: Outbound| match o {
        Outbound::Sotw(r) => sotw_tx.send(r).is_ok(),
        Outbound::Delta(r) => delta_tx.send(r).is_ok(),
    };
    for o in engine.on_connect() {
        send(o);
    }
    let engine_mode = engine.mode();
    // Some servers (grpc-python) send response headers only with their first response, so
    // subscription changes must flow while the call is being set up, not after.
    let call = async {
        match engine_mode {
            Mode::Sotw => {
                let mut req = tonic::Request::new(UnboundedReceiverStream::new(sotw_rx));
                add_metadata(&mut req, &cfg.metadata);
                match service {
                    Service::Ads => client.stream_aggregated_resources(req).await,
                    Service::Sds => sds.stream_secrets(req).await,
                }
                .map(|r| Inbound::Sotw(r.into_inner()))
            }
            Mode::Delta => {
                let mut req = tonic::Request::new(UnboundedReceiverStream::new(delta_rx));
                add_metadata(&mut req, &cfg.metadata);
                match service {
                    Service::Ads => client.delta_aggregated_resources(req).await,
                    Service::Sds => sds.delta_secrets(req).await,
                }
                .map(|r| Inbound::Delta(r.into_inner()))
            }
        }
    };
    tokio::pin!(call);
    let mut inbound = loop {
        tokio::select! {
            r = &mut call => match r {
                Ok(i) => break i,
                Err(s) => {
                    warn!(status = %s, "ADS stream refused");
                    return Ended::BeforeResponse;
                }
            },
            cmd = rx.recv() => match cmd {
                Some(Command::Subscribe(t, n)) => {
                    if let Some(o) = engine.subscribe(&t, n, true) {
                        send(o);
                    }
                }
                Some(Command::Shutdown) | None => return Ended::Shutdown,
            },
        }
    };
    info!("xDS stream up");
    metrics::gauge!("xds_connected").set(1.0);
    engine.handler().connection_changed(true);
    let mut got_response = false;
    let mut next_timer = engine.poll_timers(Instant::now());
    loop {
        let timer = async {
            match next_timer {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = inbound.next() => match msg {
                Ok(Some(Response::Sotw(r))) => {
                    got_response = true;
                    let reply = engine.on_sotw(r);
                    send(reply);
                }
                Ok(Some(Response::Delta(r))) => {
                    got_response = true;
                    let reply = engine.on_delta(r);
                    send(reply);
                }
                Ok(None) => {
                    warn!("control plane closed the stream");
                    break;
                }
                Err(s) => {
                    warn!(status = %s, "xDS stream failed");
                    break;
                }
            },
            cmd = rx.recv() => match cmd {
                Some(Command::Subscribe(t, n)) => {
                    if let Some(o) = engine.subscribe(&t, n, true) {
                        send(o);
                    }
                }
                Some(Command::Shutdown) | None => return Ended::Shutdown,
            },
            _ = timer => {}
        }
        next_timer = engine.poll_timers(Instant::now());
    }
    if got_response {
        Ended::AfterResponse
    } else {
        Ended::BeforeResponse
    }
}

fn add_metadata<T>(req: &mut tonic::Request<T>, md: &[(String, String)]) {
    for (k, v) in md {
        match (k.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(), v.parse()) {
            (Ok(k), Ok(v)) => {
                req.metadata_mut().insert(k, v);
            }
            _ => warn!(key = %k, "skipping invalid xDS call metadata"),
        }
    }
}

enum Inbound {
    Sotw(tonic::Streaming<crate::protos::envoy::service::discovery::v3::DiscoveryResponse>),
    Delta(tonic::Streaming<crate::protos::envoy::service::discovery::v3::DeltaDiscoveryResponse>),
}

enum Response {
    Sotw(crate::protos::envoy::service::discovery::v3::DiscoveryResponse),
    Delta(crate::protos::envoy::service::discovery::v3::DeltaDiscoveryResponse),
}

impl Inbound {
    async fn next(&mut self) -> Result<Option<Response>, tonic::Status> {
        match self {
            Inbound::Sotw(s) => Ok(s.message().await?.map(Response::Sotw)),
            Inbound::Delta(s) => Ok(s.message().await?.map(Response::Delta)),
        }
    }
}
