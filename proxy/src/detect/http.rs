//! The plaintext half of detection: the HTTP/2 prior-knowledge preface and an HTTP/1 request
//! line, as Envoy's `http_inspector` recognises them.

use super::{Detected, HttpKind, MAX_PEEK};

// === plaintext ===

/// RFC 9113 §3.4: what a prior-knowledge HTTP/2 client sends first.
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Envoy's `http_inspector` accepts any token as a method; the cap stops a
/// long uppercase word (or binary junk) from being buffered as one.
pub(super) const MAX_METHOD_LEN: usize = 20;

/// How far a buffer agrees with an expected byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prefix {
    Mismatch,
    Partial,
    Complete,
}

/// How far a buffer agrees with an HTTP/1 request line.
pub(super) enum RequestLine {
    Invalid,
    Partial,
    Complete(HttpKind),
}

pub(super) fn detect_plaintext(buf: &[u8]) -> Detected {
    // The preface's first line is itself a well-formed request line for an
    // unknown version, so it must be recognised before HTTP/1 gets a look.
    match prefix_state(buf, H2_PREFACE) {
        Prefix::Complete => return Detected::Plaintext(Some(HttpKind::H2c)),
        Prefix::Partial => return Detected::NeedMore,
        Prefix::Mismatch => {}
    }
    match request_line(buf) {
        RequestLine::Complete(kind) => Detected::Plaintext(Some(kind)),
        RequestLine::Partial if buf.len() < MAX_PEEK => Detected::NeedMore,
        RequestLine::Partial | RequestLine::Invalid => Detected::Plaintext(None),
    }
}

pub(super) fn prefix_state(buf: &[u8], expected: &[u8]) -> Prefix {
    if buf.starts_with(expected) {
        Prefix::Complete
    } else if expected.starts_with(buf) {
        Prefix::Partial
    } else {
        Prefix::Mismatch
    }
}

/// Matches `METHOD SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3) against
/// the start of `buf`, deciding as early as the bytes allow.
pub(super) fn request_line(buf: &[u8]) -> RequestLine {
    let (method, after_method) = split_at_space(buf);
    if !method.iter().all(|&b| is_method_byte(b)) || method.len() > MAX_METHOD_LEN {
        return RequestLine::Invalid;
    }
    let Some(rest) = after_method else {
        return RequestLine::Partial;
    };
    if method.is_empty() {
        return RequestLine::Invalid;
    }
    let (target, after_target) = split_at_space(rest);
    if !target.iter().all(|&b| is_target_byte(b)) {
        return RequestLine::Invalid;
    }
    let Some(version) = after_target else {
        return RequestLine::Partial;
    };
    if target.is_empty() {
        return RequestLine::Invalid;
    }
    http_version(version)
}

/// Splits `buf` at its first space, returning what follows the space if one
/// has arrived.
pub(super) fn split_at_space(buf: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut parts = buf.splitn(2, |&b| b == b' ');
    (parts.next().unwrap_or_default(), parts.next())
}

pub(super) fn http_version(buf: &[u8]) -> RequestLine {
    let candidates = [(&b"HTTP/1.1\r\n"[..], HttpKind::Http11), (&b"HTTP/1.0\r\n"[..], HttpKind::Http10)];
    let mut partial = false;
    for (expected, kind) in candidates {
        match prefix_state(buf, expected) {
            Prefix::Complete => return RequestLine::Complete(kind),
            Prefix::Partial => partial = true,
            Prefix::Mismatch => {}
        }
    }
    if partial {
        RequestLine::Partial
    } else {
        RequestLine::Invalid
    }
}

/// Upper-case token characters: real methods are upper case, and refusing
/// lower case keeps ordinary text protocols from looking like HTTP.
pub(super) fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// Visible ASCII: the request-target grammar never allows controls, spaces
/// or raw non-ASCII.
pub(super) fn is_target_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}
