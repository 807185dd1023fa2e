//! The proxy driven by a control plane: an `xds_client::Handler` that converts LDS, RDS, CDS
//! and EDS resources with the same `config::convert` as the bootstrap file and applies them
//! to the running listeners, route tables and clusters.
//!
//! Ordering and warming follow Envoy: a listener whose routes come from RDS starts only when
//! its route tables have arrived (or were reported missing); a replaced EDS cluster keeps its
//! endpoints until new ones arrive; readiness turns true once the first CDS and LDS are applied
//! and nothing is warming. Identical re-pushes are no-ops.

pub mod dump;
pub mod rejection;
pub mod sds;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prost::Message;
use tracing::{info, warn};
use xds_client::protos::envoy::config::cluster::v3::Cluster as ProtoCluster;
use xds_client::protos::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_client::protos::envoy::config::listener::v3::Listener as ProtoListener;
use xds_client::protos::envoy::config::route::v3::RouteConfiguration;
use xds_client::{types, ClientConfig, Handler, Mode, Rejected, Resource, Target, XdsClient};

use self::dump::DumpStore;
use self::rejection::Rejection;
use crate::cluster::ClusterManager;
use crate::config::cluster::EndpointAddress;
use crate::config::convert::{self, Resources};
use crate::config::error::Path;
use crate::config::listener::{NetworkFilter, RouteSource};
use crate::config::{Bootstrap, Discovery, Listener};
use crate::l7::routes::RouteRegistry;
use crate::listener::manager::ListenerManager;
use crate::tls::build::XdsTls;

/// What the consumer changes.
pub struct Targets {
    /// Clusters (CDS, EDS).
    pub clusters: Arc<ClusterManager>,
    /// Route tables (RDS).
    pub routes: Arc<RouteRegistry>,
    /// Listeners (LDS).
    pub listeners: Arc<ListenerManager>,
    /// Set when the first full config is applied.
    pub ready: Arc<AtomicBool>,
    /// For `/config_dump`.
    pub dump: Arc<DumpStore>,
}

/// Why xDS could not start.
#[derive(Debug, thiserror::Error)]
#[error("dynamic_resources: the xDS cluster \"{0}\" has no usable endpoint (need an IP:port or a pipe)")]
pub struct NoXdsEndpoint(String);

fn tls_target(uri: String, tls: &XdsTls) -> Target {
    Target::Tls {
        uri,
        ca_pem: tls.ca_pem.clone(),
        server_name: tls.server_name.clone(),
        identity: tls.identity.clone(),
    }
}

/// Where a gRPC config source cluster of the bootstrap is reached (first endpoint).
pub fn target_for(b: &Bootstrap, cluster: &str, tls: Option<&XdsTls>) -> Option<Target> {
    b.clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.endpoints.iter().flat_map(|l| l.endpoints.iter()).next())
        .and_then(|e| match (&e.address, tls) {
            (EndpointAddress::Pipe(p), _) => Some(Target::Unix(p.clone())),
            (EndpointAddress::Socket(a), None) => Some(Target::Tcp(format!("http://{a}"))),
            (EndpointAddress::Dns { host, port }, None) => Some(Target::Tcp(format!("http://{host}:{port}"))),
            (EndpointAddress::Socket(a), Some(tls)) => Some(tls_target(format!("https://{a}"), tls)),
            (EndpointAddress::Dns { host, port }, Some(tls)) => Some(tls_target(format!("https://{host}:{port}"), tls)),
            // An internal listener is no way to reach a control plane.
            (EndpointAddress::Internal { .. }, _) => None,
        })
}

/// The stream's keepalive and message bound: the xDS cluster's HTTP/2 `connection_keepalive`
/// and `tcp_keepalive` when it sets them, else the client's defaults (PING every 30 s, TCP
/// keepalive after 300 s); `max_receive_message_length` from `ads_config`.
pub fn transport_for(b: &Bootstrap, cluster: &str, max_message: Option<usize>) -> xds_client::Transport {
    let mut t = xds_client::Transport::default();
    if let Some(c) = b.clusters.iter().find(|c| c.name == cluster) {
        if let Some(k) = c.h2_keepalive {
            t.keepalive_interval = Some(k.interval);
            t.keepalive_timeout = k.timeout;
        }
        if let Some(time) = c.tcp_keepalive.and_then(|k| k.time) {
            t.tcp_keepalive = Some(time);
        }
    }
    if let Some(m) = max_message {
        t.max_message_size = m;
    }
    t
}

/// Starts the ADS client for the bootstrap's `dynamic_resources` (`tls`: the control-plane
/// connection's TLS, built with the bootstrap).
pub fn start(b: &Bootstrap, tls: Option<&XdsTls>, targets: Targets) -> Result<Option<XdsClient>, NoXdsEndpoint> {
    let Some(d) = &b.dynamic else { return Ok(None) };
    let target = target_for(b, &d.cluster, tls).ok_or_else(|| NoXdsEndpoint(d.cluster.clone()))?;
    let mut node = b.node_proto.clone();
    node.id = b.node.id.clone();
    node.cluster = b.node.cluster.clone();
    if node.user_agent_name.is_empty() {
        node.user_agent_name = "isthmus".into();
    }
    let cfg = ClientConfig {
        target,
        mode: if d.delta { Mode::Delta } else { Mode::Sotw },
        node,
        initial_fetch_timeout: d.initial_fetch_timeout,
        metadata: Vec::new(),
        backoff: Default::default(),
        service: Default::default(),
        transport: transport_for(b, &d.cluster, d.max_message_size),
    };
    let consumer = Arc::new(Consumer {
        client: OnceLock::new(),
        t: targets,
        state: Mutex::new(State { want_lds: d.lds, want_cds: d.cds, ..State::default() }),
    });
    let client = XdsClient::start(cfg, consumer.clone());
    let warm = consumer.clone();
    let ended = client.clone();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        // Starts listeners warming on secrets as they arrive; ends with the client.
        rt.spawn(async move {
            let mut rx = crate::tls::secrets::registry().arrived().subscribe();
            loop {
                tokio::select! {
                    _ = ended.closed() => break,
                    r = rx.changed() => if r.is_err() { break },
                }
                warm.start_warm_listeners();
                warm.check_ready();
            }
        });
    }
    let _ = consumer.client.set(client.clone());
    if d.cds {
        client.watch_all(types::CLUSTER);
    }
    if d.lds {
        client.watch_all(types::LISTENER);
    }
    consumer.check_ready();
    Ok(Some(client))
}

#[derive(Default)]
struct State {
    /// Encoded bytes of the last accepted version of each resource, for no-op detection.
    seen: HashMap<(&'static str, String), Vec<u8>>,
    /// EDS service name per EDS cluster.
    eds: HashMap<String, String>,
    /// Accepted listeners not started yet, waiting for their RDS tables.
    warming: HashMap<String, Arc<crate::listener::Ready>>,
    /// RDS names each accepted listener needs.
    rds_of: HashMap<String, BTreeSet<String>>,
    /// RDS names reported missing: listeners stop waiting for them.
    missing_routes: HashSet<String>,
    /// EDS names reported missing.
    missing_eds: HashSet<String>,
    want_lds: bool,
    want_cds: bool,
    got_lds: bool,
    got_cds: bool,
}

struct Consumer {
    client: OnceLock<XdsClient>,
    t: Targets,
    state: Mutex<State>,
}

impl Handler for Consumer {
    fn apply(&self, type_url: &str, updated: Vec<Resource>, removed: Vec<String>) -> Vec<Rejected> {
        let kind = types::short(type_url);
        let mut rejected = Vec::new();
        // Accepted clusters go in together: one map copy per response, not per cluster.
        let mut new_clusters = Vec::new();
        for r in updated {
            if self.unchanged(kind, &r) {
                continue;
            }
            let result = match type_url {
                types::CLUSTER => self.cluster(&r).map(|c| new_clusters.push(c)),
                types::ENDPOINT => self.endpoints(&r),
                types::LISTENER => self.listener(&r),
                types::ROUTE => self.route(&r),
                // Listeners warming on this secret start from the `arrived` watcher.
                types::SECRET => crate::dynamic::sds::apply(&crate::tls::secrets::Source::Ads, &r),
                _ => Err(Rejection::UnusedType(type_url.to_string())),
            };
            match result {
                Ok(()) => {
                    let type_name = type_url.rsplit('/').next().unwrap_or_default();
                    self.t.dump.accepted(kind, &r.name, &r.version, type_name, r.resource.value.clone());
                    self.lock().seen.insert((kind, r.name.clone()), r.resource.value);
                }
                Err(rejection) => {
                    let reason = rejection.to_string();
                    warn!(r#type = kind, resource = %r.name, kind = rejection.kind(), %reason, "rejected");
                    metrics::counter!("isthmus_xds_rejected_total", "type" => kind, "kind" => rejection.kind())
                        .increment(1);
                    self.t.dump.rejected(kind, &r.name, &r.version, &reason);
                    rejected.push(Rejected { name: r.name, reason });
                }
            }
        }
        self.t.clusters.upsert_many(new_clusters);
        crate::telemetry::server_stats::stats().update(kind, rejected.is_empty());
        if type_url == types::CLUSTER {
            self.t.clusters.remove_many(&removed);
        }
        for name in &removed {
            self.remove(type_url, name);
            self.t.dump.removed(kind, name);
            self.lock().seen.remove(&(kind, name.clone()));
        }
        match type_url {
            types::CLUSTER => {
                self.lock().got_cds = true;
                self.follow_eds();
            }
            types::LISTENER => {
                self.lock().got_lds = true;
                self.follow_rds();
            }
            types::ROUTE => self.start_warm_listeners(),
            _ => {}
        }
        self.check_ready();
        rejected
    }

    fn does_not_exist(&self, type_url: &str, name: &str) {
        match type_url {
            types::ROUTE => {
                self.lock().missing_routes.insert(name.to_string());
                self.start_warm_listeners();
            }
            types::ENDPOINT => {
                self.lock().missing_eds.insert(name.to_string());
            }
            types::SECRET => crate::tls::secrets::registry().forget(&crate::tls::secrets::Source::Ads, name),
            _ => {}
        }
        self.check_ready();
    }
}

impl Consumer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unchanged(&self, kind: &'static str, r: &Resource) -> bool {
        self.lock().seen.get(&(kind, r.name.clone())).is_some_and(|b| *b == r.resource.value)
    }

    fn cluster(&self, r: &Resource) -> Result<crate::cluster::Ready, Rejection> {
        let what = format!("cluster \"{}\"", r.name);
        let c = ProtoCluster::decode(r.resource.value.as_slice()).map_err(|e| Rejection::decode(&what, e))?;
        let ready = crate::build::cluster(&Arc::new(convert::cluster(&c, &Path::root(what))?))?;
        let model = &ready.config;
        let mut st = self.lock();
        match &model.discovery {
            Discovery::Eds { service_name } => {
                st.eds.insert(model.name.clone(), service_name.clone());
            }
            _ => {
                st.eds.remove(&model.name);
            }
        }
        drop(st);
        Ok(ready)
    }

    fn endpoints(&self, r: &Resource) -> Result<(), Rejection> {
        let cla = ClusterLoadAssignment::decode(r.resource.value.as_slice())
            .map_err(|e| Rejection::decode(format!("endpoints \"{}\"", r.name), e))?;
        let assignment = convert::load_assignment(&cla, &Path::root(format!("endpoints \"{}\"", r.name)))?;
        self.t.clusters.set_assignment(&r.name, assignment);
        Ok(())
    }

    fn listener(&self, r: &Resource) -> Result<(), Rejection> {
        let l = ProtoListener::decode(r.resource.value.as_slice())
            .map_err(|e| Rejection::decode(format!("listener \"{}\"", r.name), e))?;
        let model = convert::listener(&l, &Path::root(format!("listener \"{}\"", r.name)), &Resources::lenient())?;
        let needs: BTreeSet<String> = model
            .filter_chains
            .iter()
            .chain(model.default_filter_chain.iter())
            .filter_map(|c| match &c.filter {
                NetworkFilter::Http(h) => match &h.routes {
                    RouteSource::Rds(n) => Some(n.clone()),
                    RouteSource::Inline(_) => None,
                },
                NetworkFilter::TcpProxy(_) => None,
            })
            .collect();
        let model = crate::build::listener(&Arc::new(model))?;
        let secrets = model.pending_secrets();
        let ready = secrets.is_empty()
            && needs.iter().all(|n| self.t.routes.contains(n) || self.lock().missing_routes.contains(n));
        if ready {
            self.t.listeners.upsert(model.clone()).map_err(|e| Rejection::Conflict(e.to_string()))?;
            self.lock().warming.remove(&model.name);
        } else {
            // Warming: a running listener keeps serving its current version meanwhile.
            info!(listener = %model.name, routes = ?needs, ?secrets, "listener warming until its routes and secrets arrive");
            if model.bind_to_port && !self.t.listeners.contains(&model.name) {
                self.check_bindable(&model)?;
            }
            self.lock().warming.insert(model.name.clone(), model.clone());
        }
        self.lock().rds_of.insert(model.name.clone(), needs);
        Ok(())
    }

    /// A warming listener is accepted only if its address could be bound now, so a clash
    /// is NACKed at once rather than when its routes arrive.
    fn check_bindable(&self, l: &Listener) -> Result<(), Rejection> {
        let taken =
            self.t.listeners.addresses().iter().any(|(n, a)| *a == l.address && *n != l.name && l.address.port() != 0);
        if taken {
            return Err(Rejection::Conflict(format!(
                "listener \"{}\": address {} is already used by another listener",
                l.name, l.address
            )));
        }
        crate::listener::bind(l).map(drop).map_err(|e| Rejection::Conflict(e.to_string()))
    }

    fn route(&self, r: &Resource) -> Result<(), Rejection> {
        let rc = RouteConfiguration::decode(r.resource.value.as_slice())
            .map_err(|e| Rejection::decode(format!("route \"{}\"", r.name), e))?;
        let model = convert::route_config(&rc, &Path::root(format!("route \"{}\"", r.name)), &Resources::lenient())?;
        self.t.routes.upsert(&r.name, Arc::new(model));
        Ok(())
    }

    fn remove(&self, type_url: &str, name: &str) {
        match type_url {
            types::CLUSTER => {
                // Removed from the cluster manager in one batch by `apply`.
                self.lock().eds.remove(name);
            }
            types::ENDPOINT => self.t.clusters.remove_assignment(name),
            types::LISTENER => {
                self.t.listeners.remove(name);
                let mut st = self.lock();
                st.warming.remove(name);
                st.rds_of.remove(name);
            }
            types::ROUTE => self.t.routes.remove(name),
            types::SECRET => crate::tls::secrets::registry().forget(&crate::tls::secrets::Source::Ads, name),
            _ => {}
        }
    }

    fn follow_eds(&self) {
        let names: BTreeSet<String> = self.lock().eds.values().cloned().collect();
        if let Some(c) = self.client.get() {
            c.watch_names(types::ENDPOINT, names);
        }
    }

    fn follow_rds(&self) {
        let names: BTreeSet<String> = self.lock().rds_of.values().flatten().cloned().collect();
        if let Some(c) = self.client.get() {
            c.watch_names(types::ROUTE, names);
        }
    }

    fn start_warm_listeners(&self) {
        let ready: Vec<Arc<crate::listener::Ready>> = {
            let st = self.lock();
            st.warming
                .values()
                .filter(|l| {
                    l.pending_secrets().is_empty()
                        && st.rds_of.get(&l.name).is_none_or(|ns| {
                            ns.iter().all(|n| self.t.routes.contains(n) || st.missing_routes.contains(n))
                        })
                })
                .cloned()
                .collect()
        };
        for l in ready {
            match self.t.listeners.upsert(l.clone()) {
                Ok(_) => {
                    self.lock().warming.remove(&l.name);
                }
                Err(e) => warn!(listener = %l.name, error = %e, "warmed listener could not bind"),
            }
        }
    }

    fn check_ready(&self) {
        if self.t.ready.load(Ordering::Acquire) {
            return;
        }
        let st = self.lock();
        let eds_ready = st.eds.values().all(|s| self.t.clusters.has_assignment(s) || st.missing_eds.contains(s));
        let ok = (!st.want_cds || st.got_cds) && (!st.want_lds || st.got_lds) && st.warming.is_empty() && eds_ready;
        if ok {
            info!(source = "xds", "ready");
            self.t.ready.store(true, Ordering::Release);
            crate::telemetry::server_stats::stats().set_workers_started();
        }
    }
}
