//! Why a handshake failed, as a small fixed set of reasons for metrics and logs
//! (`isthmus_tls_handshake_errors_total{side, reason}`).

use rustls::{CertificateError, Error};

use super::verify::SanMismatch;

/// Classifies the error a tokio-rustls handshake returned.
pub fn reason(e: &std::io::Error) -> &'static str {
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return "io";
    };
    match inner {
        Error::NoCertificatesPresented => "no_client_cert",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_ca",
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => "expired",
        Error::InvalidCertificate(CertificateError::Other(o)) if o.0.downcast_ref::<SanMismatch>().is_some() => {
            "san_mismatch"
        }
        Error::InvalidCertificate(_) => "bad_cert",
        Error::AlertReceived(_) => "peer_alert",
        Error::NoApplicationProtocol => "no_alpn",
        Error::General(m) if m.starts_with("no trust bundle") => "no_secret",
        _ => "other",
    }
}

/// Counts one failed handshake.
pub fn count(side: &'static str, reason: &'static str) {
    metrics::counter!("isthmus_tls_handshake_errors_total", "side" => side, "reason" => reason).increment(1);
}
