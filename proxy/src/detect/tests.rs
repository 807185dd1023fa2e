//! Detection cases: well-formed, fragmented, truncated and malformed ClientHellos, HTTP/2
//! prefaces and HTTP/1 request lines, and a bounded fuzz over random inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use super::http::*;
use super::tls::*;
use super::*;

// === ClientHello assembly ===

fn u16_prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn u8_prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body);
    out
}

fn extension(ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut out = ext_type.to_be_bytes().to_vec();
    out.extend(u16_prefixed(data));
    out
}

fn sni_ext_data(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![NAME_TYPE_HOST_NAME];
    entry.extend(u16_prefixed(name));
    u16_prefixed(&entry)
}

fn alpn_ext_data(protocols: &[&[u8]]) -> Vec<u8> {
    let list: Vec<u8> = protocols.iter().flat_map(|p| u8_prefixed(p)).collect();
    u16_prefixed(&list)
}

/// Assembles a ClientHello body field by field; `extensions` are raw
/// (type, data) pairs so tests can inject anything.
struct HelloBuilder {
    legacy_version: [u8; 2],
    session_id: Vec<u8>,
    cipher_suites: Vec<u8>,
    compression: Vec<u8>,
    extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl HelloBuilder {
    fn new() -> Self {
        HelloBuilder {
            legacy_version: [0x03, 0x03],
            session_id: (0..32).collect(),
            cipher_suites: vec![0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f],
            compression: vec![0],
            extensions: Some(vec![
                // supported_versions: TLS 1.3, 1.2
                (43, vec![4, 0x03, 0x04, 0x03, 0x03]),
            ]),
        }
    }

    fn sni(self, name: &str) -> Self {
        self.ext(EXT_SERVER_NAME, sni_ext_data(name.as_bytes()))
    }

    fn alpn(self, protocols: &[&str]) -> Self {
        let protocols: Vec<&[u8]> = protocols.iter().map(|p| p.as_bytes()).collect();
        self.ext(EXT_ALPN, alpn_ext_data(&protocols))
    }

    fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions.get_or_insert_with(Vec::new).push((ext_type, data));
        self
    }

    fn body(&self) -> Vec<u8> {
        let mut out = self.legacy_version.to_vec();
        out.extend((0..32u8).map(|i| i.wrapping_mul(7)));
        out.extend(u8_prefixed(&self.session_id));
        out.extend(u16_prefixed(&self.cipher_suites));
        out.extend(u8_prefixed(&self.compression));
        if let Some(extensions) = &self.extensions {
            let block: Vec<u8> = extensions.iter().flat_map(|(t, d)| extension(*t, d)).collect();
            out.extend(u16_prefixed(&block));
        }
        out
    }

    /// The ClientHello handshake message (header + body).
    fn handshake(&self) -> Vec<u8> {
        handshake_message(HANDSHAKE_CLIENT_HELLO, &self.body())
    }

    /// The hello in a single TLS record.
    fn record(&self) -> Vec<u8> {
        records(&self.handshake(), MAX_RECORD_LEN)
    }
}

fn handshake_message(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut out = vec![msg_type, len[1], len[2], len[3]];
    out.extend_from_slice(body);
    out
}

/// Wraps handshake bytes in TLS records of at most `fragment` bytes each.
fn records(handshake: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in handshake.chunks(fragment) {
        out.extend_from_slice(&[CONTENT_TYPE_HANDSHAKE, 0x03, 0x01]);
        out.extend(u16_prefixed(chunk));
    }
    out
}

fn tls(sni: Option<&str>, alpn: &[&str]) -> Detected {
    Detected::Tls(ClientHello { sni: sni.map(str::to_owned), alpn: alpn.iter().map(|p| (*p).to_owned()).collect() })
}

fn typical() -> HelloBuilder {
    HelloBuilder::new().sni("example.com").alpn(&["h2", "http/1.1"])
}

fn assert_every_prefix_needs_more(buf: &[u8]) {
    for len in 0..buf.len() {
        assert_eq!(detect(&buf[..len]), Detected::NeedMore, "prefix {len}");
    }
}

/// A ClientHello captured from `openssl s_client -servername Example.COM
/// -alpn h2,http/1.1` (OpenSSL 3.0), including its record header.
const OPENSSL_HELLO: &str = "160301014a010001460303ab40f9f96cb1e4f4499a2a9150b16e7549cf22930d\
    6120a9547996358110319c20936f4a15a5a01d3d3b3190233eb4463a1d1f1a38d05911dacba46b5a05929\
    10a003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0\
    140039c009c0130033009d009c003d003c0035002f00ff010000bf00000010000e00000b4578616d706c65\
    2e434f4d000b000403000102000a00160014001d0017001e0019001801000101010201030104002300000\
    010000e000c02683208687474702f312e310016000000170000000d002a00280403050306030807080808\
    09080a080b080408050806040105010601030303010302040205020602002b0009080304030303020301\
    002d00020101003300260024001d002065797bc1e8f11e00fd429c4866003ed8586912aef469c588c5ace\
    36cb84cbe79";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

// === TLS: well-formed ===

#[test]
fn empty_buffer_needs_more() {
    assert_eq!(detect(&[]), Detected::NeedMore);
}

#[test]
fn hello_with_sni_and_alpn() {
    assert_eq!(detect(&typical().record()), tls(Some("example.com"), &["h2", "http/1.1"]));
}

#[test]
fn captured_openssl_hello() {
    let hello = hex(OPENSSL_HELLO);
    assert_eq!(hello.len(), 335);
    assert_eq!(detect(&hello), tls(Some("example.com"), &["h2", "http/1.1"]));
    assert_every_prefix_needs_more(&hello);
}

#[test]
fn captured_openssl_hello_split_across_records() {
    let hello = hex(OPENSSL_HELLO);
    let handshake = &hello[RECORD_HEADER_LEN..];
    for fragment in [1, 3, 4, 100, 200] {
        let split = records(handshake, fragment);
        assert_eq!(detect(&split), tls(Some("example.com"), &["h2", "http/1.1"]), "fragment {fragment}");
    }
}

#[test]
fn sni_is_lower_cased() {
    let hello = HelloBuilder::new().sni("WWW.Example.COM").record();
    assert_eq!(detect(&hello), tls(Some("www.example.com"), &[]));
}

#[test]
fn hello_without_sni_or_alpn() {
    assert_eq!(detect(&HelloBuilder::new().record()), tls(None, &[]));
}

#[test]
fn hello_without_extensions_block() {
    let mut builder = HelloBuilder::new();
    builder.extensions = None;
    assert_eq!(detect(&builder.record()), tls(None, &[]));
}

#[test]
fn hello_with_empty_extensions_block() {
    let mut builder = HelloBuilder::new();
    builder.extensions = Some(vec![]);
    assert_eq!(detect(&builder.record()), tls(None, &[]));
}

#[test]
fn hello_with_empty_session_id() {
    let mut builder = typical();
    builder.session_id.clear();
    assert_eq!(detect(&builder.record()), tls(Some("example.com"), &["h2", "http/1.1"]));
}

#[test]
fn unknown_extensions_are_skipped() {
    let hello = HelloBuilder::new()
        .ext(0xff01, vec![0])
        .ext(21, vec![0; 300])
        .sni("a.example")
        .ext(0x1a1a, vec![])
        .alpn(&["h2"])
        .record();
    assert_eq!(detect(&hello), tls(Some("a.example"), &["h2"]));
}

#[test]
fn unusable_host_names_give_no_sni() {
    for name in [&b"caf\xc3"[..], b"", b"a\0b", b"\xff\xfe"] {
        let hello = HelloBuilder::new().ext(EXT_SERVER_NAME, sni_ext_data(name)).alpn(&["h2"]).record();
        assert_eq!(detect(&hello), tls(None, &["h2"]), "{name:?}");
    }
}

#[test]
fn non_ascii_utf8_host_name_is_kept() {
    let hello = HelloBuilder::new().sni("BÜCHER.example").record();
    assert_eq!(detect(&hello), tls(Some("bÜcher.example"), &[]));
}

#[test]
fn first_host_name_entry_wins() {
    let mut list = vec![7u8];
    list.extend(u16_prefixed(b"ignored.type"));
    list.push(NAME_TYPE_HOST_NAME);
    list.extend(u16_prefixed(b"first.example"));
    list.push(NAME_TYPE_HOST_NAME);
    list.extend(u16_prefixed(b"second.example"));
    let hello = HelloBuilder::new().ext(EXT_SERVER_NAME, u16_prefixed(&list)).record();
    assert_eq!(detect(&hello), tls(Some("first.example"), &[]));
}

#[test]
fn only_other_name_types_give_no_sni() {
    let mut list = vec![1u8];
    list.extend(u16_prefixed(b"not-a-host"));
    let hello = HelloBuilder::new().ext(EXT_SERVER_NAME, u16_prefixed(&list)).record();
    assert_eq!(detect(&hello), tls(None, &[]));
}

#[test]
fn non_utf8_alpn_names_are_skipped() {
    let hello = HelloBuilder::new().ext(EXT_ALPN, alpn_ext_data(&[b"h2", b"\xff\x00", b"http/1.1"])).record();
    assert_eq!(detect(&hello), tls(None, &["h2", "http/1.1"]));
}

#[test]
fn record_minor_versions_are_accepted() {
    for minor in [0x00, 0x01, 0x03] {
        let mut hello = typical().record();
        hello[2] = minor;
        assert_eq!(detect(&hello), tls(Some("example.com"), &["h2", "http/1.1"]));
    }
}

#[test]
fn bytes_after_hello_are_ignored() {
    let mut buf = typical().record();
    // Early data, then garbage: neither is part of the hello.
    buf.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb]);
    buf.extend_from_slice(b"\x00\xff garbage");
    assert_eq!(detect(&buf), tls(Some("example.com"), &["h2", "http/1.1"]));
}

#[test]
fn trailing_bytes_in_final_record_are_ignored() {
    let mut handshake = typical().handshake();
    handshake.extend(handshake_message(99, b"extra"));
    assert_eq!(detect(&records(&handshake, MAX_RECORD_LEN)), tls(Some("example.com"), &["h2", "http/1.1"]));
}

// === TLS: fragmentation and truncation ===

#[test]
fn hello_split_across_records() {
    let handshake = typical().handshake();
    for fragment in 1..=handshake.len() {
        assert_eq!(
            detect(&records(&handshake, fragment)),
            tls(Some("example.com"), &["h2", "http/1.1"]),
            "fragment {fragment}"
        );
    }
}

#[test]
fn truncated_hello_needs_more_at_every_length() {
    assert_every_prefix_needs_more(&typical().record());
    assert_every_prefix_needs_more(&HelloBuilder::new().record());
}

#[test]
fn truncated_split_hello_needs_more_at_every_length() {
    let handshake = typical().handshake();
    for fragment in [1, 2, 3, 5, 17, 64] {
        assert_every_prefix_needs_more(&records(&handshake, fragment));
    }
}

/// A hello padded past the peek budget, fragmented into maximal records.
fn oversized_hello() -> Vec<u8> {
    let handshake = HelloBuilder::new().ext(21, vec![0; 20_000]).sni("big.example").handshake();
    records(&handshake, MAX_RECORD_LEN)
}

#[test]
fn oversized_hello_is_tls_at_peek_limit() {
    let buf = oversized_hello();
    assert!(buf.len() > MAX_PEEK);
    assert_eq!(detect(&buf[..MAX_PEEK - 1]), Detected::NeedMore);
    assert_eq!(detect(&buf[..MAX_PEEK]), tls(None, &[]));
    // Bytes past the budget are not looked at, even if buffered.
    assert_eq!(detect(&buf), tls(None, &[]));
}

#[test]
fn hello_split_over_records_awaits_the_next_one() {
    let handshake = typical().handshake();
    let first = records(&handshake[..100], MAX_RECORD_LEN);
    assert_eq!(detect(&first), Detected::NeedMore);
    let mut whole = first.clone();
    whole.extend(records(&handshake[100..], MAX_RECORD_LEN));
    assert_eq!(detect(&whole), tls(Some("example.com"), &["h2", "http/1.1"]));
}

// === TLS: malformed ===

fn malformed(buf: &[u8]) {
    let head = &buf[..buf.len().min(64)];
    assert_eq!(detect(buf), Detected::Plaintext(None), "{head:02x?}");
}

#[test]
fn record_header_errors() {
    malformed(&[0x16, 0x02]);
    malformed(&[0x16, 0x04, 0x01, 0x00, 0x10]);
    malformed(&[0x16, 0x03, 0x01, 0x00, 0x00]);
    malformed(&[0x16, 0x03, 0x01, 0x40, 0x01]);
    malformed(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x01]);
    assert_eq!(detect(&[0x16]), Detected::NeedMore);
    assert_eq!(detect(&[0x16, 0x03, 0x01, 0x40]), Detected::NeedMore);
    assert_eq!(detect(&[0x16, 0x03, 0x01, 0x40, 0x00]), Detected::NeedMore);
}

#[test]
fn non_client_hello_handshake_is_rejected_early() {
    // ServerHello, and a record that has barely started.
    malformed(&[0x16, 0x03, 0x01, 0x00, 0x30, 0x02]);
    let mut server_hello = typical().record();
    server_hello[RECORD_HEADER_LEN] = 2;
    malformed(&server_hello);
}

#[test]
fn second_record_of_wrong_type_is_rejected() {
    let handshake = typical().handshake();
    let mut buf = records(&handshake[..10], MAX_RECORD_LEN);
    let mut rest = records(&handshake[10..], MAX_RECORD_LEN);
    rest[0] = 0x17;
    buf.extend(rest);
    malformed(&buf);
}

#[test]
fn body_field_errors() {
    let mut b = typical();
    b.legacy_version = [0x02, 0x00];
    malformed(&b.record());

    let mut b = typical();
    b.session_id = vec![0; 33];
    malformed(&b.record());

    let mut b = typical();
    b.cipher_suites = vec![0x13, 0x01, 0x13];
    malformed(&b.record());

    let mut b = typical();
    b.cipher_suites.clear();
    malformed(&b.record());

    let mut b = typical();
    b.compression.clear();
    malformed(&b.record());
}

#[test]
fn hello_too_short_for_its_fields() {
    let body = typical().body();
    for len in [0, 1, 2, 34, 35, 40] {
        let handshake = handshake_message(HANDSHAKE_CLIENT_HELLO, &body[..len]);
        malformed(&records(&handshake, MAX_RECORD_LEN));
    }
}

#[test]
fn corrupted_hello_length() {
    // Declared shorter than the body: the extensions overrun it.
    let mut handshake = typical().handshake();
    handshake[3] = handshake[3].wrapping_sub(1);
    malformed(&records(&handshake, MAX_RECORD_LEN));
    // Declared longer: the extensions block no longer fills the body,
    // which is decidable without waiting for the missing bytes.
    let mut handshake = typical().handshake();
    handshake[3] = handshake[3].wrapping_add(10);
    malformed(&records(&handshake, MAX_RECORD_LEN));
    // Absurdly long (16 MiB): malformed for the same reason.
    let mut handshake = typical().handshake();
    handshake[1] = 0xff;
    malformed(&records(&handshake, MAX_RECORD_LEN));
}

/// Offset of the extensions-block length within a builder's handshake.
fn extensions_len_offset(b: &HelloBuilder) -> usize {
    HANDSHAKE_HEADER_LEN + 2 + RANDOM_LEN + 1 + b.session_id.len() + 2 + b.cipher_suites.len() + 1 + b.compression.len()
}

#[test]
fn corrupted_extensions_length() {
    let b = typical();
    let at = extensions_len_offset(&b);
    for delta in [1i32, -1, 0x100, 0x7fff] {
        let mut handshake = b.handshake();
        let len = i32::from(u16::from_be_bytes([handshake[at], handshake[at + 1]]));
        let bytes = u16::try_from(len + delta).unwrap().to_be_bytes();
        handshake[at..at + 2].copy_from_slice(&bytes);
        malformed(&records(&handshake, MAX_RECORD_LEN));
    }
}

#[test]
fn bytes_after_extensions_block() {
    let mut body = typical().body();
    body.push(0);
    let handshake = handshake_message(HANDSHAKE_CLIENT_HELLO, &body);
    malformed(&records(&handshake, MAX_RECORD_LEN));
}

#[test]
fn extension_overruns_block() {
    // An extension whose length runs past the end of the extensions block.
    let b = typical();
    let mut handshake = b.handshake();
    let first_ext_len = extensions_len_offset(&b) + 2 + 2;
    handshake[first_ext_len] = 0xff;
    malformed(&records(&handshake, MAX_RECORD_LEN));
}

#[test]
fn malformed_server_name_extensions() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],                                         // no list length
        vec![0x00, 0x00],                               // empty list
        vec![0x00, 0x05, 0x00, 0x00, 0x01],             // list shorter than entry
        vec![0x00, 0x03, 0x00, 0x00, 0x01, 0x61],       // list length too small
        vec![0x00, 0x09, 0x00, 0x00, 0x01, 0x61],       // list length too big
        vec![0x00, 0x04, 0x00, 0x00, 0x01, 0x61, 0x00], // trailing byte
        vec![0x00, 0x01, 0x00],                         // entry without name length
    ];
    for data in cases {
        malformed(&HelloBuilder::new().ext(EXT_SERVER_NAME, data).record());
    }
}

#[test]
fn malformed_alpn_extensions() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],                                   // no list length
        vec![0x00, 0x00],                         // empty list
        vec![0x00, 0x01, 0x00],                   // empty protocol name
        vec![0x00, 0x03, 0x02, 0x68, 0x32, 0x00], // trailing byte
        vec![0x00, 0x03, 0x05, 0x68, 0x32],       // name overruns list
        vec![0x00, 0x04, 0x02, 0x68, 0x32],       // list overruns extension
    ];
    for data in cases {
        malformed(&HelloBuilder::new().ext(EXT_ALPN, data).record());
    }
}

#[test]
fn duplicate_extensions() {
    malformed(&typical().sni("other.example").record());
    malformed(&typical().alpn(&["h2"]).record());
    malformed(&HelloBuilder::new().ext(99, vec![]).ext(99, vec![1]).record());
}

#[test]
fn sslv2_and_other_binary_is_plaintext() {
    malformed(&[0x80, 0x2e, 0x01, 0x00, 0x02]);
    malformed(&[0x00]);
    malformed(&[0x17, 0x03, 0x03]);
}

// === HTTP/2 prior knowledge ===

#[test]
fn h2_preface() {
    assert_every_prefix_needs_more(H2_PREFACE);
    let h2c = Detected::Plaintext(Some(HttpKind::H2c));
    assert_eq!(detect(H2_PREFACE), h2c);
    let mut with_settings = H2_PREFACE.to_vec();
    with_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(detect(&with_settings), h2c);
}

#[test]
fn broken_h2_preface_is_plaintext() {
    malformed(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    malformed(b"PRI * HTTP/2.0\r\nSM\r\n");
    // PRI is an ordinary token, so an HTTP/1 request with it is HTTP/1.
    assert_eq!(detect(b"PRI * HTTP/1.1\r\n"), Detected::Plaintext(Some(HttpKind::Http11)));
}

// === HTTP/1 ===

#[test]
fn http1_requests() {
    let cases: [(&[u8], HttpKind); 8] = [
        (b"GET / HTTP/1.1\r\n", HttpKind::Http11),
        (b"GET /index.html HTTP/1.0\r\n", HttpKind::Http10),
        (b"POST /api?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", HttpKind::Http11),
        (b"POST /api HTTP/1.0\r\nContent-Length: 0\r\n\r\n", HttpKind::Http10),
        (b"CONNECT example.com:443 HTTP/1.1\r\n", HttpKind::Http11),
        (b"CONNECT example.com:443 HTTP/1.0\r\n\r\n", HttpKind::Http10),
        (b"OPTIONS * HTTP/1.1\r\n", HttpKind::Http11),
        (b"M-SEARCH * HTTP/1.1\r\n", HttpKind::Http11),
    ];
    for (request, kind) in cases {
        let line_end = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        assert_every_prefix_needs_more(&request[..line_end]);
        assert_eq!(detect(request), Detected::Plaintext(Some(kind)));
    }
}

#[test]
fn any_upper_case_token_method() {
    assert_eq!(detect(b"BREW_COFFEE /pot HTTP/1.1\r\n"), Detected::Plaintext(Some(HttpKind::Http11)));
    let twenty = format!("{} / HTTP/1.1\r\n", "A".repeat(20));
    assert_eq!(detect(twenty.as_bytes()), Detected::Plaintext(Some(HttpKind::Http11)));
    malformed(format!("{} / HTTP/1.1\r\n", "A".repeat(21)).as_bytes());
    malformed("A".repeat(21).as_bytes());
}

#[test]
fn alpn_names() {
    assert_eq!(HttpKind::Http10.alpn(), "http/1.0");
    assert_eq!(HttpKind::Http11.alpn(), "http/1.1");
    assert_eq!(HttpKind::H2c.alpn(), "h2c");
}

#[test]
fn not_http1() {
    for buf in [
        &b"get / HTTP/1.1\r\n"[..],
        b"Get / HTTP/1.1\r\n",
        b"g",
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.2\r\n",
        b"GET / http/1.1\r\n",
        b"GET / HTTP/1.1\n",
        b"GET / HTTP/1.1\r\r",
        b"GET / HTTP/1.1 \r\n",
        b"GET /\r\n",
        b"GET  / HTTP/1.1\r\n",
        b" GET / HTTP/1.1\r\n",
        b"GET\t/ HTTP/1.1\r\n",
        b"GET /a\x01b HTTP/1.1\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"EHLO mail.example\r\n",
        b"\r\n",
        b"\x00\x00\x00\x01",
    ] {
        malformed(buf);
    }
}

#[test]
fn undecided_plaintext_needs_more() {
    for buf in [&b"SSH"[..], b"GE", b"GET", b"GET ", b"GET /x", b"GET /x HTTP/1."] {
        assert_eq!(detect(buf), Detected::NeedMore, "{buf:?}");
    }
}

#[test]
fn request_line_longer_than_peek_limit() {
    let mut line = b"GET /".to_vec();
    line.resize(MAX_PEEK - 1, b'a');
    assert_eq!(detect(&line), Detected::NeedMore);
    line.push(b'a');
    malformed(&line);
    line.extend_from_slice(b" HTTP/1.1\r\n");
    malformed(&line);
}

// === fuzzing ===

/// Deterministic xorshift64 so fuzz failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Checks the properties every input must have: no panic, decisions that
/// never change as bytes are appended, and lower-cased SNI.
fn check(buf: &[u8], rng: &mut XorShift) {
    let whole = detect(buf);
    if let Detected::Tls(hello) = &whole {
        if let Some(sni) = &hello.sni {
            assert_eq!(sni, &sni.to_ascii_lowercase());
        }
    }
    let cut = rng.below(buf.len() + 1);
    let prefix = detect(&buf[..cut]);
    if prefix != Detected::NeedMore {
        let head = &buf[..buf.len().min(64)];
        assert_eq!(prefix, whole, "prefix {cut} of {head:02x?}");
    }
}

#[test]
fn fuzz_random_buffers() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..10_000 {
        let len = rng.below(300);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Steer a share of inputs down the deeper paths.
        match rng.below(4) {
            0 if len >= 5 => {
                buf[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
                if rng.below(2) == 0 {
                    let body = u16::try_from(len - 5).unwrap().to_be_bytes();
                    buf[3..5].copy_from_slice(&body);
                }
            }
            1 => {
                for b in buf.iter_mut() {
                    *b = b"GET /HTP1.0\r\n -_"[usize::from(*b) % 16];
                }
            }
            _ => {}
        }
        check(&buf, &mut rng);
    }
}

#[test]
fn fuzz_mutated_hellos() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let handshake = typical().handshake();
    let bases = [typical().record(), records(&handshake, 7), records(&handshake, 40), hex(OPENSSL_HELLO)];
    for _ in 0..10_000 {
        let mut buf = bases[rng.below(bases.len())].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(buf.len());
            match rng.below(6) {
                0 => buf[at] = rng.byte(),
                1 => buf[at] ^= 1 << rng.below(8),
                2 => buf.truncate(at),
                3 => buf.insert(at, rng.byte()),
                4 => {
                    buf.remove(at);
                }
                _ => {
                    let extreme = [0x00, 0xff][rng.below(2)];
                    for b in buf.iter_mut().skip(at).take(2) {
                        *b = extreme;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
        }
        check(&buf, &mut rng);
    }
}

#[test]
fn valid_inputs_are_prefix_stable() {
    let mut rng = XorShift(7);
    for buf in
        [typical().record(), hex(OPENSSL_HELLO), H2_PREFACE.to_vec(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()]
    {
        let whole = detect(&buf);
        for cut in 0..=buf.len() {
            let prefix = detect(&buf[..cut]);
            assert!(prefix == Detected::NeedMore || prefix == whole, "cut {cut}");
        }
        check(&buf, &mut rng);
    }
}
