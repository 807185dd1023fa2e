//! The protocol engine: pure, synchronous decisions over protocol state. It turns responses
//! into handler calls and ACK/NACK requests, subscriptions into requests, and knows what the
//! first requests of a new stream must carry. The transport (tonic) lives in `client.rs`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::handler::{Handler, Rejected, Resource};
use crate::protos::envoy::config::core::v3::Node;
use crate::protos::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use crate::protos::google::rpc::Status;
use crate::state::TypeState;
use crate::types;

/// Which ADS flavour the stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// State of the world (`StreamAggregatedResources`, bootstrap `api_type: GRPC`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`, `api_type: DELTA_GRPC`).
    Delta,
}

/// A request to put on the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// SotW.
    Sotw(DiscoveryRequest),
    /// Delta.
    Delta(DeltaDiscoveryRequest),
}

/// The protocol state machine for one client (all types).
pub struct Engine {
    mode: Mode,
    node: Node,
    handler: Arc<dyn Handler>,
    types: BTreeMap<String, TypeState>,
    node_sent: bool,
    fetch_timeout: Option<Duration>,
}

/// gRPC status code INVALID_ARGUMENT, used for NACKs as Envoy does.
const INVALID_ARGUMENT: i32 = 3;

impl Engine {
    /// A fresh engine; `fetch_timeout` is `initial_fetch_timeout` (None disables it).
    pub fn new(mode: Mode, node: Node, handler: Arc<dyn Handler>, fetch_timeout: Option<Duration>) -> Self {
        Engine { mode, node, handler, types: BTreeMap::new(), node_sent: false, fetch_timeout }
    }

    /// The flavour.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The handler.
    pub fn handler(&self) -> &Arc<dyn Handler> {
        &self.handler
    }

    /// Accepted resource names and versions of a type (for tests and config dumps).
    pub fn known(&self, type_url: &str) -> BTreeMap<String, String> {
        self.types.get(type_url).map(|t| t.known.clone()).unwrap_or_default()
    }

    /// The last accepted SotW version of a type.
    pub fn accepted_version(&self, type_url: &str) -> String {
        self.types.get(type_url).map(|t| t.accepted_version.clone()).unwrap_or_default()
    }

    /// Sets the subscription of a type: wildcard types ignore `names` (always everything).
    /// Returns the request to send if connected and something changed; names dropped are
    /// reported to the handler as removed.
    pub fn subscribe(&mut self, type_url: &str, names: BTreeSet<String>, connected: bool) -> Option<Outbound> {
        let is_new = !self.types.contains_key(type_url);
        let st = self.types.entry(type_url.to_string()).or_default();
        if types::is_wildcard(type_url) {
            if !is_new {
                return None;
            }
        } else if !is_new && st.names == names {
            return None;
        }
        let added: Vec<String> = names.difference(&st.names).cloned().collect();
        let dropped: Vec<String> = st.names.difference(&names).cloned().collect();
        if !types::is_wildcard(type_url) {
            st.names = names;
        }
        let mut forgotten = Vec::new();
        for n in &dropped {
            st.overdue_at.remove(n);
            if st.known.remove(n).is_some() {
                forgotten.push(n.clone());
            }
        }
        if !forgotten.is_empty() {
            let _ = self.handler.apply(type_url, Vec::new(), forgotten);
        }
        if !connected {
            return None;
        }
        let out = match self.mode {
            Mode::Sotw => self.sotw_request(type_url, None),
            Mode::Delta if is_new || !self.types.get(type_url).is_some_and(|t| t.requested) => {
                self.delta_initial(type_url)
            }
            Mode::Delta => Outbound::Delta(DeltaDiscoveryRequest {
                node: self.take_node(),
                type_url: type_url.to_string(),
                resource_names_subscribe: added,
                resource_names_unsubscribe: dropped,
                ..Default::default()
            }),
        };
        self.arm(type_url);
        Some(out)
    }

    /// The first requests of a new stream: one per subscribed type, carrying the node on the
    /// first, the accepted versions (SotW) or `initial_resource_versions` (Delta).
    pub fn on_connect(&mut self) -> Vec<Outbound> {
        self.node_sent = false;
        let urls: Vec<String> = types::ALL
            .iter()
            .map(|s| s.to_string())
            .filter(|u| self.types.contains_key(u))
            .chain(self.types.keys().filter(|k| !types::ALL.contains(&k.as_str())).cloned())
            .collect();
        let mut out = Vec::new();
        for u in urls {
            let req = match self.mode {
                Mode::Sotw => self.sotw_request(&u, None),
                Mode::Delta => self.delta_initial(&u),
            };
            self.arm(&u);
            out.push(req);
        }
        out
    }

    /// Forgets stream state after a disconnect (accepted resources stay).
    pub fn on_disconnect(&mut self) {
        for st in self.types.values_mut() {
            st.on_disconnect();
        }
    }

    /// Reports overdue named resources to the handler; returns the next deadline.
    pub fn poll_timers(&mut self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        for (url, st) in self.types.iter_mut() {
            for n in st.take_overdue(now) {
                due.push((url.clone(), n));
            }
        }
        for (url, n) in due {
            tracing::warn!(r#type = types::short(&url), resource = %n, "resource does not exist (initial_fetch_timeout)");
            self.handler.does_not_exist(&url, &n);
        }
        self.types.values().flat_map(|s| s.overdue_at.values().copied()).min()
    }

    fn arm(&mut self, type_url: &str) {
        let deadline = self.fetch_timeout.map(|t| Instant::now() + t);
        if let Some(st) = self.types.get_mut(type_url) {
            st.requested = true;
            st.arm_timers(type_url, deadline);
        }
    }

    fn take_node(&mut self) -> Option<Node> {
        if self.node_sent {
            None
        } else {
            self.node_sent = true;
            Some(self.node.clone())
        }
    }

    fn sotw_request(&mut self, type_url: &str, error: Option<String>) -> Outbound {
        let node = self.take_node();
        let st = self.types.entry(type_url.to_string()).or_default();
        Outbound::Sotw(DiscoveryRequest {
            version_info: st.accepted_version.clone(),
            node,
            resource_names: st.names.iter().cloned().collect(),
            type_url: type_url.to_string(),
            response_nonce: st.nonce.clone(),
            error_detail: error.map(|m| Status { code: INVALID_ARGUMENT, message: m, details: Vec::new() }),
            ..Default::default()
        })
    }

    /// Delta's first request for a type on a stream. LDS/CDS stay wildcard (no names) even
    /// with `initial_resource_versions`, so servers cannot mistake them for named
    /// subscriptions (the Consul bug the spec cites).
    fn delta_initial(&mut self, type_url: &str) -> Outbound {
        let node = self.take_node();
        let st = self.types.entry(type_url.to_string()).or_default();
        Outbound::Delta(DeltaDiscoveryRequest {
            node,
            type_url: type_url.to_string(),
            resource_names_subscribe: st.names.iter().cloned().collect(),
            initial_resource_versions: st.known.clone().into_iter().collect(),
            ..Default::default()
        })
    }

    /// Handles a SotW response: decode names, hand valid resources to the handler, compute
    /// removals (LDS/CDS only), and answer with ACK or NACK.
    pub fn on_sotw(&mut self, resp: DiscoveryResponse) -> Outbound {
        let type_url = resp.type_url.clone();
        let Some(st) = self.types.get_mut(&type_url) else {
            tracing::warn!(r#type = %type_url, "response for a type that was never requested; NACK");
            return Outbound::Sotw(DiscoveryRequest {
                type_url: type_url.clone(),
                response_nonce: resp.nonce,
                error_detail: Some(Status {
                    code: INVALID_ARGUMENT,
                    message: format!("type {type_url} was not requested"),
                    details: Vec::new(),
                }),
                ..Default::default()
            });
        };
        st.nonce = resp.nonce.clone();
        let (resources, undecodable, names) = split(&type_url, resp.resources, &resp.version_info);
        // A resource that cannot be named makes the whole response unusable: without its
        // name, LDS/CDS removal cannot be computed. Envoy rejects such a response whole too.
        if !undecodable.is_empty() {
            counters(&type_url, false);
            let msg = nack_message(&undecodable);
            tracing::warn!(r#type = types::short(&type_url), version = %resp.version_info, error = %msg, "NACK");
            return self.sotw_request(&type_url, Some(msg));
        }
        if let Some(d) = duplicates(&names) {
            let msg = format!("duplicate resource name \"{d}\" in response version {}", resp.version_info);
            counters(&type_url, false);
            return self.sotw_request(&type_url, Some(msg));
        }
        let mut rejected = Vec::new();
        let removed: Vec<String> = match self.types.get(&type_url) {
            Some(st) if types::is_wildcard(&type_url) => {
                st.known.keys().filter(|k| !names.contains(*k)).cloned().collect()
            }
            _ => Vec::new(),
        };
        let offered: Vec<String> = resources.iter().map(|r| r.name.clone()).collect();
        rejected.extend(self.handler.apply(&type_url, resources, removed.clone()));
        let st = self.types.entry(type_url.clone()).or_default();
        for n in &removed {
            st.known.remove(n);
        }
        for n in names.iter().chain(offered.iter()) {
            st.overdue_at.remove(n);
        }
        for n in offered {
            if !rejected.iter().any(|r| r.name == n) {
                st.known.insert(n, resp.version_info.clone());
            }
        }
        if rejected.is_empty() {
            acked_version(&type_url, &st.accepted_version, &resp.version_info);
            st.accepted_version = resp.version_info.clone();
            counters(&type_url, true);
            self.sotw_request(&type_url, None)
        } else {
            counters(&type_url, false);
            let msg = nack_message(&rejected);
            tracing::warn!(r#type = types::short(&type_url), version = %resp.version_info, error = %msg, "NACK");
            self.sotw_request(&type_url, Some(msg))
        }
    }

    /// Handles a Delta response: upserts and removals, then ACK or NACK by nonce.
    pub fn on_delta(&mut self, resp: DeltaDiscoveryResponse) -> Outbound {
        let type_url = resp.type_url.clone();
        let ack = |error: Option<String>| {
            Outbound::Delta(DeltaDiscoveryRequest {
                type_url: type_url.clone(),
                response_nonce: resp.nonce.clone(),
                error_detail: error.map(|m| Status { code: INVALID_ARGUMENT, message: m, details: Vec::new() }),
                ..Default::default()
            })
        };
        if !self.types.contains_key(&type_url) {
            tracing::warn!(r#type = %type_url, "delta response for a type that was never requested; NACK");
            return ack(Some(format!("type {type_url} was not requested")));
        }
        let mut rejected = Vec::new();
        let mut resources = Vec::new();
        let mut names = Vec::new();
        for r in resp.resources {
            let Some(any) = r.resource else { continue }; // TTL heartbeat: nothing to change.
            if any.type_url != type_url {
                rejected.push(Rejected {
                    name: r.name.clone(),
                    reason: format!("resource type {} in a {} response", any.type_url, type_url),
                });
                continue;
            }
            names.push(r.name.clone());
            resources.push(Resource { name: r.name, version: r.version, resource: any });
        }
        if let Some(d) = duplicates(&names) {
            counters(&type_url, false);
            return ack(Some(format!("duplicate resource name \"{d}\"")));
        }
        let st = self.types.get(&type_url);
        let mut removed: Vec<String> =
            resp.removed_resources.into_iter().chain(resp.removed_resource_names.into_iter().map(|n| n.name)).collect();
        removed.retain(|n| st.is_some_and(|s| s.known.contains_key(n)));
        let versions: Vec<(String, String)> = resources.iter().map(|r| (r.name.clone(), r.version.clone())).collect();
        if !resources.is_empty() || !removed.is_empty() {
            rejected.extend(self.handler.apply(&type_url, resources, removed.clone()));
        }
        let st = self.types.entry(type_url.clone()).or_default();
        for n in &removed {
            st.known.remove(n);
        }
        for (n, v) in versions {
            st.overdue_at.remove(&n);
            if !rejected.iter().any(|r| r.name == n) {
                st.known.insert(n, v);
            }
        }
        if rejected.is_empty() {
            if !resp.system_version_info.is_empty() {
                let prev = std::mem::replace(&mut st.accepted_version, resp.system_version_info.clone());
                acked_version(&type_url, &prev, &resp.system_version_info);
            }
            counters(&type_url, true);
            ack(None)
        } else {
            counters(&type_url, false);
            let msg = nack_message(&rejected);
            tracing::warn!(r#type = types::short(&type_url), error = %msg, "NACK");
            ack(Some(msg))
        }
    }
}

/// Splits a SotW response into named resources and undecodable/mistyped ones.
fn split(
    type_url: &str,
    anys: Vec<crate::protos::google::protobuf::Any>,
    version: &str,
) -> (Vec<Resource>, Vec<Rejected>, Vec<String>) {
    let mut ok = Vec::with_capacity(anys.len());
    let mut bad = Vec::new();
    let mut names = Vec::with_capacity(anys.len());
    for (i, any) in anys.into_iter().enumerate() {
        if any.type_url != type_url {
            bad.push(Rejected {
                name: format!("resources[{i}]"),
                reason: format!("resource type {} in a {type_url} response", any.type_url),
            });
            continue;
        }
        match types::resource_name(&any.value) {
            Ok(name) if !name.is_empty() => {
                names.push(name.clone());
                ok.push(Resource { name, version: version.to_string(), resource: any });
            }
            Ok(_) => bad.push(Rejected { name: format!("resources[{i}]"), reason: "resource has no name".into() }),
            Err(e) => bad.push(Rejected { name: format!("resources[{i}]"), reason: format!("cannot decode: {e}") }),
        }
    }
    (ok, bad, names)
}

fn duplicates(names: &[String]) -> Option<String> {
    let mut seen = HashSet::new();
    names.iter().find(|n| !seen.insert(n.as_str())).cloned()
}

fn nack_message(rejected: &[Rejected]) -> String {
    rejected.iter().map(|r| format!("{}: {}", r.name, r.reason)).collect::<Vec<_>>().join("; ")
}

/// `xds_acked_version{type}`: the xxHash64 of the `version_info` in force (its low 53 bits, so
/// the gauge holds it exactly), as Envoy's `update_*`/`version` stats do. One series per type:
/// a label per version would add a series with every push and never drop any.
fn acked_version(type_url: &str, _old: &str, new: &str) {
    let hash = xxhash_rust::xxh64::xxh64(new.as_bytes(), 0) & ((1u64 << 53) - 1);
    #[allow(clippy::cast_precision_loss)] // below 2^53: exact
    metrics::gauge!("xds_acked_version", "type" => types::short(type_url)).set(hash as f64);
}

fn counters(type_url: &str, ack: bool) {
    metrics::counter!("xds_updates_total", "type" => types::short(type_url), "result" => if ack { "ack" } else { "nack" }).increment(1);
}

#[cfg(test)]
mod metric_tests {
    use metrics_util::debugging::DebuggingRecorder;

    /// A label per pushed version grew one series per push for the life of the process.
    #[test]
    fn acked_version_is_one_series_per_type_whatever_the_pushes() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        metrics::with_local_recorder(&rec, || {
            for v in 0..100 {
                super::acked_version(cds, &(v - 1).to_string(), &v.to_string());
            }
        });
        let series: Vec<_> =
            snap.snapshot().into_vec().into_iter().filter(|(k, ..)| k.key().name() == "xds_acked_version").collect();
        assert_eq!(series.len(), 1, "{series:?}");
        let expected = xxhash_rust::xxh64::xxh64(b"99", 0) & ((1u64 << 53) - 1);
        #[allow(clippy::cast_precision_loss)]
        let expected = expected as f64;
        assert!(
            matches!(series[0].3, metrics_util::debugging::DebugValue::Gauge(g) if g.into_inner() == expected),
            "{series:?}"
        );
    }
}
