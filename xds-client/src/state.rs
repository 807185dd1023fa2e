//! The per-type protocol state shared by SotW and Delta: what is subscribed, what was
//! accepted, which nonce is current, and which named resources are overdue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::types;

/// Protocol state of one resource type, kept across reconnects.
#[derive(Debug, Default)]
pub struct TypeState {
    /// Subscribed names (named types); always empty for wildcard types.
    pub names: BTreeSet<String>,
    /// Last accepted `version_info` (SotW).
    pub accepted_version: String,
    /// Nonce of the last response on the current stream.
    pub nonce: String,
    /// Resources held: name → version (Delta resource version, SotW `version_info`).
    pub known: BTreeMap<String, String>,
    /// Named resources requested on a connected stream and not received yet, with deadlines.
    pub overdue_at: BTreeMap<String, Instant>,
    /// Whether this type was requested on the current stream.
    pub requested: bool,
}

impl TypeState {
    /// Starts does-not-exist timers for subscribed names not held yet (on a send).
    pub fn arm_timers(&mut self, type_url: &str, deadline: Option<Instant>) {
        let Some(deadline) = deadline else { return };
        if types::is_wildcard(type_url) {
            return;
        }
        for n in &self.names {
            if !self.known.contains_key(n) {
                self.overdue_at.entry(n.clone()).or_insert(deadline);
            }
        }
    }

    /// Names whose deadline passed; they are reported once and forgotten by the timer.
    pub fn take_overdue(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<String> = self.overdue_at.iter().filter(|(_, d)| **d <= now).map(|(n, _)| n.clone()).collect();
        for n in &due {
            self.overdue_at.remove(n);
        }
        due
    }

    /// Forgets per-stream state when the stream ends (accepted data stays).
    pub fn on_disconnect(&mut self) {
        self.nonce.clear();
        self.requested = false;
        self.overdue_at.clear();
    }
}
