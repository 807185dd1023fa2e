//! What a peer certificate must satisfy: a chain to one of the trusted roots, then a SAN on the
//! allow-list. The roots may come from a secret that rotates (Istio's `ROOTCA`) while the SAN
//! list comes from the cluster or listener (`combined_validation_context`).

use std::sync::Arc;

use super::material::Roots;
use super::san::SanMatcher;
use super::secrets::Slot;

/// One version of a validation context (`trusted_ca` + SAN matchers).
#[derive(Debug)]
pub struct Validation {
    /// Trusted roots (`None`: the referencing config's default roots apply).
    pub roots: Option<Arc<Roots>>,
    /// SAN allow-list carried by the secret itself (usually empty for SDS `ROOTCA`).
    pub sans: Vec<SanMatcher>,
}

/// A connection's peer checks: the slot holding roots (and maybe SANs) plus the SAN matchers
/// of the referencing config (`default_validation_context`).
#[derive(Debug, Clone)]
pub struct Checks {
    /// Where the current roots are.
    pub slot: Arc<Slot>,
    /// SAN matchers from the listener/cluster config, merged with the secret's.
    pub sans: Vec<SanMatcher>,
    /// `default_validation_context.trusted_ca`, used when the secret brings no roots
    /// (Envoy merges the two contexts, the secret's fields winning).
    pub default_roots: Option<Arc<Roots>>,
}

impl Checks {
    /// The current roots and the merged SAN list; `None` until the secret arrives.
    pub fn current(&self) -> Option<(Arc<Roots>, Vec<SanMatcher>)> {
        let v = self.slot.validation()?;
        let mut sans = self.sans.clone();
        sans.extend(v.sans.iter().cloned());
        let roots = v.roots.clone().or_else(|| self.default_roots.clone())?;
        Some((roots, sans))
    }
}
