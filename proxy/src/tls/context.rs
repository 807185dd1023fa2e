//! TLS contexts built from `DownstreamTlsContext` / `UpstreamTlsContext`. Each holds rustls
//! configs built once; certificates and roots are read from their slots per handshake, so
//! rotation never rebuilds a context.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};

use super::handshake_error;
use super::san::Sans;
use super::secrets::Slot;
use super::validation::Checks;
use super::verify::{ClientVerifier, ServerVerifier};
use crate::error::TlsFailure;

pub use crate::config::tls::Versions;

impl Versions {
    fn list(self) -> Vec<&'static SupportedProtocolVersion> {
        let mut v = Vec::new();
        if self.tls13 {
            v.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            v.push(&rustls::version::TLS12);
        }
        v
    }
}

/// What `common_tls_context` says.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// The certificate to present (first of `tls_certificates` / SDS configs).
    pub cert: Option<Arc<Slot>>,
    /// Peer checks; `None` = no validation context.
    pub checks: Option<Checks>,
    /// `alpn_protocols`.
    pub alpn: Vec<String>,
    /// `tls_params`.
    pub versions: Versions,
}

/// Why a TLS context could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ContextError(String);

/// What the handshake learned about the downstream peer.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The client certificate's SANs (empty without one).
    pub sans: Sans,
    /// SHA-256 of the client leaf, hex (`x-forwarded-client-cert` `Hash=`).
    pub cert_hash: Option<String>,
    /// Our own certificate's URI SAN (`By=`).
    pub local_uri: Option<String>,
    /// Negotiated ALPN.
    pub alpn: Option<String>,
    /// The client certificate's subject, RFC 2253 (most specific RDN first), as XFCC's
    /// `Subject=` carries it.
    pub subject: String,
    /// The client leaf, DER (XFCC's `Cert=` is built from it when a listener asks).
    pub leaf_der: Option<Arc<[u8]>>,
}

#[derive(Debug)]
struct ServerResolver(Arc<Slot>);

impl ResolvesServerCert for ServerResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.cert().map(|c| c.key.clone())
    }
}

#[derive(Debug)]
struct ClientResolver(Option<Arc<Slot>>);

impl ResolvesClientCert for ClientResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.as_ref().and_then(|s| s.cert()).map(|c| c.key.clone())
    }
    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

/// ALPN tokens Isthmus never negotiates: `istio-peer-exchange` announces Istio's TCP metadata
/// exchange, which Isthmus does not speak.
fn negotiable(alpn: &[String]) -> Vec<Vec<u8>> {
    alpn.iter().filter(|p| *p != "istio-peer-exchange").map(|p| p.as_bytes().to_vec()).collect()
}

/// A filter chain's TLS termination.
pub struct ServerTls {
    common: Common,
    /// With the chain's ALPN list.
    with_alpn: Arc<ServerConfig>,
    /// Without ALPN: used when the client's offer shares nothing with the list, so the
    /// handshake carries on without ALPN as Envoy (BoringSSL) does; rustls would abort.
    without_alpn: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("common", &self.common).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds the context; `require_client` needs a validation context.
    pub fn new(common: Common, require_client: bool) -> Result<ServerTls, ContextError> {
        let Some(cert) = common.cert.clone() else {
            return Err(ContextError("a certificate is required to terminate TLS".into()));
        };
        let build = |alpn: Vec<Vec<u8>>| -> Result<Arc<ServerConfig>, ContextError> {
            let b = ServerConfig::builder_with_provider(super::provider_arc())
                .with_protocol_versions(&common.versions.list())
                .map_err(|e| ContextError(e.to_string()))?;
            let b = match &common.checks {
                Some(checks) => b.with_client_cert_verifier(Arc::new(ClientVerifier {
                    checks: checks.clone(),
                    required: require_client,
                })),
                None => b.with_no_client_auth(),
            };
            let mut cfg = b.with_cert_resolver(Arc::new(ServerResolver(cert.clone())));
            cfg.alpn_protocols = alpn;
            // No resumption: a resumed session would skip verification against roots that
            // rotated since (Envoy rebuilds its SSL_CTX on every secret update for the same
            // reason). Mesh connections are pooled, so full handshakes are rare.
            cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            cfg.send_tls13_tickets = 0;
            Ok(Arc::new(cfg))
        };
        Ok(ServerTls { with_alpn: build(negotiable(&common.alpn))?, without_alpn: build(Vec::new())?, common })
    }

    /// Names of the secrets this context waits for (SDS not yet delivered): a listener
    /// warms until they arrive, as Envoy's does.
    pub fn pending_secrets(&self) -> Vec<String> {
        let cert = self.common.cert.iter();
        let roots = self.common.checks.iter().map(|c| &c.slot);
        cert.chain(roots).filter(|s| !s.is_ready()).map(|s| s.name.clone()).collect()
    }

    /// Terminates TLS on `io`. The ClientHello is read first (rustls' lazy acceptor) so the
    /// configuration can follow the client's ALPN offer.
    pub async fn accept<IO>(&self, io: IO) -> Result<(tokio_rustls::server::TlsStream<IO>, PeerInfo), TlsFailure>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(own) = self.common.cert.as_ref().and_then(|s| s.cert()) else {
            handshake_error::count("downstream", TlsFailure::NoSecret);
            return Err(TlsFailure::NoSecret);
        };
        let fail = |e: std::io::Error| {
            let reason = handshake_error::reason(&e);
            handshake_error::count("downstream", reason);
            tracing::debug!(error = %e, reason = reason.reason(), "downstream TLS handshake failed");
            reason
        };
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await.map_err(fail)?;
        let overlap = start.client_hello().alpn().is_some_and(|mut offered| {
            offered.any(|o| self.with_alpn.alpn_protocols.iter().any(|p| p.as_slice() == o))
        });
        let cfg = if overlap { &self.with_alpn } else { &self.without_alpn };
        match start.into_stream(cfg.clone()).await {
            Ok(s) => {
                metrics::counter!("isthmus_tls_handshakes_total", "side" => "downstream").increment(1);
                let (_, conn) = s.get_ref();
                let leaf = conn.peer_certificates().and_then(|c| c.first());
                let info = PeerInfo {
                    sans: leaf.map(|c| Sans::of_der(c)).unwrap_or_default(),
                    cert_hash: leaf.map(|c| hex(ring::digest::digest(&ring::digest::SHA256, c).as_ref())),
                    local_uri: own.sans.identity().map(str::to_string),
                    alpn: conn.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned()),
                    subject: leaf.map(|c| super::san::subject_rfc2253(c)).unwrap_or_default(),
                    leaf_der: leaf.map(|c| Arc::from(c.as_ref())),
                };
                Ok((s, info))
            }
            Err(e) => Err(fail(e)),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What an upstream connection carries, which decides the ALPN offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// tcp_proxy.
    Tcp,
    /// HTTP/1.1 pool.
    Http1,
    /// HTTP/2 pool.
    Http2,
}

/// A cluster's TLS origination.
pub struct UpstreamTls {
    common: Common,
    /// `sni`; empty = no SNI sent.
    pub sni: Option<String>,
    configs: [OnceLock<Arc<ClientConfig>>; 3],
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls").field("common", &self.common).field("sni", &self.sni).finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Builds the context (configs per purpose are made on first use).
    pub fn new(common: Common, sni: Option<String>) -> Result<UpstreamTls, ContextError> {
        if let Some(s) = &sni {
            rustls::pki_types::ServerName::try_from(s.as_str())
                .map_err(|e| ContextError(format!("sni \"{s}\" is not a valid server name: {e}")))?;
        }
        // Fail now rather than on the first connection.
        ClientConfig::builder_with_provider(super::provider_arc())
            .with_protocol_versions(&common.versions.list())
            .map_err(|e| ContextError(e.to_string()))?;
        Ok(UpstreamTls { common, sni, configs: Default::default() })
    }

    /// The ALPN offer. Istio's lists (they contain `istio`) follow the `istio.alpn` filter:
    /// `istio-http/1.1, istio, http/1.1` for HTTP/1.1, `istio-h2, istio, h2` for HTTP/2 and
    /// `istio` for TCP — never `istio-peer-exchange`, whose metadata exchange Isthmus does not
    /// speak. Otherwise the configured list, or the pool's protocol when none is configured.
    pub fn alpn(&self, purpose: Purpose) -> Vec<Vec<u8>> {
        let istio = self.common.alpn.iter().any(|p| p == "istio");
        let list: Vec<&str> = match (istio, purpose) {
            (true, Purpose::Tcp) => vec!["istio"],
            (true, Purpose::Http1) => vec!["istio-http/1.1", "istio", "http/1.1"],
            (true, Purpose::Http2) => vec!["istio-h2", "istio", "h2"],
            (false, _) if !self.common.alpn.is_empty() => {
                return negotiable(&self.common.alpn);
            }
            (false, Purpose::Tcp) => vec![],
            (false, Purpose::Http1) => vec!["http/1.1"],
            (false, Purpose::Http2) => vec!["h2"],
        };
        list.into_iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    fn config(&self, purpose: Purpose) -> Result<Arc<ClientConfig>, TlsFailure> {
        let slot = &self.configs[purpose as usize];
        if let Some(c) = slot.get() {
            return Ok(c.clone());
        }
        let mut cfg = ClientConfig::builder_with_provider(super::provider_arc())
            .with_protocol_versions(&self.common.versions.list())
            .map_err(|_| TlsFailure::Other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier(self.common.checks.clone())))
            .with_client_cert_resolver(Arc::new(ClientResolver(self.common.cert.clone())));
        cfg.alpn_protocols = self.alpn(purpose);
        cfg.enable_sni = self.sni.is_some();
        // See ServerTls::new: resumption would bypass a rotated trust bundle.
        cfg.resumption = rustls::client::Resumption::disabled();
        let cfg = Arc::new(cfg);
        let _ = slot.set(cfg.clone());
        Ok(cfg)
    }

    /// Originates TLS on a connected socket to `addr`. The handshake gets `timeout` (the
    /// cluster's `connect_timeout`: Envoy counts a connection as made once TLS is up).
    pub async fn connect<IO>(
        &self,
        io: IO,
        addr: SocketAddr,
        purpose: Purpose,
        timeout: std::time::Duration,
    ) -> Result<tokio_rustls::client::TlsStream<IO>, TlsFailure>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        if self.common.cert.as_ref().is_some_and(|s| s.cert().is_none())
            || self.common.checks.as_ref().is_some_and(|c| c.slot.validation().is_none())
        {
            handshake_error::count("upstream", TlsFailure::NoSecret);
            return Err(TlsFailure::NoSecret);
        }
        let cfg = self.config(purpose)?;
        let name = match &self.sni {
            Some(s) => rustls::pki_types::ServerName::try_from(s.clone()).map_err(|_| TlsFailure::Other)?,
            None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
        };
        let Ok(done) = tokio::time::timeout(timeout, tokio_rustls::TlsConnector::from(cfg).connect(name, io)).await
        else {
            handshake_error::count("upstream", TlsFailure::Timeout);
            return Err(TlsFailure::Timeout);
        };
        match done {
            Ok(s) => {
                metrics::counter!("isthmus_tls_handshakes_total", "side" => "upstream").increment(1);
                Ok(s)
            }
            Err(e) => {
                let reason = handshake_error::reason(&e);
                handshake_error::count("upstream", reason);
                tracing::debug!(upstream = %addr, error = %e, reason = reason.reason(), "upstream TLS handshake failed");
                Err(reason)
            }
        }
    }
}
