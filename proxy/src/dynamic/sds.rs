//! SDS: secrets pushed by a control plane, on the ADS stream or from their own gRPC cluster
//! (istio-agent serves `default` and `ROOTCA` on a Unix socket). Names are subscribed as
//! listeners and clusters reference them; a secret that fails the checks is NACKed with its
//! name and the previous version keeps serving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio_util::sync::CancellationToken;
use xds_client::protos::envoy::extensions::transport_sockets::tls::v3::Secret as ProtoSecret;
use xds_client::{types, ClientConfig, Handler, Mode, Rejected, Resource, XdsClient};

use super::rejection::Rejection;
use crate::config::error::Path;
use crate::config::Bootstrap;
use crate::tls::secrets::{registry, Source};

/// Applies one `Secret` resource delivered by `source`. A name nothing references any more
/// is kept for a later reference (see `Registry::named`).
pub fn apply(source: &Source, r: &Resource) -> Result<(), Rejection> {
    let what = format!("secret \"{}\"", r.name);
    let s = ProtoSecret::decode(r.resource.value.as_slice()).map_err(|e| Rejection::decode(&what, e))?;
    let path = Path::root(what);
    if s.name != r.name {
        return Err(path.err_at("name", format!("\"{}\" differs from the resource name", s.name)).into());
    }
    let spec = crate::config::convert::tls::secret(&s, &path)?;
    let content = crate::tls::build::secret(&spec)?;
    let name = spec.name;
    let slot = registry().named(source.clone(), &name);
    if let Some(want) = slot.expected().filter(|w| *w != content.kind()) {
        return Err(Rejection::Conflict(format!(
            "secret \"{name}\": is used as {want:?} but holds {:?}",
            content.kind()
        )));
    }
    slot.set(content);
    Ok(())
}

/// The handler of an SDS-only stream.
struct SdsHandler(Source);

impl Handler for SdsHandler {
    fn apply(&self, type_url: &str, updated: Vec<Resource>, removed: Vec<String>) -> Vec<Rejected> {
        for name in &removed {
            registry().forget(&self.0, name);
        }
        let mut rejected = Vec::new();
        for r in updated {
            let result = if type_url == types::SECRET {
                apply(&self.0, &r)
            } else {
                Err(Rejection::UnusedType(type_url.to_string()))
            };
            if let Err(rejection) = result {
                let reason = rejection.to_string();
                tracing::warn!(secret = %r.name, %reason, "secret rejected");
                rejected.push(Rejected { name: r.name, reason });
            }
        }
        rejected
    }
    fn does_not_exist(&self, _type_url: &str, name: &str) {
        registry().forget(&self.0, name);
        tracing::warn!(secret = name, "SDS secret does not exist; handshakes that need it fail");
    }
}

fn sds_client(b: &Bootstrap, cluster: &str) -> Option<XdsClient> {
    let target = crate::dynamic::target_for(b, cluster, None)?;
    let mut node = b.node_proto.clone();
    node.id = b.node.id.clone();
    node.cluster = b.node.cluster.clone();
    let cfg = ClientConfig {
        target,
        mode: Mode::Sotw,
        node,
        initial_fetch_timeout: Some(Duration::from_secs(15)),
        metadata: Vec::new(),
        backoff: Default::default(),
        service: xds_client::Service::Sds,
        transport: crate::dynamic::transport_for(b, cluster, None),
    };
    Some(XdsClient::start(cfg, Arc::new(SdsHandler(Source::Cluster(cluster.to_string())))))
}

/// Keeps SDS subscriptions equal to the names referenced, until `stop`.
pub async fn follow(ads: Option<XdsClient>, bootstrap: Arc<Bootstrap>, stop: CancellationToken) {
    let mut clients: HashMap<String, XdsClient> = HashMap::new();
    loop {
        for (source, names) in registry().sds_names() {
            match source {
                Source::Ads => match &ads {
                    Some(a) => a.watch_names(types::SECRET, names),
                    None => tracing::warn!(?names, "SDS over ADS is referenced but the bootstrap has no ADS"),
                },
                Source::Cluster(c) => {
                    if !clients.contains_key(&c) {
                        match sds_client(&bootstrap, &c) {
                            Some(client) => {
                                clients.insert(c.clone(), client);
                            }
                            None => {
                                tracing::warn!(cluster = %c, "SDS cluster has no usable endpoint (need an IP:port or a pipe)");
                                continue;
                            }
                        }
                    }
                    if let Some(client) = clients.get(&c) {
                        client.watch_names(types::SECRET, names);
                    }
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = registry().changed() => {}
            // Names dropped when their last listener/cluster goes away are noticed here.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    for c in clients.values() {
        c.shutdown();
    }
}
