//! mTLS: rustls contexts for listeners (termination) and clusters (origination), SPIFFE SAN
//! verification, and the certificate sources (inline, watched files, SDS) behind them.
//!
//! Istio specifics live here too: the ALPN rules that land connections on Istio's filter
//! chains, and the `x-forwarded-client-cert` value.

pub mod context;
pub mod files;
pub mod handshake_error;
pub mod material;
pub mod san;
pub mod sds;
pub mod secrets;
pub mod stream;
pub mod validation;
pub mod verify;

use std::sync::OnceLock;

use rustls::crypto::CryptoProvider;

/// The crypto provider every context uses (ring, as the control-plane client does).
pub fn provider() -> &'static CryptoProvider {
    static P: OnceLock<CryptoProvider> = OnceLock::new();
    P.get_or_init(rustls::crypto::ring::default_provider)
}
