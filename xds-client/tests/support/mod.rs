//! An in-process tonic ADS server for protocol tests: every stream is handed to the test,
//! which reads the client's requests and writes responses itself.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use xds_client::protos::envoy::config::cluster::v3::Cluster;
use xds_client::protos::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_client::protos::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use xds_client::protos::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_client::protos::google::protobuf::Any;
use xds_client::{Handler, Rejected, Resource};

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One SotW stream as the test sees it.
pub struct SotwStream {
    /// The call's `authorization` metadata, if any.
    pub authorization: Option<String>,
    pub requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    pub responses: mpsc::UnboundedSender<Result<DiscoveryResponse, Status>>,
}

/// One Delta stream as the test sees it.
pub struct DeltaStream {
    pub requests: mpsc::UnboundedReceiver<DeltaDiscoveryRequest>,
    pub responses: mpsc::UnboundedSender<Result<DeltaDiscoveryResponse, Status>>,
}

struct Server {
    sotw: mpsc::UnboundedSender<SotwStream>,
    delta: mpsc::UnboundedSender<DeltaStream>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Server {
    type StreamAggregatedResourcesStream = Out<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Out<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (rq_tx, rq_rx) = mpsc::unbounded_channel();
        let (rs_tx, rs_rx) = mpsc::unbounded_channel();
        let authorization = req.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            while let Some(Ok(r)) = inbound.next().await {
                if rq_tx.send(r).is_err() {
                    break;
                }
            }
        });
        let _ = self.sotw.send(SotwStream { authorization, requests: rq_rx, responses: rs_tx });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rs_rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (rq_tx, rq_rx) = mpsc::unbounded_channel();
        let (rs_tx, rs_rx) = mpsc::unbounded_channel();
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            while let Some(Ok(r)) = inbound.next().await {
                if rq_tx.send(r).is_err() {
                    break;
                }
            }
        });
        let _ = self.delta.send(DeltaStream { requests: rq_rx, responses: rs_tx });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rs_rx))))
    }
}

/// A running test server: new streams arrive on these receivers.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub sotw: mpsc::UnboundedReceiver<SotwStream>,
    pub delta: mpsc::UnboundedReceiver<DeltaStream>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (s_tx, s_rx) = mpsc::unbounded_channel();
        let (d_tx, d_rx) = mpsc::unbounded_channel();
        serve(l, s_tx, d_tx);
        TestServer { addr, sotw: s_rx, delta: d_rx }
    }

    pub async fn next_sotw(&mut self) -> SotwStream {
        within(self.sotw.recv()).await.expect("server stopped")
    }

    pub async fn next_delta(&mut self) -> DeltaStream {
        within(self.delta.recv()).await.expect("server stopped")
    }
}

fn serve(
    l: tokio::net::TcpListener,
    sotw: mpsc::UnboundedSender<SotwStream>,
    delta: mpsc::UnboundedSender<DeltaStream>,
) -> tokio::task::JoinHandle<()> {
    let svc = AggregatedDiscoveryServiceServer::new(Server { sotw, delta });
    tokio::spawn(async move {
        let _ =
            tonic::transport::Server::builder().add_service(svc).serve_with_incoming(TcpListenerStream::new(l)).await;
    })
}

/// Serves SotW streams on an already-bound listener (for late-starting servers).
pub fn support_server_on(
    l: tokio::net::TcpListener,
    sotw: mpsc::UnboundedSender<SotwStream>,
) -> tokio::task::JoinHandle<()> {
    serve(l, sotw, mpsc::unbounded_channel().0)
}

/// Serves on a Unix socket at `path` (istio-agent's `pipe` address).
pub fn serve_unix(path: &std::path::Path) -> (mpsc::UnboundedReceiver<SotwStream>, tokio::task::JoinHandle<()>) {
    let l = tokio::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = AggregatedDiscoveryServiceServer::new(Server { sotw: tx, delta: mpsc::unbounded_channel().0 });
    let h = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(l))
            .await;
    });
    (rx, h)
}

/// Serves over TLS with `cert`/`key` (PEM), requiring a client certificate from `client_ca`.
pub async fn serve_tls(
    cert: &str,
    key: &str,
    client_ca: &str,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<SotwStream>) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = AggregatedDiscoveryServiceServer::new(Server { sotw: tx, delta: mpsc::unbounded_channel().0 });
    let tls =
        ServerTlsConfig::new().identity(Identity::from_pem(cert, key)).client_ca_root(Certificate::from_pem(client_ca));
    let server = tonic::transport::Server::builder().tls_config(tls).unwrap().add_service(svc);
    tokio::spawn(async move {
        let _ = server.serve_with_incoming(TcpListenerStream::new(l)).await;
    });
    (addr, rx)
}

/// Awaits `f` for at most 10 s.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("timed out waiting for an xDS event")
}

impl SotwStream {
    pub async fn recv(&mut self) -> DiscoveryRequest {
        within(self.requests.recv()).await.expect("stream closed")
    }
    pub fn send(&self, r: DiscoveryResponse) {
        self.responses.send(Ok(r)).unwrap();
    }
}

impl DeltaStream {
    pub async fn recv(&mut self) -> DeltaDiscoveryRequest {
        within(self.requests.recv()).await.expect("stream closed")
    }
    pub fn send(&self, r: DeltaDiscoveryResponse) {
        self.responses.send(Ok(r)).unwrap();
    }
}

/// One `apply` call: type URL, names updated, names removed.
pub type Applied = (String, Vec<String>, Vec<String>);

/// A handler that records what it is given and rejects resources named `bad…`.
#[derive(Default)]
pub struct Recorder {
    pub applied: Mutex<Vec<Applied>>,
    pub missing: Mutex<Vec<(String, String)>>,
    pub connected: Mutex<Vec<bool>>,
}

impl Handler for Recorder {
    fn apply(&self, type_url: &str, updated: Vec<Resource>, removed: Vec<String>) -> Vec<Rejected> {
        let names: Vec<String> = updated.iter().map(|r| r.name.clone()).collect();
        self.applied.lock().unwrap().push((type_url.to_string(), names.clone(), removed));
        names
            .into_iter()
            .filter(|n| n.starts_with("bad"))
            .map(|name| Rejected { name, reason: "connect_timeout: must be positive".into() })
            .collect()
    }
    fn does_not_exist(&self, type_url: &str, name: &str) {
        self.missing.lock().unwrap().push((type_url.to_string(), name.to_string()));
    }
    fn connection_changed(&self, connected: bool) {
        self.connected.lock().unwrap().push(connected);
    }
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }
}

pub fn cluster(name: &str) -> Any {
    pack(Cluster { name: name.into(), ..Default::default() })
}

pub fn cla(name: &str) -> Any {
    pack(ClusterLoadAssignment { cluster_name: name.into(), ..Default::default() })
}

/// Packs a message with its canonical type URL.
pub fn pack<T: prost::Name + prost::Message>(m: T) -> Any {
    Any { type_url: T::type_url(), value: m.encode_to_vec() }
}
