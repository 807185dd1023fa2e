//! Active health checks (cluster `health_checks`): HTTP or TCP probes on an interval, with
//! healthy/unhealthy thresholds, feeding the same health model as outlier detection. A passing
//! check returns an outlier-ejected host at once, as Envoy's
//! `successful_active_health_check_uneject_host` (default true) does — the edge gateway has
//! no control plane to tell it an endpoint died; with it false the host stays out until its
//! ejection time has passed.

pub mod check;

use std::time::Duration;

/// What to probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `GET path` with `Host: host`; healthy when the status is in `expected` (default 200).
    Http {
        /// Request path.
        path: String,
        /// Host header (default: the cluster name).
        host: String,
        /// Accepted status ranges `[start, end)`.
        expected: Vec<(u16, u16)>,
    },
    /// Connect (and, if `send` is set, write it and expect `receive` back).
    Tcp {
        /// Bytes to send.
        send: Vec<u8>,
        /// Bytes that must appear in the reply.
        receive: Vec<u8>,
    },
}

/// One `HealthCheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    /// The probe.
    pub probe: Probe,
    /// Per-probe limit.
    pub timeout: Duration,
    /// Between probes.
    pub interval: Duration,
    /// Failures in a row to mark a host unhealthy.
    pub unhealthy_threshold: u32,
    /// Successes in a row to mark it healthy again.
    pub healthy_threshold: u32,
}

/// A host's probe history → health transitions (pure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    /// Consecutive successes.
    pub ok: u32,
    /// Consecutive failures.
    pub failed: u32,
    /// Whether a first result has been seen (Envoy: the first pass makes a new host
    /// healthy at once).
    pub seen: bool,
}

impl Streak {
    /// Records a probe result; returns the new health if it changed (`Some(true)` healthy).
    pub fn record(&mut self, ok: bool, currently_failed: bool, cfg: &HealthCheckConfig) -> Option<bool> {
        let first = !self.seen;
        self.seen = true;
        if ok {
            self.ok += 1;
            self.failed = 0;
            (currently_failed && (first || self.ok >= cfg.healthy_threshold)).then_some(true)
        } else {
            self.failed += 1;
            self.ok = 0;
            (!currently_failed && (first || self.failed >= cfg.unhealthy_threshold)).then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthCheckConfig {
        HealthCheckConfig {
            probe: Probe::Tcp { send: vec![], receive: vec![] },
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }

    #[test]
    fn thresholds_and_first_result() {
        let c = cfg();
        let mut s = Streak::default();
        assert_eq!(s.record(true, true, &c), Some(true), "a new host's first pass makes it healthy");
        let mut failed = false;
        for i in 0..3 {
            let r = s.record(false, failed, &c);
            if i < 2 {
                assert_eq!(r, None);
            } else {
                assert_eq!(r, Some(false));
                failed = true;
            }
        }
        assert_eq!(s.record(true, failed, &c), None);
        assert_eq!(s.record(true, failed, &c), Some(true));
    }
}
