//! The TLS half of detection: a bounds-checked ClientHello parser (SNI, ALPN) over records
//! that may arrive fragmented; anything that is not a well-formed hello is plaintext.

use super::{ClientHello, Detected, MAX_PEEK};

// === TLS ===

/// TLS `ContentType.handshake`: the only record a ClientHello travels in.
pub(super) const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;
/// Major version byte shared by SSL 3.0 and every TLS version.
pub(super) const TLS_MAJOR: u8 = 0x03;
pub(super) const RECORD_HEADER_LEN: usize = 5;
/// RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes.
pub(super) const MAX_RECORD_LEN: usize = 1 << 14;
pub(super) const HANDSHAKE_HEADER_LEN: usize = 4;
pub(super) const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub(super) const RANDOM_LEN: usize = 32;
pub(super) const MAX_SESSION_ID_LEN: usize = 32;
pub(super) const EXT_SERVER_NAME: u16 = 0;
pub(super) const EXT_ALPN: u16 = 16;
pub(super) const NAME_TYPE_HOST_NAME: u8 = 0;

/// Why parsing stopped short of a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    /// Everything seen so far is consistent; more bytes are needed.
    Incomplete,
    /// The bytes cannot be a well-formed ClientHello, however many follow.
    Malformed,
}

pub(super) fn detect_tls(buf: &[u8]) -> Detected {
    match parse_tls(buf) {
        Ok(hello) => Detected::Tls(hello),
        // The client is clearly speaking TLS but its hello does not fit the
        // peek budget: keep "tls" so the TLS chain can still be chosen.
        Err(Halt::Incomplete) if buf.len() >= MAX_PEEK => Detected::Tls(ClientHello::default()),
        Err(Halt::Incomplete) => Detected::NeedMore,
        Err(Halt::Malformed) => Detected::Plaintext(None),
    }
}

/// Parses the ClientHello out of the record stream in `buf`.
///
/// A partial hello is still parsed as far as it goes, so malformed input is
/// rejected as soon as the offending byte arrives rather than at the cap.
pub(super) fn parse_tls(buf: &[u8]) -> Result<ClientHello, Halt> {
    let handshake = reassemble_handshake(buf)?;
    let mut message = Reader::unbounded(&handshake);
    if message.u8()? != HANDSHAKE_CLIENT_HELLO {
        return Err(Halt::Malformed);
    }
    let len = message.u24()?;
    let body = message.vector(len)?;
    let complete = body.is_complete();
    let hello = parse_client_hello(body)?;
    if complete {
        Ok(hello)
    } else {
        Err(Halt::Incomplete)
    }
}

/// Concatenates handshake-record fragments until they hold the whole
/// ClientHello or the buffer runs out.
///
/// A ClientHello may legally be fragmented over several records (RFC 8446
/// §5.1), and records after the hello (e.g. early data) are none of our
/// business, so reading stops as soon as the hello is whole.
pub(super) fn reassemble_handshake(buf: &[u8]) -> Result<Vec<u8>, Halt> {
    let mut handshake = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() && !hello_complete(&handshake) {
        let (fragment, after) = next_record(rest)?;
        handshake.extend_from_slice(fragment);
        rest = after;
    }
    Ok(handshake)
}

/// Splits one handshake record off the front of `rest`, returning its
/// (possibly partial) fragment and the bytes after it.
///
/// A record header that has only partly arrived yields an empty fragment and
/// nothing after it, once the bytes present have been checked.
pub(super) fn next_record(rest: &[u8]) -> Result<(&[u8], &[u8]), Halt> {
    if rest.first().is_some_and(|&b| b != CONTENT_TYPE_HANDSHAKE) || rest.get(1).is_some_and(|&b| b != TLS_MAJOR) {
        return Err(Halt::Malformed);
    }
    let (Some(&hi), Some(&lo)) = (rest.get(3), rest.get(4)) else {
        return Ok((&[], &[]));
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    // RFC 8446 §5.1: handshake records are never empty and never oversized.
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(Halt::Malformed);
    }
    let body = rest.get(RECORD_HEADER_LEN..).unwrap_or_default();
    Ok(body.split_at_checked(len).unwrap_or((body, &[])))
}

/// Whether the reassembled bytes already hold the handshake header and the
/// whole message body it announces.
pub(super) fn hello_complete(handshake: &[u8]) -> bool {
    let Some(&[a, b, c]) = handshake.get(1..HANDSHAKE_HEADER_LEN) else {
        return false;
    };
    handshake.len().saturating_sub(HANDSHAKE_HEADER_LEN) >= u24(a, b, c)
}

/// Walks a ClientHello body (RFC 8446 §4.1.2), keeping SNI and ALPN.
///
/// Lengths must nest exactly and extensions must not repeat, as BoringSSL
/// demands, so that a hello called "tls" here is not one Envoy's TLS stack
/// would refuse as malformed.
pub(super) fn parse_client_hello(mut body: Reader<'_>) -> Result<ClientHello, Halt> {
    let legacy_version = body.bytes(2)?;
    if legacy_version.first() != Some(&TLS_MAJOR) {
        return Err(Halt::Malformed);
    }
    body.bytes(RANDOM_LEN)?;
    let session_id = body.u8_vector()?;
    if session_id.declared_len() > MAX_SESSION_ID_LEN {
        return Err(Halt::Malformed);
    }
    let cipher_suites = body.u16_vector()?;
    if cipher_suites.declared_len() == 0 || cipher_suites.declared_len() % 2 != 0 {
        return Err(Halt::Malformed);
    }
    let compression_methods = body.u8_vector()?;
    if compression_methods.declared_len() == 0 {
        return Err(Halt::Malformed);
    }

    let mut hello = ClientHello::default();
    // Hellos from before RFC 3546 may stop here: no extensions at all.
    if body.at_end() {
        return Ok(hello);
    }
    let mut extensions = body.u16_vector()?;
    if !body.at_end() {
        return Err(Halt::Malformed);
    }
    let mut seen = Vec::new();
    while !extensions.at_end() {
        let ext_type = extensions.u16()?;
        let data = extensions.u16_vector()?;
        seen.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => hello.sni = parse_server_name(data)?,
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            _ => {}
        }
    }
    if has_duplicates(seen) {
        return Err(Halt::Malformed);
    }
    Ok(hello)
}

/// RFC 8446 §4.2 forbids repeating an extension, and BoringSSL refuses such a
/// hello. Sorting keeps this O(n log n) for hellos stuffed with extensions.
pub(super) fn has_duplicates(mut types: Vec<u16>) -> bool {
    types.sort_unstable();
    types.windows(2).any(|w| matches!(w, [a, b] if a == b))
}

/// Reads the `server_name` extension (RFC 6066 §3), returning the first
/// host name if it is usable for matching.
pub(super) fn parse_server_name(mut data: Reader<'_>) -> Result<Option<String>, Halt> {
    let mut list = data.u16_vector()?;
    if !data.at_end() || list.declared_len() == 0 {
        return Err(Halt::Malformed);
    }
    let mut sni = None;
    let mut seen_host_name = false;
    while !list.at_end() {
        let name_type = list.u8()?;
        let name = list.u16_vector()?.remaining_bytes()?;
        if name_type == NAME_TYPE_HOST_NAME && !seen_host_name {
            seen_host_name = true;
            sni = host_name(name);
        }
    }
    Ok(sni)
}

/// A host name fit for comparison with configured `server_names`, or `None`
/// for values no configuration could name (empty, embedded NUL, not UTF-8).
pub(super) fn host_name(name: &[u8]) -> Option<String> {
    if name.is_empty() || name.contains(&0) {
        return None;
    }
    std::str::from_utf8(name).ok().map(str::to_ascii_lowercase)
}

/// Reads the ALPN extension (RFC 7301 §3.1), keeping the UTF-8 names in order.
pub(super) fn parse_alpn(mut data: Reader<'_>) -> Result<Vec<String>, Halt> {
    let mut list = data.u16_vector()?;
    if !data.at_end() || list.declared_len() == 0 {
        return Err(Halt::Malformed);
    }
    let mut protocols = Vec::new();
    while !list.at_end() {
        let name = list.u8_vector()?.remaining_bytes()?;
        // RFC 7301: empty protocol names MUST NOT be sent.
        if name.is_empty() {
            return Err(Halt::Malformed);
        }
        if let Ok(name) = std::str::from_utf8(name) {
            protocols.push(name.to_owned());
        }
    }
    Ok(protocols)
}

pub(super) fn u24(a: u8, b: u8, c: u8) -> usize {
    (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
}

// === impl Reader ===

/// A cursor over a length-delimited TLS structure of which only a prefix may
/// have arrived.
///
/// `declared` is the length the enclosing length field promised and `data`
/// the part of it actually buffered. Overrunning `declared` means the input is
/// malformed no matter what follows; overrunning only `data` means the rest
/// has not arrived yet. Keeping the two apart is what lets a partial hello be
/// rejected early yet never rejected wrongly.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    declared: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader for a stream with no enclosing length (the handshake layer).
    fn unbounded(data: &'a [u8]) -> Self {
        Reader { data, declared: usize::MAX, pos: 0 }
    }

    fn bounded(data: &'a [u8], declared: usize) -> Self {
        Reader { data: data.get(..declared).unwrap_or(data), declared, pos: 0 }
    }

    fn declared_len(&self) -> usize {
        self.declared
    }

    fn remaining(&self) -> usize {
        self.declared.saturating_sub(self.pos)
    }

    fn at_end(&self) -> bool {
        self.remaining() == 0
    }

    /// Whether every declared byte has been buffered.
    fn is_complete(&self) -> bool {
        self.data.len() >= self.declared
    }

    /// Claims the next `len` declared bytes, returning where they start.
    fn claim(&mut self, len: usize) -> Result<usize, Halt> {
        if len > self.remaining() {
            return Err(Halt::Malformed);
        }
        let start = self.pos;
        self.pos = start.checked_add(len).ok_or(Halt::Malformed)?;
        Ok(start)
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], Halt> {
        let start = self.claim(len)?;
        self.data.get(start..self.pos).ok_or(Halt::Incomplete)
    }

    fn remaining_bytes(&mut self) -> Result<&'a [u8], Halt> {
        self.bytes(self.remaining())
    }

    /// Carves out a nested structure of `len` declared bytes, whether or not
    /// they have all arrived, so its own checks can run on what has.
    fn vector(&mut self, len: usize) -> Result<Reader<'a>, Halt> {
        let start = self.claim(len)?;
        let available = self.data.get(start..).unwrap_or_default();
        Ok(Reader::bounded(available, len))
    }

    fn u8_vector(&mut self) -> Result<Reader<'a>, Halt> {
        let len = usize::from(self.u8()?);
        self.vector(len)
    }

    fn u16_vector(&mut self) -> Result<Reader<'a>, Halt> {
        let len = usize::from(self.u16()?);
        self.vector(len)
    }

    fn u8(&mut self) -> Result<u8, Halt> {
        match self.bytes(1)? {
            &[a] => Ok(a),
            _ => Err(Halt::Malformed),
        }
    }

    fn u16(&mut self) -> Result<u16, Halt> {
        match self.bytes(2)? {
            &[a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(Halt::Malformed),
        }
    }

    fn u24(&mut self) -> Result<usize, Halt> {
        match self.bytes(3)? {
            &[a, b, c] => Ok(u24(a, b, c)),
            _ => Err(Halt::Malformed),
        }
    }
}
