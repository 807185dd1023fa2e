//! What `/config_dump` shows for dynamic resources: per resource its version, when it was
//! applied, the resource itself, and its last rejection. Resources are kept as received
//! (protobuf bytes) and turned into JSON only when the dump is asked for, as Envoy does: JSON
//! for a 100,000-endpoint assignment costs more than applying it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::telemetry::access_log::rfc3339;

/// One resource's dump entry.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Entry {
    /// Version it was accepted at.
    pub version_info: String,
    /// When it was applied (RFC 3339).
    pub last_updated: String,
    /// The resource as proto3 JSON (filled from `raw` by [`DumpStore::snapshot`]).
    pub resource: serde_json::Value,
    /// Message type name and encoded bytes, as received.
    #[serde(skip)]
    pub raw: Option<(String, Vec<u8>)>,
    /// The last time a version of it was rejected, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_state: Option<Rejection>,
}

/// A rejected update.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// The version that was refused.
    pub version_info: String,
    /// Why.
    pub details: String,
    /// When.
    pub last_update_attempt: String,
}

/// Dump entries by type (`lds`, `cds`, …) and name.
#[derive(Debug, Default)]
pub struct DumpStore {
    entries: Mutex<BTreeMap<&'static str, BTreeMap<String, Entry>>>,
}

impl DumpStore {
    /// Records an accepted resource: its message type name and bytes.
    pub fn accepted(&self, kind: &'static str, name: &str, version: &str, type_name: &str, bytes: Vec<u8>) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let slot = e.entry(kind).or_default().entry(name.to_string()).or_default();
        slot.version_info = version.to_string();
        slot.last_updated = rfc3339(SystemTime::now());
        slot.raw = Some((type_name.to_string(), bytes));
    }

    /// Records a rejected version (the accepted one, if any, stays).
    pub fn rejected(&self, kind: &'static str, name: &str, version: &str, details: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let slot = e.entry(kind).or_default().entry(name.to_string()).or_default();
        slot.error_state = Some(Rejection {
            version_info: version.to_string(),
            details: details.to_string(),
            last_update_attempt: rfc3339(SystemTime::now()),
        });
    }

    /// Forgets a removed resource.
    pub fn removed(&self, kind: &'static str, name: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = e.get_mut(kind) {
            m.remove(name);
        }
    }

    /// The entries of one kind (`lds`, `cds`, `rds`, `eds`, `sds`) by name, with their JSON
    /// filled, for `/config_dump`.
    pub fn of_kind(&self, kind: &str) -> Vec<(String, Entry)> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(m) = e.get(kind) else { return Vec::new() };
        let mut out: Vec<(String, Entry)> = m.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        drop(e);
        for (_, entry) in &mut out {
            if let Some((type_name, bytes)) = entry.raw.take() {
                entry.resource = xds_client::json::to_json(&type_name, &bytes)
                    .unwrap_or_else(|err| serde_json::json!({"isthmus_dump_error": err.to_string()}));
            }
        }
        out
    }

    /// The newest version accepted for `kind` (Envoy's top-level `version_info`).
    pub fn version(&self, kind: &str) -> String {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.get(kind)
            .and_then(|m| m.values().filter(|v| v.raw.is_some()).max_by(|a, b| a.last_updated.cmp(&b.last_updated)))
            .map(|v| v.version_info.clone())
            .unwrap_or_default()
    }
}
