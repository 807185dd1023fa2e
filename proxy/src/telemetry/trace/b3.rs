//! B3 propagation (Zipkin's, what Envoy's Zipkin tracer reads and writes): the multi-header
//! form (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`) and
//! the single `b3` header.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

const B3: HeaderName = HeaderName::from_static("b3");
const TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const PARENT_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Lower-case hex of `v`, 16 digits, on the stack.
pub fn hex16(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// A span's identity within a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// High 64 bits of a 128-bit trace id (0 for 64-bit ids).
    pub trace_high: u64,
    /// Low 64 bits of the trace id.
    pub trace_low: u64,
    /// This span.
    pub span_id: u64,
    /// Its parent (0 = root).
    pub parent_id: u64,
    /// Whether the trace is reported.
    pub sampled: bool,
}

impl SpanContext {
    /// The trace id as Zipkin writes it: 16 or 32 hex digits.
    pub fn trace_id(&self) -> String {
        if self.trace_high != 0 {
            format!("{:016x}{:016x}", self.trace_high, self.trace_low)
        } else {
            format!("{:016x}", self.trace_low)
        }
    }
}

fn hex64(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 16).then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

/// A trace id of 16 or 32 hex digits → (high, low).
fn trace_id(s: &str) -> Option<(u64, u64)> {
    match s.len() {
        32 => Some((hex64(s.get(..16)?)?, hex64(s.get(16..)?)?)),
        1..=16 => Some((0, hex64(s)?)),
        _ => None,
    }
}

fn sampled_flag(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// What the caller sent: its span (as parent-to-be) and its sampling decision, each when
/// present and well formed. A malformed context is ignored (a new trace starts), as Envoy's
/// extractor does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The caller's span context (`sampled` here is the caller's decision or `false`).
    pub context: Option<SpanContext>,
    /// `x-b3-sampled` / the `b3` sampling state, when given.
    pub sampled: Option<bool>,
    /// The caller used the single `b3` header: the context goes on in that form (Envoy's).
    pub single: bool,
}

/// Reads B3 from request headers.
pub fn extract(h: &HeaderMap) -> Extracted {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    if let Some(single) = get("b3") {
        return single_header(single);
    }
    let sampled =
        get("x-b3-flags").filter(|f| *f == "1").map(|_| true).or_else(|| get("x-b3-sampled").and_then(sampled_flag));
    let context = (|| {
        let (trace_high, trace_low) = trace_id(get("x-b3-traceid")?)?;
        let span_id = hex64(get("x-b3-spanid")?)?;
        let parent_id = match get("x-b3-parentspanid") {
            Some(p) => hex64(p)?,
            None => 0,
        };
        Some(SpanContext { trace_high, trace_low, span_id, parent_id, sampled: sampled.unwrap_or(false) })
    })();
    Extracted { context, sampled, single: false }
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`, or just `b3: {sampled}`.
fn single_header(v: &str) -> Extracted {
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() == 1 {
        return Extracted { context: None, sampled: sampled_flag(parts[0]), single: true };
    }
    let sampled = parts.get(2).and_then(|s| sampled_flag(s));
    let context = (|| {
        let (trace_high, trace_low) = trace_id(parts[0])?;
        let span_id = hex64(parts.get(1)?)?;
        let parent_id = match parts.get(3) {
            Some(p) => hex64(p)?,
            None => 0,
        };
        Some(SpanContext { trace_high, trace_low, span_id, parent_id, sampled: sampled.unwrap_or(false) })
    })();
    Extracted { context, sampled, single: true }
}

/// Writes the context for the upstream in the form the caller used (Envoy's Zipkin
/// `injectContext`): the single `b3` header when it came that way, else the multi-header form.
pub fn inject_as(h: &mut HeaderMap, c: &SpanContext, single: bool) {
    if !single {
        return inject(h, c);
    }
    for n in [TRACE_ID, SPAN_ID, PARENT_ID, SAMPLED, FLAGS] {
        h.remove(n);
    }
    let mut v = format!("{}-{:016x}-{}", c.trace_id(), c.span_id, if c.sampled { "1" } else { "0" });
    if c.parent_id != 0 {
        v.push_str(&format!("-{:016x}", c.parent_id));
    }
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(B3, v);
    }
}

/// Writes the multi-header form for the upstream (Envoy's Zipkin `injectContext`): the
/// single header, if any, is replaced so the two cannot disagree.
pub fn inject(h: &mut HeaderMap, c: &SpanContext) {
    h.remove(B3);
    h.remove(FLAGS);
    let value = |b: &[u8]| HeaderValue::from_bytes(b).ok();
    let trace = if c.trace_high != 0 {
        let mut t = [0u8; 32];
        t[..16].copy_from_slice(&hex16(c.trace_high));
        t[16..].copy_from_slice(&hex16(c.trace_low));
        value(&t)
    } else {
        value(&hex16(c.trace_low))
    };
    if let Some(v) = trace {
        h.insert(TRACE_ID, v);
    }
    if let Some(v) = value(&hex16(c.span_id)) {
        h.insert(SPAN_ID, v);
    }
    if c.parent_id != 0 {
        if let Some(v) = value(&hex16(c.parent_id)) {
            h.insert(PARENT_ID, v);
        }
    } else {
        h.remove(PARENT_ID);
    }
    h.insert(SAMPLED, HeaderValue::from_static(if c.sampled { "1" } else { "0" }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn multi_header_round_trip_with_a_128_bit_id() {
        let h = headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-parentspanid", "0020000000000001"),
            ("x-b3-sampled", "1"),
        ]);
        let e = extract(&h);
        let c = e.context.unwrap();
        assert_eq!(c.trace_id(), "463ac35c9f6413ad48485a3953bb6124");
        assert_eq!((c.span_id, c.parent_id, e.sampled), (0xa2fb4a1d1a96d312, 0x0020000000000001, Some(true)));
        let mut out = HeaderMap::new();
        inject(&mut out, &c);
        assert_eq!(extract(&out), e);
    }

    #[test]
    fn single_header_forms() {
        let e = extract(&headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]));
        let c = e.context.unwrap();
        assert_eq!(
            (c.trace_low, c.span_id, c.parent_id, e.sampled),
            (0x64fe8b2a57d3eff7, 0xe457b5a2e4d86bd1, 0x05e3ac9a4f6e3b90, Some(true))
        );
        assert_eq!(extract(&headers(&[("b3", "0")])), Extracted { context: None, sampled: Some(false), single: true });
        let mut out = HeaderMap::new();
        inject_as(&mut out, &c, true);
        assert_eq!(out["b3"], "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90");
        assert_eq!(extract(&headers(&[("b3", "d")])).sampled, Some(true));
    }

    #[test]
    fn malformed_ids_start_a_new_trace() {
        let e = extract(&headers(&[("x-b3-traceid", "not-hex"), ("x-b3-spanid", "1"), ("x-b3-sampled", "0")]));
        assert_eq!(e, Extracted { context: None, sampled: Some(false), single: false });
        assert!(extract(&headers(&[("x-b3-traceid", "1234"), ("x-b3-spanid", "")])).context.is_none());
    }
}
