//! The builder: the validated model (`config`, pure data) → what runs. It reads certificate
//! files, owns the secret registry's writes and builds the rustls contexts, so conversion stays
//! a pure function and everything with side effects happens here, once, before a config is
//! accepted: a bad certificate fails start-up or NACKs its resource, and nothing is applied
//! half-built.

use std::sync::Arc;

use crate::config::{Bootstrap, Cluster, ConfigError, Listener};
use crate::tls::secrets::Slot;

/// A cluster with its TLS contexts.
pub fn cluster(c: &Arc<Cluster>) -> Result<crate::cluster::Ready, ConfigError> {
    Ok(crate::cluster::Ready { config: c.clone(), transport: c.transport.try_map(crate::tls::build::upstream)? })
}

/// A listener with its chains' TLS contexts.
pub fn listener(l: &Arc<Listener>) -> Result<Arc<crate::listener::Ready>, ConfigError> {
    let chain = |c: &Arc<crate::config::FilterChain>| -> Result<crate::listener::ReadyChain, ConfigError> {
        let server_tls = c.tls.as_deref().map(crate::tls::build::server).transpose()?;
        Ok(crate::listener::ReadyChain { config: c.clone(), server_tls })
    };
    Ok(Arc::new(crate::listener::Ready {
        config: l.clone(),
        chains: l.filter_chains.iter().map(chain).collect::<Result<_, _>>()?,
        default_chain: l.default_filter_chain.as_ref().map(chain).transpose()?,
    }))
}

/// Everything a static bootstrap runs: built together, applied together.
pub struct Snapshot {
    /// The config it was built from.
    pub bootstrap: Arc<Bootstrap>,
    /// `static_resources.secrets`: held so their slots stay registered.
    pub secrets: Vec<Arc<Slot>>,
    /// Clusters, in file order.
    pub clusters: Vec<crate::cluster::Ready>,
    /// Listeners, in file order.
    pub listeners: Vec<Arc<crate::listener::Ready>>,
    /// TLS to the control plane.
    pub xds_tls: Option<crate::tls::build::XdsTls>,
}

/// Builds a bootstrap: static secrets first (contexts may name them), then clusters and
/// listeners.
pub fn snapshot(b: Bootstrap) -> Result<Snapshot, ConfigError> {
    let secrets = crate::tls::build::static_secrets(&b.secrets)?;
    let clusters = b.clusters.iter().map(cluster).collect::<Result<_, _>>()?;
    let listeners = b.listeners.iter().map(listener).collect::<Result<_, _>>()?;
    let xds_tls = b.dynamic.as_ref().and_then(|d| d.tls.as_ref()).map(crate::tls::build::xds_tls).transpose()?;
    Ok(Snapshot { bootstrap: Arc::new(b), secrets, clusters, listeners, xds_tls })
}
