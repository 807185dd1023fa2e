//! Mounted certificates (`watched_directory`): re-read about once a second, installed when
//! they change and pass the same checks as at start-up. Kubernetes swaps a mounted secret by
//! moving a symlinked directory, so a poll sees either the old or the new pair; a half-written
//! pair fails the key/cert check and is retried on the next tick. Also refreshes the
//! certificate expiry gauge of every secret.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::material::{CertMaterial, Roots};
use super::secrets::{registry, Secret, Source};
use super::validation::Validation;

/// How often files are polled.
pub const POLL: Duration = Duration::from_secs(1);

/// Polls until `stop`.
pub async fn watch(stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => poll_once(),
        }
    }
}

/// One pass over every secret.
pub fn poll_once() {
    for slot in registry().all() {
        if let Some(c) = slot.cert() {
            metrics::gauge!("isthmus_tls_cert_expiry_seconds", "secret" => slot.name.clone()).set(c.expires_in());
        }
        let Source::Files { paths, watched: true } = &slot.source else { continue };
        let Ok(bytes) = paths.iter().map(std::fs::read).collect::<Result<Vec<_>, _>>() else {
            // Mid-swap or removed: keep serving what we have and look again next tick.
            continue;
        };
        // Held across parse and install, so a concurrent re-read of the same files by a config
        // update cannot interleave and leave older material installed.
        let mut last = slot.last_read.lock().unwrap_or_else(|p| p.into_inner());
        if *last == bytes {
            continue;
        }
        last.clone_from(&bytes);
        let parsed = match bytes.as_slice() {
            [chain, key] => CertMaterial::from_pem(chain, key).map(|m| Secret::Cert(Arc::new(m))),
            [ca] => Roots::from_pem(ca)
                .map(|r| Secret::Validation(Arc::new(Validation { roots: Some(Arc::new(r)), sans: Vec::new() }))),
            _ => continue,
        };
        match parsed {
            Ok(s) => slot.set(s),
            Err(e) => {
                tracing::warn!(secret = %slot.name, files = ?paths, error = %e, "changed certificate files refused; the last good version keeps serving");
                metrics::counter!("isthmus_tls_secret_errors_total", "secret" => slot.name.clone()).increment(1);
            }
        }
    }
}
