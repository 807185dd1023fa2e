//! The trace decision, exactly as Envoy's HCM makes it (`mutateTracingRequestHeader` with the
//! UUID request-id extension): the decision is packed into `x-request-id` so every later hop
//! that shares the id makes the same one, and sampling is by the id's first 32 bits, so two
//! proxies given the same id decide the same way.

use http::{HeaderMap, HeaderValue};

use crate::config::listener::{RequestId, Tracing};

/// Why a request is traced (Envoy's `Tracing::Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not traced.
    NotTraceable,
    /// Random sampling chose it.
    Sampling,
    /// `x-envoy-force-trace`.
    ServiceForced,
    /// `x-client-trace-id` with client sampling.
    ClientForced,
}

impl Reason {
    /// Whether a span is reported.
    pub fn traced(self) -> bool {
        self != Reason::NotTraceable
    }
}

/// Position of the trace-reason nibble in a UUID (the version nibble, which Envoy re-uses).
const TRACE_BYTE: usize = 14;
const UUID_LEN: usize = 36;

fn packed(rid: &str) -> Reason {
    if rid.len() != UUID_LEN {
        return Reason::NotTraceable;
    }
    match rid.as_bytes()[TRACE_BYTE] {
        b'a' => Reason::ServiceForced,
        b'9' => Reason::Sampling,
        b'b' => Reason::ClientForced,
        _ => Reason::NotTraceable,
    }
}

fn pack(h: &mut HeaderMap, rid: &str, reason: Reason, cfg: &RequestId) {
    if !cfg.pack_trace_reason || rid.len() != UUID_LEN || !rid.is_char_boundary(TRACE_BYTE) {
        return;
    }
    let c = match reason {
        Reason::ServiceForced => 'a',
        Reason::ClientForced => 'b',
        Reason::Sampling => '9',
        Reason::NotTraceable => '4',
    };
    let mut s = String::with_capacity(UUID_LEN);
    s.push_str(&rid[..TRACE_BYTE]);
    s.push(c);
    s.push_str(rid.get(TRACE_BYTE + 1..).unwrap_or_default());
    if let Ok(v) = HeaderValue::from_str(&s) {
        h.insert("x-request-id", v);
    }
}

/// Envoy's `featureEnabled(key, FractionalPercent)`: percentages are kept as a numerator over
/// 10,000 (two decimals), compared with `value % 10000`.
fn enabled(percent: f64, value: u64) -> bool {
    let numerator = (percent * 100.0).round() as u64;
    value % 10_000 < numerator
}

/// Decides and packs the decision into `x-request-id`. `random` is used when the request id
/// cannot be (not configured for sampling, or not hex): Envoy then draws one.
/// `internal`: the request came from an internal address (`internal_address_config`); only
/// those may force a trace with `x-envoy-force-trace`, as in Envoy.
pub fn decide(h: &mut HeaderMap, t: &Tracing, rid_cfg: &RequestId, internal: bool, random: u64) -> Reason {
    if !rid_cfg.use_request_id_for_trace_sampling {
        // Envoy: every request is a candidate; the tracer's own sampling (B3 headers, or a
        // coin) decides.
        return Reason::Sampling;
    }
    let Some(rid) = h.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return Reason::NotTraceable;
    };
    // The first 8 hex digits, as Envoy's `UUIDRequestIDExtension::getInteger`.
    let Some(value) = rid.get(..8).and_then(|p| u64::from_str_radix(p, 16).ok()) else {
        return Reason::NotTraceable;
    };
    let result = value % 10_000;
    let mut reason = if rid_cfg.pack_trace_reason { packed(&rid) } else { Reason::NotTraceable };
    if reason == Reason::NotTraceable {
        if h.contains_key("x-client-trace-id") && enabled(t.client_sampling, random) {
            reason = Reason::ClientForced;
            pack(h, &rid, reason, rid_cfg);
        } else if internal && h.contains_key("x-envoy-force-trace") {
            reason = Reason::ServiceForced;
            pack(h, &rid, reason, rid_cfg);
        } else if enabled(t.random_sampling, result) {
            reason = Reason::Sampling;
            pack(h, &rid, reason, rid_cfg);
        }
    }
    if reason != Reason::NotTraceable && !enabled(t.overall_sampling, result) {
        reason = Reason::NotTraceable;
        pack(h, &rid, reason, rid_cfg);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing(random: f64) -> Tracing {
        Tracing {
            client_sampling: 100.0,
            random_sampling: random,
            overall_sampling: 100.0,
            provider: None,
            custom_tags: Vec::new(),
            max_path_tag_length: 256,
        }
    }

    fn with_rid(rid: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_str(rid).unwrap());
        h
    }

    #[test]
    fn the_first_32_bits_of_the_id_decide_and_the_decision_is_packed() {
        // 0x00000457 = 1111 → 1111 % 10000 = 1111 < 1200 (12 %) → sampled, packed as '9'.
        let mut h = with_rid("00000457-1111-4111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(12.0), &RequestId::default(), true, 0), Reason::Sampling);
        assert_eq!(h["x-request-id"], "00000457-1111-9111-8111-111111111111");
        // 1111 ≥ 1100 (11 %) → not sampled, packed as '4' only if it was changed: it is not.
        let mut h = with_rid("00000457-1111-4111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(11.0), &RequestId::default(), true, 0), Reason::NotTraceable);
        assert_eq!(h["x-request-id"], "00000457-1111-4111-8111-111111111111");
    }

    #[test]
    fn a_packed_decision_holds_at_the_next_hop_whatever_its_sampling() {
        let mut h = with_rid("ffffffff-1111-9111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(0.0), &RequestId::default(), true, 0), Reason::Sampling);
        // Overall sampling still caps it, and the cap is packed for later hops.
        let mut t = tracing(0.0);
        t.overall_sampling = 0.0;
        assert_eq!(decide(&mut h, &t, &RequestId::default(), true, 0), Reason::NotTraceable);
        assert_eq!(h["x-request-id"], "ffffffff-1111-4111-8111-111111111111");
    }

    #[test]
    fn forced_and_client_traces() {
        let mut h = with_rid("ffffffff-1111-4111-8111-111111111111");
        h.insert("x-envoy-force-trace", HeaderValue::from_static("1"));
        // From outside (Envoy 1.40's default: no address is internal) it is ignored.
        assert_eq!(decide(&mut h.clone(), &tracing(0.0), &RequestId::default(), false, 0), Reason::NotTraceable);
        assert_eq!(decide(&mut h, &tracing(0.0), &RequestId::default(), true, 0), Reason::ServiceForced);
        assert_eq!(&h["x-request-id"].as_bytes()[14..15], b"a");
        let mut h = with_rid("ffffffff-1111-4111-8111-111111111111");
        h.insert("x-client-trace-id", HeaderValue::from_static("c1"));
        assert_eq!(decide(&mut h, &tracing(0.0), &RequestId::default(), true, 0), Reason::ClientForced);
        assert_eq!(&h["x-request-id"].as_bytes()[14..15], b"b");
    }

    #[test]
    fn no_packing_when_the_extension_says_so_and_no_id_no_trace() {
        let cfg = RequestId { pack_trace_reason: false, use_request_id_for_trace_sampling: true };
        let mut h = with_rid("00000001-1111-4111-8111-111111111111");
        assert_eq!(decide(&mut h, &tracing(100.0), &cfg, true, 0), Reason::Sampling);
        assert_eq!(h["x-request-id"], "00000001-1111-4111-8111-111111111111");
        assert_eq!(
            decide(&mut HeaderMap::new(), &tracing(100.0), &RequestId::default(), true, 0),
            Reason::NotTraceable
        );
    }
}
