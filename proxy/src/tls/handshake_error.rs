//! Why a handshake failed, as a small fixed set of reasons for metrics and logs
//! (`isthmus_tls_handshake_errors_total{side, reason}`).

use rustls::{CertificateError, Error};

use super::verify::SanMismatch;
use crate::error::TlsFailure;

/// Classifies the error a tokio-rustls handshake returned.
pub fn reason(e: &std::io::Error) -> TlsFailure {
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return TlsFailure::Io;
    };
    match inner {
        Error::NoCertificatesPresented => TlsFailure::NoClientCert,
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => TlsFailure::UnknownCa,
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            TlsFailure::Expired
        }
        Error::InvalidCertificate(CertificateError::Other(o)) if o.0.downcast_ref::<SanMismatch>().is_some() => {
            TlsFailure::SanMismatch
        }
        Error::InvalidCertificate(_) => TlsFailure::BadCert,
        Error::AlertReceived(_) => TlsFailure::PeerAlert,
        Error::NoApplicationProtocol => TlsFailure::NoAlpn,
        Error::General(m) if m.starts_with("no trust bundle") => TlsFailure::NoSecret,
        _ => TlsFailure::Other,
    }
}

/// Counts one failed handshake.
pub fn count(side: &'static str, reason: TlsFailure) {
    metrics::counter!("isthmus_tls_handshake_errors_total", "side" => side, "reason" => reason.reason()).increment(1);
}
