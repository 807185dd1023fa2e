//! Where certificates and trust bundles live at run time. A `Slot` holds the current version of
//! one secret and is read on every handshake, so a rotation (SDS push or a changed file) takes
//! effect for the next handshake without rebuilding listeners or clusters; connections already
//! established keep the keys they negotiated with.
//!
//! Slots are process-wide, like Envoy's secret manager: the same SDS name referenced by many
//! listeners and clusters is one subscription and one copy of the key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use arc_swap::ArcSwapOption;

use super::material::CertMaterial;
use super::validation::Validation;

/// One version of a secret.
#[derive(Debug)]
pub enum Secret {
    /// Key + chain (`tls_certificate`, Istio's `default`).
    Cert(Arc<CertMaterial>),
    /// Trust bundle and checks (`validation_context`, Istio's `ROOTCA`).
    Validation(Arc<Validation>),
}

/// Where a slot's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Inline in the config: fixed.
    Inline,
    /// `static_resources.secrets`.
    Static,
    /// Files, re-read when `watched_directory` is set.
    Files {
        /// The files read, in order (chain, key) or (trusted_ca).
        paths: Vec<PathBuf>,
        /// Whether the files are polled for changes.
        watched: bool,
    },
    /// SDS on the ADS stream (`sds_config: {ads: {}}`).
    Ads,
    /// SDS from its own gRPC cluster (istio-agent's `sds-grpc` Unix socket).
    Cluster(String),
}

/// The current version of one named secret.
#[derive(Debug)]
pub struct Slot {
    /// The secret's name (SDS name, or the file path for file certificates).
    pub name: String,
    /// Where updates come from.
    pub source: Source,
    current: ArcSwapOption<Secret>,
    /// Bytes of the files last read (file slots): a rewrite with the same content is a no-op
    /// and a bad file is reported once.
    pub(super) last_read: Mutex<Vec<Vec<u8>>>,
    /// What the configs referencing it use it as (set by the first reference).
    expected: OnceLock<Kind>,
}

/// What a secret is used as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A certificate to present (`tls_certificate`).
    Certificate,
    /// Peer checks (`validation_context`).
    Validation,
}

impl Secret {
    /// Which kind this content is.
    pub fn kind(&self) -> Kind {
        match self {
            Secret::Cert(_) => Kind::Certificate,
            Secret::Validation(_) => Kind::Validation,
        }
    }
}

impl Slot {
    /// Records what configs use this secret as; an SDS update of the other kind is then
    /// refused (NACKed) instead of installed where no handshake could use it.
    pub fn expect(&self, kind: Kind) {
        let _ = self.expected.set(kind);
    }

    /// What configs use this secret as, if known.
    pub fn expected(&self) -> Option<Kind> {
        self.expected.get().copied()
    }

    /// A slot with content (inline or file material read at start).
    pub fn with(name: impl Into<String>, source: Source, secret: Secret) -> Arc<Slot> {
        Arc::new(Slot {
            name: name.into(),
            source,
            current: ArcSwapOption::new(Some(Arc::new(secret))),
            last_read: Mutex::new(Vec::new()),
            expected: OnceLock::new(),
        })
    }

    fn empty(name: String, source: Source) -> Arc<Slot> {
        Arc::new(Slot {
            name,
            source,
            current: ArcSwapOption::empty(),
            last_read: Mutex::new(Vec::new()),
            expected: OnceLock::new(),
        })
    }

    /// The current version; `None` until an SDS secret arrives.
    pub fn get(&self) -> Option<Arc<Secret>> {
        self.current.load_full()
    }

    /// Installs a new version (new handshakes use it at once).
    pub fn set(&self, secret: Secret) {
        if let Secret::Cert(c) = &secret {
            tracing::info!(secret = %self.name, serial = %c.serial, "certificate installed");
        }
        let secret = Arc::new(secret);
        if matches!(self.source, Source::Ads | Source::Cluster(_)) {
            registry().remember(&self.source, &self.name, secret.clone());
        }
        self.current.store(Some(secret));
        registry().arrived().send_modify(|n| *n += 1);
    }

    /// Whether content has arrived.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// The current certificate, if this slot holds one.
    pub fn cert(&self) -> Option<Arc<CertMaterial>> {
        match self.get().as_deref() {
            Some(Secret::Cert(c)) => Some(c.clone()),
            _ => None,
        }
    }

    /// The current validation context, if this slot holds one.
    pub fn validation(&self) -> Option<Arc<Validation>> {
        match self.get().as_deref() {
            Some(Secret::Validation(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Every named slot, weakly held: a slot lives as long as a listener or cluster uses it.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Mutex<HashMap<(Source, String), Weak<Slot>>>,
    /// Bumped when a new SDS name is referenced, so subscriptions can follow.
    changed: tokio::sync::Notify,
    /// Bumped whenever a slot gets content, so listeners warming on secrets can start.
    arrived: OnceLock<tokio::sync::watch::Sender<u64>>,
    /// The last SDS content per name, kept after its slot is dropped: when a config names the
    /// secret again, the control plane will not resend an unchanged secret on a subscription
    /// that never changed, so the new slot starts from here.
    last: Mutex<HashMap<(Source, String), Arc<Secret>>>,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Source, String), Weak<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot for an SDS (or static) name, created empty on first use.
    pub fn named(&self, source: Source, name: &str) -> Arc<Slot> {
        let mut m = self.lock();
        let key = (source.clone(), name.to_string());
        if let Some(s) = m.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let s = Slot::empty(name.to_string(), source);
        if let Some(known) = self.last.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            s.current.store(Some(known.clone()));
        }
        m.insert(key, Arc::downgrade(&s));
        drop(m);
        self.changed.notify_one();
        s
    }

    /// Drops the remembered content of a secret the control plane removed, reported missing,
    /// or that is no longer subscribed: a later reference must wait for fresh content.
    pub fn forget(&self, source: &Source, name: &str) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).remove(&(source.clone(), name.to_string()));
    }

    /// Records SDS content for later slots of the same name.
    fn remember(&self, source: &Source, name: &str, secret: Arc<Secret>) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).insert((source.clone(), name.to_string()), secret);
    }

    /// The existing slot, if any listener, cluster or the bootstrap holds it.
    pub fn find(&self, source: &Source, name: &str) -> Option<Arc<Slot>> {
        self.lock().get(&(source.clone(), name.to_string())).and_then(Weak::upgrade)
    }

    /// The slot for file material: shared by every config naming the same files, with the
    /// material just read installed (it was validated by the caller).
    pub fn files(
        &self,
        name: &str,
        paths: Vec<PathBuf>,
        watched: bool,
        bytes: Vec<Vec<u8>>,
        secret: Secret,
    ) -> Arc<Slot> {
        let source = Source::Files { paths, watched };
        let slot = self.named(source, name);
        let mut last = slot.last_read.lock().unwrap_or_else(|p| p.into_inner());
        if *last != bytes {
            *last = bytes;
            slot.set(secret);
        }
        drop(last);
        slot
    }

    /// Every live slot.
    pub fn all(&self) -> Vec<Arc<Slot>> {
        let mut m = self.lock();
        m.retain(|_, w| w.strong_count() > 0);
        m.values().filter_map(Weak::upgrade).collect()
    }

    /// SDS names wanted, by source (`Ads` or `Cluster`).
    pub fn sds_names(&self) -> BTreeMap<Source, BTreeSet<String>> {
        let mut out: BTreeMap<Source, BTreeSet<String>> = BTreeMap::new();
        for s in self.all() {
            if matches!(s.source, Source::Ads | Source::Cluster(_)) {
                out.entry(s.source.clone()).or_default().insert(s.name.clone());
            }
        }
        out
    }

    /// Ticks whenever any secret gets new content.
    pub fn arrived(&self) -> &tokio::sync::watch::Sender<u64> {
        self.arrived.get_or_init(|| tokio::sync::watch::channel(0).0)
    }

    /// Waits until a new SDS name is referenced.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::material::Roots;

    fn roots() -> Secret {
        Secret::Validation(Arc::new(Validation {
            roots: Some(Arc::new(Roots { anchors: Vec::new() })),
            sans: Vec::new(),
        }))
    }

    #[test]
    fn a_slot_named_again_after_its_last_holder_left_starts_with_the_last_content() {
        let source = Source::Cluster("sds-test".into());
        let slot = registry().named(source.clone(), "gone-and-back");
        assert!(!slot.is_ready());
        slot.set(roots());
        drop(slot);
        assert!(registry().find(&source, "gone-and-back").is_none(), "the slot died with its last holder");
        // The control plane will not resend an unchanged secret: the new slot must not be empty.
        let again = registry().named(source.clone(), "gone-and-back");
        assert!(again.is_ready());
        drop(again);
        // Once the control plane removed it, a new reference waits for fresh content.
        registry().forget(&source, "gone-and-back");
        assert!(!registry().named(source, "gone-and-back").is_ready());
    }
}
