//! One vocabulary for what goes wrong on the data path, TCP, HTTP and TLS alike: which side
//! failed, whether a retry could help, the Envoy response flag it maps to, and a short
//! reason that logs and metrics share. Modelled on Pingora's `ErrorType`/`ErrorSource` and
//! linkerd2-proxy's error classification: classify once where the error happens, then every
//! consumer (local reply, access log, metric, outlier detector) reads the same answer.

use std::io;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (it went away, sent garbage).
    Downstream,
    /// The upstream host or the path to it.
    Upstream,
    /// A TLS handshake (either direction).
    Tls,
    /// The configuration in force (no route, no cluster).
    Config,
}

impl Side {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::Tls => "tls",
            Side::Config => "config",
        }
    }
}

/// Envoy response flags this proxy sets (access logs, `response_flags` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// No route matched.
    NoRoute,
    /// The route's cluster does not exist.
    NoCluster,
    /// No healthy host.
    NoHealthyUpstream,
    /// Connect failed.
    UpstreamConnectFailure,
    /// Circuit breaker overflow.
    Overflow,
    /// Upstream reset/closed before responding.
    UpstreamReset,
    /// The upstream reset the HTTP/2 stream (`UR`), e.g. `REFUSED_STREAM`.
    UpstreamRemoteReset,
    /// The overload manager refused the request (`OL`).
    Overloaded,
    /// Route timeout.
    UpstreamTimeout,
    /// Retries were exhausted and the last try failed.
    RetryLimitExceeded,
    /// Downstream closed before the response finished.
    DownstreamTerminated,
    /// A TCP connection closed by the idle timeout (`SI`).
    StreamIdleTimeout,
    /// The fault filter delayed the request (`DI`).
    DelayInjected,
    /// The fault filter aborted the request (`FI`).
    FaultInjected,
    /// A local rate limit refused the request (`RL`).
    RateLimited,
    /// The upstream spoke broken HTTP: an unparsable response, or a body cut short of its
    /// length (`UPE`).
    UpstreamProtocolError,
    /// The client's request body was malformed (a bad chunk) (`DPE`).
    DownstreamProtocolError,
}

impl Flag {
    /// Envoy's short code.
    pub fn code(self) -> &'static str {
        match self {
            Flag::NoRoute => "NR",
            Flag::NoCluster => "NC",
            Flag::NoHealthyUpstream => "UH",
            Flag::UpstreamConnectFailure => "UF",
            Flag::Overflow => "UO",
            Flag::UpstreamReset => "UC",
            Flag::UpstreamRemoteReset => "UR",
            Flag::Overloaded => "OL",
            Flag::UpstreamTimeout => "UT",
            Flag::RetryLimitExceeded => "URX",
            Flag::DownstreamTerminated => "DC",
            Flag::StreamIdleTimeout => "SI",
            Flag::DelayInjected => "DI",
            Flag::FaultInjected => "FI",
            Flag::RateLimited => "RL",
            Flag::UpstreamProtocolError => "UPE",
            Flag::DownstreamProtocolError => "DPE",
        }
    }

    /// The side the flag blames.
    pub fn side(self) -> Side {
        match self {
            Flag::NoRoute | Flag::NoCluster | Flag::DelayInjected | Flag::FaultInjected | Flag::RateLimited => {
                Side::Config
            }
            Flag::DownstreamTerminated | Flag::DownstreamProtocolError => Side::Downstream,
            _ => Side::Upstream,
        }
    }

    /// Whether another try (another host, later) could succeed; the retry policy still
    /// decides whether one is made.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Flag::NoHealthyUpstream
                | Flag::UpstreamConnectFailure
                | Flag::UpstreamReset
                | Flag::UpstreamRemoteReset
                | Flag::UpstreamTimeout
        )
    }
}

/// Why a TLS handshake failed: a fixed set, so `isthmus_tls_handshake_errors_total{reason}`
/// stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The certificate or trust bundle (SDS) has not arrived.
    #[error("no_secret")]
    NoSecret,
    /// No TLS context for this host.
    #[error("no_context")]
    NoContext,
    /// The handshake did not finish in time.
    #[error("timeout")]
    Timeout,
    /// The client presented no certificate where one is required.
    #[error("no_client_cert")]
    NoClientCert,
    /// The peer's chain does not lead to a trusted root.
    #[error("unknown_ca")]
    UnknownCa,
    /// The peer's certificate has expired.
    #[error("expired")]
    Expired,
    /// The peer's subject alt names match no configured matcher.
    #[error("san_mismatch")]
    SanMismatch,
    /// Any other certificate problem.
    #[error("bad_cert")]
    BadCert,
    /// The peer sent an alert.
    #[error("peer_alert")]
    PeerAlert,
    /// No application protocol in common.
    #[error("no_alpn")]
    NoAlpn,
    /// The transport failed during the handshake.
    #[error("io")]
    Io,
    /// Anything else rustls reported.
    #[error("other")]
    Other,
}

impl TlsFailure {
    /// Metric label and log reason.
    pub fn reason(self) -> &'static str {
        match self {
            TlsFailure::NoSecret => "no_secret",
            TlsFailure::NoContext => "no_context",
            TlsFailure::Timeout => "timeout",
            TlsFailure::NoClientCert => "no_client_cert",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::Expired => "expired",
            TlsFailure::SanMismatch => "san_mismatch",
            TlsFailure::BadCert => "bad_cert",
            TlsFailure::PeerAlert => "peer_alert",
            TlsFailure::NoAlpn => "no_alpn",
            TlsFailure::Io => "io",
            TlsFailure::Other => "other",
        }
    }
}

/// A classified data-path failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} {reason}", side.label())]
pub struct ProxyError {
    /// Which side failed.
    pub side: Side,
    /// The Envoy flag, when one applies.
    pub flag: Option<Flag>,
    /// Whether another try could succeed.
    pub retryable: bool,
    /// Short reason (metric label, log field).
    pub reason: &'static str,
}

impl From<Flag> for ProxyError {
    fn from(flag: Flag) -> Self {
        ProxyError { side: flag.side(), flag: Some(flag), retryable: flag.retryable(), reason: flag.code() }
    }
}

impl From<TlsFailure> for ProxyError {
    fn from(t: TlsFailure) -> Self {
        let retryable = !matches!(t, TlsFailure::SanMismatch | TlsFailure::UnknownCa | TlsFailure::NoContext);
        ProxyError { side: Side::Tls, flag: Some(Flag::UpstreamConnectFailure), retryable, reason: t.reason() }
    }
}

impl ProxyError {
    /// An I/O error while moving bytes from or to `side`: a reset or a broken pipe is the
    /// peer closing abruptly (an ordinary end for a TCP proxy), anything else is reported.
    pub fn io(side: Side, e: &io::Error) -> Self {
        let reason = match e.kind() {
            io::ErrorKind::ConnectionReset => "reset",
            io::ErrorKind::BrokenPipe => "broken_pipe",
            io::ErrorKind::ConnectionAborted => "aborted",
            io::ErrorKind::TimedOut => "timeout",
            _ => "io",
        };
        let flag = match side {
            Side::Downstream => Flag::DownstreamTerminated,
            _ => Flag::UpstreamReset,
        };
        ProxyError { side, flag: Some(flag), retryable: false, reason }
    }

    /// Whether this is only the peer closing abruptly.
    pub fn is_close(&self) -> bool {
        matches!(self.reason, "reset" | "broken_pipe" | "aborted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_classify_once() {
        let e = ProxyError::from(Flag::UpstreamConnectFailure);
        assert_eq!((e.side, e.retryable, e.reason), (Side::Upstream, true, "UF"));
        let e = ProxyError::from(Flag::NoRoute);
        assert_eq!((e.side, e.retryable), (Side::Config, false));
        let e = ProxyError::from(TlsFailure::SanMismatch);
        assert_eq!(
            (e.side, e.retryable, e.reason, e.flag),
            (Side::Tls, false, "san_mismatch", Some(Flag::UpstreamConnectFailure))
        );
        let e = ProxyError::io(Side::Downstream, &io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(e.is_close() && e.flag == Some(Flag::DownstreamTerminated));
        assert_eq!(e.to_string(), "downstream reset");
    }
}
