//! mTLS: rustls contexts for listeners (termination) and clusters (origination), SPIFFE SAN
//! verification, and the certificate sources (inline, watched files, SDS) behind them.
//!
//! Istio specifics live here too: the ALPN rules that land connections on Istio's filter
//! chains (`x-forwarded-client-cert` is built in `l7::xfcc` from what the handshake learned).

pub mod build;
pub mod context;
pub mod files;
pub mod handshake_error;
pub mod material;
pub mod san;
pub mod secrets;
pub mod stream;
pub mod validation;
pub mod verify;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The crypto provider every context uses (ring, as the control-plane client does), shared.
fn shared() -> &'static Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The provider, for its algorithm tables.
pub fn provider() -> &'static CryptoProvider {
    shared()
}

/// The provider as an `Arc`, as rustls' config builders take it.
pub fn provider_arc() -> Arc<CryptoProvider> {
    shared().clone()
}
