//! Peer verification for both directions, as Istio needs it: the chain is verified against
//! the *current* roots (read per handshake, so a root rotation needs no rebuild), then the
//! peer's SANs are matched against the allow-list. The server name (SNI) is never the
//! expected identity: mesh SNIs such as `outbound_.8080_._.svc` are routing keys, not names
//! in certificates.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme};

use super::san::{self, Sans};
use super::validation::Checks;

/// The peer's certificate names no allowed SAN.
#[derive(Debug, thiserror::Error)]
#[error("peer certificate SANs {0:?} match none of the allowed subject alt names")]
pub struct SanMismatch(pub Vec<String>);

/// The trust bundle the checks refer to has not arrived (SDS) yet.
#[derive(Debug, thiserror::Error)]
#[error("no trust bundle yet in secret \"{0}\"")]
pub struct NoRoots(pub String);

fn pki_error(e: webpki::Error) -> Error {
    use webpki::Error as W;
    let c = match e {
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::CertExpired { .. } | W::InvalidCertValidity => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::CertRevoked => CertificateError::Revoked,
        W::InvalidSignatureForPublicKey | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            CertificateError::BadSignature
        }
        W::UnsupportedCriticalExtension => CertificateError::UnhandledCriticalExtension,
        W::BadDer | W::BadDerTime => CertificateError::BadEncoding,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    Error::InvalidCertificate(c)
}

/// Chain to the current roots, then SAN match.
fn verify(
    checks: &Checks,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<(), Error> {
    let Some((roots, sans)) = checks.current() else {
        return Err(Error::General(NoRoots(checks.slot.name.clone()).to_string()));
    };
    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
    let algs = super::provider().signature_verification_algorithms;
    cert.verify_for_usage(algs.all, &roots.anchors, intermediates, now, usage, None, None).map_err(pki_error)?;
    let seen = Sans::of_der(end_entity);
    if !san::allowed(&sans, &seen) {
        let mut names = seen.uri.clone();
        names.extend(seen.dns.iter().cloned());
        return Err(Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(SanMismatch(names))))));
    }
    Ok(())
}

/// The handshake-signature half of both verifiers: the provider's algorithms, whoever the
/// peer is (the two traits declare the same three methods).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &super::provider().signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &super::provider().signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            super::provider().signature_verification_algorithms.supported_schemes()
        }
    };
}

/// Verifies upstream servers. Without checks (no validation context) any certificate is
/// accepted, as Envoy does; handshake signatures are still verified.
#[derive(Debug)]
pub struct ServerVerifier(pub Option<Checks>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(c) = &self.0 {
            verify(c, end_entity, intermediates, now, webpki::KeyUsage::server_auth())?;
        }
        Ok(ServerCertVerified::assertion())
    }
    handshake_signatures!();
}

/// Verifies downstream client certificates (`require_client_certificate` makes one
/// mandatory; otherwise a presented certificate is still verified).
#[derive(Debug)]
pub struct ClientVerifier {
    /// Roots and SANs.
    pub checks: Checks,
    /// STRICT: a client without a certificate fails the handshake.
    pub required: bool,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        self.required
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        verify(&self.checks, end_entity, intermediates, now, webpki::KeyUsage::client_auth())?;
        Ok(ClientCertVerified::assertion())
    }
    handshake_signatures!();
}
