//! What `/config_dump` shows for dynamic resources: per resource its version, when it was
//! applied, the resource itself, and its last rejection.

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
    /// The resource as proto3 JSON.
    pub resource: serde_json::Value,
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
    /// Records an accepted resource.
    pub fn accepted(&self, kind: &'static str, name: &str, version: &str, resource: serde_json::Value) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let slot = e.entry(kind).or_default().entry(name.to_string()).or_default();
        slot.version_info = version.to_string();
        slot.last_updated = rfc3339(SystemTime::now());
        slot.resource = resource;
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

    /// Everything, for `/config_dump`.
    pub fn snapshot(&self) -> serde_json::Value {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_value(&*e).unwrap_or_default()
    }
}
