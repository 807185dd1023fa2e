//! Certificates and trust bundles parsed from PEM, checked before they may serve: a key that
//! does not belong to its certificate, an expired leaf or a file without PEM is refused here,
//! so a bad rotation never replaces good material.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};
use rustls::sign::CertifiedKey;

use super::san::Sans;

/// Why PEM material was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MaterialError {
    /// No `CERTIFICATE` block.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// A block that does not parse.
    #[error("cannot parse PEM: {0}")]
    BadPem(String),
    /// No private key block.
    #[error("holds no PEM private key")]
    NoKey,
    /// A key type rustls cannot sign with.
    #[error("unsupported private key: {0}")]
    BadKey(String),
    /// The key is not the certificate's.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The leaf certificate cannot be read.
    #[error("cannot parse the certificate: {0}")]
    BadCertificate(String),
    /// `not_after` is in the past.
    #[error("the certificate expired at {0} (unix seconds)")]
    Expired(u64),
    /// A trust anchor that webpki refuses.
    #[error("cannot use CA certificate #{0} as a trust anchor: {1}")]
    BadAnchor(usize, String),
}

/// A serving identity: key, chain, and what peers will see of it.
#[derive(Debug)]
pub struct CertMaterial {
    /// What rustls presents.
    pub key: Arc<CertifiedKey>,
    /// The leaf's SANs (the `By=` of `x-forwarded-client-cert`).
    pub sans: Sans,
    /// Leaf `not_after`, unix seconds (the expiry gauge).
    pub not_after: u64,
    /// Leaf serial in hex (logs).
    pub serial: String,
}

/// A trust bundle (one or more roots: both verify during a root rotation).
#[derive(Debug)]
pub struct Roots {
    /// The anchors webpki verifies against.
    pub anchors: Vec<TrustAnchor<'static>>,
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let list = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MaterialError::BadPem(e.to_string()))?;
    if list.is_empty() {
        return Err(MaterialError::NoCertificate);
    }
    Ok(list)
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

impl CertMaterial {
    /// Parses a chain (leaf first) and its key, refusing mismatched, expired or unparsable
    /// material.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertMaterial, MaterialError> {
        let chain = certs(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => MaterialError::NoKey,
            other => MaterialError::BadPem(other.to_string()),
        })?;
        let signing =
            super::provider().key_provider.load_private_key(key).map_err(|e| MaterialError::BadKey(e.to_string()))?;
        let leaf_der = chain.first().cloned().ok_or(MaterialError::NoCertificate)?;
        let (_, leaf) =
            x509_parser::parse_x509_certificate(&leaf_der).map_err(|e| MaterialError::BadCertificate(e.to_string()))?;
        let not_after = u64::try_from(leaf.validity().not_after.timestamp()).unwrap_or(0);
        if not_after < now_unix() {
            return Err(MaterialError::Expired(not_after));
        }
        let serial = leaf.raw_serial_as_string().replace(':', "");
        let sans = Sans::of(&leaf);
        let key = CertifiedKey::new(chain, signing);
        key.keys_match().map_err(|_| MaterialError::KeyMismatch)?;
        Ok(CertMaterial { key: Arc::new(key), sans, not_after, serial })
    }

    /// Seconds until the leaf expires (negative once expired).
    pub fn expires_in(&self) -> f64 {
        self.not_after as f64 - now_unix() as f64
    }
}

impl Roots {
    /// Parses a bundle of one or more CA certificates.
    pub fn from_pem(pem: &[u8]) -> Result<Roots, MaterialError> {
        let anchors = certs(pem)?
            .iter()
            .enumerate()
            .map(|(i, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| MaterialError::BadAnchor(i, format!("{e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Roots { anchors })
    }
}
