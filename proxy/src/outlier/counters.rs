//! The request-path half: per-host atomic counters. Recording an outcome is a few relaxed
//! atomic operations; reaching a consecutive threshold yields the ejection type for the
//! detector to decide on (the counter is reset either way, as Envoy does).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{EjectionType, Outcome, OutlierConfig};

/// Counters of one host.
#[derive(Debug, Default)]
pub struct HostCounters {
    c5xx: AtomicU32,
    gateway: AtomicU32,
    local: AtomicU32,
    /// External (HTTP) requests and successes in the current interval.
    pub ext_total: AtomicU64,
    /// See `ext_total`.
    pub ext_success: AtomicU64,
    /// Local-origin attempts and successes in the current interval (split mode).
    pub local_total: AtomicU64,
    /// See `local_total`.
    pub local_success: AtomicU64,
}

impl HostCounters {
    /// Records an outcome; returns the consecutive detectors that fired (at most two).
    pub fn record(&self, cfg: &OutlierConfig, outcome: Outcome) -> [Option<EjectionType>; 2] {
        let code = match (cfg.split_external_local_origin_errors, outcome) {
            (true, Outcome::ConnectFailure | Outcome::Timeout | Outcome::Reset) => {
                self.local_total.fetch_add(1, Ordering::Relaxed);
                return [
                    self.bump(
                        &self.local,
                        cfg.consecutive_local_origin_failure,
                        EjectionType::ConsecutiveLocalOriginFailure,
                    ),
                    None,
                ];
            }
            (true, Outcome::ConnectSuccess) => {
                self.local.store(0, Ordering::Relaxed);
                self.local_total.fetch_add(1, Ordering::Relaxed);
                self.local_success.fetch_add(1, Ordering::Relaxed);
                return [None, None];
            }
            // A finished TCP connection counts as a success (Envoy's non-split mapping).
            (false, Outcome::ConnectSuccess) => 200,
            (false, Outcome::Timeout) => 504,
            (false, Outcome::ConnectFailure | Outcome::Reset) => 503,
            (_, Outcome::Status(s)) => s,
        };
        self.ext_total.fetch_add(1, Ordering::Relaxed);
        if !(500..600).contains(&code) {
            self.ext_success.fetch_add(1, Ordering::Relaxed);
            self.c5xx.store(0, Ordering::Relaxed);
            self.gateway.store(0, Ordering::Relaxed);
            return [None, None];
        }
        let gw = if matches!(code, 502..=504) {
            self.bump(&self.gateway, cfg.consecutive_gateway_failure, EjectionType::ConsecutiveGatewayFailure)
        } else {
            self.gateway.store(0, Ordering::Relaxed);
            None
        };
        [gw, self.bump(&self.c5xx, cfg.consecutive_5xx, EjectionType::Consecutive5xx)]
    }

    fn bump(&self, c: &AtomicU32, threshold: u32, kind: EjectionType) -> Option<EjectionType> {
        let n = c.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && n == threshold {
            c.store(0, Ordering::Relaxed);
            Some(kind)
        } else {
            None
        }
    }

    /// Clears the consecutive counters (on uneject).
    pub fn reset_consecutive(&self) {
        self.c5xx.store(0, Ordering::Relaxed);
        self.gateway.store(0, Ordering::Relaxed);
        self.local.store(0, Ordering::Relaxed);
    }

    /// Takes the interval's (success, total) for external and local-origin requests.
    pub fn take_interval(&self) -> ((u64, u64), (u64, u64)) {
        let ext = (self.ext_success.swap(0, Ordering::Relaxed), self.ext_total.swap(0, Ordering::Relaxed));
        let local = (self.local_success.swap(0, Ordering::Relaxed), self.local_total.swap(0, Ordering::Relaxed));
        (ext, local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(c: &HostCounters, cfg: &OutlierConfig, o: Outcome) -> Vec<EjectionType> {
        c.record(cfg, o).into_iter().flatten().collect()
    }

    #[test]
    fn scenario_10_a_success_resets_the_run() {
        let cfg = OutlierConfig::default();
        let c = HostCounters::default();
        for _ in 0..4 {
            assert!(fired(&c, &cfg, Outcome::Status(500)).is_empty());
        }
        assert!(fired(&c, &cfg, Outcome::Status(200)).is_empty());
        for _ in 0..4 {
            assert!(fired(&c, &cfg, Outcome::Status(500)).is_empty());
        }
        assert_eq!(fired(&c, &cfg, Outcome::Status(500)), [EjectionType::Consecutive5xx]);
    }

    #[test]
    fn scenario_14_local_origin_errors_split_and_not() {
        let seq = [
            Outcome::ConnectFailure,
            Outcome::ConnectFailure,
            Outcome::ConnectFailure,
            Outcome::Status(500),
            Outcome::Status(500),
        ];
        let cfg = OutlierConfig::default();
        let c = HostCounters::default();
        let all: Vec<_> = seq.iter().flat_map(|o| fired(&c, &cfg, *o)).collect();
        assert_eq!(all, [EjectionType::Consecutive5xx], "503,503,503,500,500 is five 5xx");
        let split = OutlierConfig { split_external_local_origin_errors: true, ..OutlierConfig::default() };
        let c = HostCounters::default();
        let all: Vec<_> = seq.iter().flat_map(|o| fired(&c, &split, *o)).collect();
        assert!(all.is_empty());
        let c = HostCounters::default();
        for _ in 0..4 {
            assert!(fired(&c, &split, Outcome::ConnectFailure).is_empty());
        }
        assert!(fired(&c, &split, Outcome::ConnectSuccess).is_empty(), "a connect success resets the run");
        for _ in 0..4 {
            assert!(fired(&c, &split, Outcome::ConnectFailure).is_empty());
        }
        assert_eq!(fired(&c, &split, Outcome::ConnectFailure), [EjectionType::ConsecutiveLocalOriginFailure]);
    }

    #[test]
    fn gateway_errors_count_on_both_detectors_and_other_5xx_reset_the_gateway_run() {
        let cfg = OutlierConfig { consecutive_5xx: 10, consecutive_gateway_failure: 3, ..OutlierConfig::default() };
        let c = HostCounters::default();
        fired(&c, &cfg, Outcome::Status(503));
        fired(&c, &cfg, Outcome::Status(502));
        fired(&c, &cfg, Outcome::Status(500));
        fired(&c, &cfg, Outcome::Status(504));
        fired(&c, &cfg, Outcome::Status(503));
        assert_eq!(fired(&c, &cfg, Outcome::Timeout), [EjectionType::ConsecutiveGatewayFailure]);
    }

    #[test]
    fn grpc_statuses_map_like_envoy() {
        assert_eq!(super::super::grpc_to_http(14), 503);
        assert_eq!(super::super::grpc_to_http(4), 504);
        assert_eq!(super::super::grpc_to_http(13), 500);
        assert_eq!(super::super::grpc_to_http(0), 200);
    }
}
