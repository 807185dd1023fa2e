//! Protocol detection over the first bytes of an accepted connection.
//!
//! Envoy chooses a listener's filter chain by `transport_protocol` ("tls" or
//! "raw_buffer"), `server_names` and `application_protocols`, values that its
//! `tls_inspector` and `http_inspector` listener filters derive by peeking at
//! what the client sends first. Isthmus has to make the same decision before
//! any filter chain (and therefore any TLS terminator or HTTP codec) exists,
//! so this module makes it as a pure function over a byte buffer: the caller
//! owns the socket, the timeout and the buffering, and calls [`detect`] again
//! after every read until the answer is something other than
//! [`Detected::NeedMore`] or it has buffered [`MAX_PEEK`] bytes.
//!
//! The input is attacker-controlled and arrives before any authentication, so
//! every length is bounds-checked, arithmetic is checked, and no input can
//! make this module panic. Inputs that merely *start* like TLS but do not hold
//! a well-formed ClientHello are reported as plaintext, which is what Envoy
//! does when BoringSSL cannot parse the hello (`tls_inspector.tls_not_found`).
//!
//! Detection is prefix-stable: once [`detect`] returns anything other than
//! [`Detected::NeedMore`] for a buffer, appending bytes to that buffer does not
//! change the answer (below [`MAX_PEEK`]), so a caller never has to revisit a
//! decision.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod http;
mod incremental;
#[cfg(test)]
mod tests;
mod tls;

use self::http::detect_plaintext;
pub use self::incremental::Detector;
use self::tls::{detect_tls, CONTENT_TYPE_HANDSHAKE};

/// Maximum bytes the caller should buffer before giving up and treating the stream as plaintext/unknown.
///
/// A peeking listener must not let a client pin unbounded memory by
/// trickling an endless first line or ClientHello. 16 KiB is the largest
/// plaintext TLS record, so any ordinary ClientHello fits, as does any
/// sensible HTTP/1 request line.
pub const MAX_PEEK: usize = 16 * 1024;

/// What the first bytes of a connection say about its protocol.
///
/// This is the input to filter-chain matching: the variant decides
/// `transport_protocol`, and the payload supplies `server_names` and
/// `application_protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// Not enough bytes yet to decide; read more (the caller applies a timeout and a cap).
    NeedMore,
    /// A TLS ClientHello: Envoy's transport_protocol "tls".
    Tls(ClientHello),
    /// Plaintext; `http` says which HTTP (if any) was recognised, mirroring Envoy's http_inspector
    /// application protocols "h2c" and "http/1.1" (and "http/1.0").
    Plaintext(Option<HttpKind>),
}

/// The HTTP flavour a plaintext connection opened with.
///
/// Filter chains can be selected per application protocol, and a plaintext
/// listener often needs to route HTTP/1 and prior-knowledge HTTP/2 to
/// different codecs, so the flavour is kept rather than a bare "is HTTP".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpKind {
    /// The request line ended in `HTTP/1.0`.
    Http10,
    /// The request line ended in `HTTP/1.1`.
    Http11,
    /// The connection opened with the HTTP/2 prior-knowledge preface.
    H2c,
}

/// The parts of a TLS ClientHello that filter-chain matching consults.
///
/// Only what Envoy matches on is kept, so a detected hello is cheap to carry
/// around until a filter chain (and its TLS context) is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The `server_name` host name, ASCII-lower-cased so it compares directly
    /// with configured `server_names`; `None` when absent, empty, or not UTF-8.
    pub sni: Option<String>,
    /// The ALPN protocol names in the client's preference order; names that are
    /// not UTF-8 are left out, since they cannot equal any configured name.
    pub alpn: Vec<String>,
}

/// Decides, from the bytes buffered so far, which protocol a connection speaks.
///
/// Being a pure function over the buffer, it can be called again after every
/// read without any per-connection parser state, and it is trivially testable.
/// Bytes past [`MAX_PEEK`] are never examined, so the answer cannot depend on
/// whether a caller happened to over-read.
#[must_use]
pub fn detect(buf: &[u8]) -> Detected {
    let buf = buf.get(..MAX_PEEK).unwrap_or(buf);
    match buf.first() {
        None => Detected::NeedMore,
        Some(&CONTENT_TYPE_HANDSHAKE) => detect_tls(buf),
        Some(_) => detect_plaintext(buf),
    }
}

// === impl HttpKind ===

impl HttpKind {
    /// The application-protocol name Envoy's `http_inspector` reports, so that
    /// `filter_chain_match.application_protocols` can be matched verbatim.
    #[must_use]
    pub fn alpn(&self) -> &'static str {
        match self {
            HttpKind::Http10 => "http/1.0",
            HttpKind::Http11 => "http/1.1",
            HttpKind::H2c => "h2c",
        }
    }
}
