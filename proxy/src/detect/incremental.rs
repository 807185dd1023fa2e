//! Detection fed one read at a time. [`detect`](super::detect) is a pure function over the
//! whole buffer; calling it after every read costs O(n²) for a client that trickles its first
//! bytes one at a time (16 KiB of ClientHello, byte by byte, is 134 million byte visits). The
//! [`Detector`] re-decides only when the new bytes could change the answer: when a TLS record
//! completes, or, for plaintext, when a line ends or a byte arrives that no request line
//! contains. Detection is prefix-stable, so skipping the calls in between changes no answer,
//! only how soon a doomed request line is given up (at its end instead of at the bad byte).

use super::http::{is_target_byte, H2_PREFACE};
use super::tls::{CONTENT_TYPE_HANDSHAKE, RECORD_HEADER_LEN};
use super::{detect, Detected, MAX_PEEK};

/// Per-connection detection state.
#[derive(Debug, Default)]
pub struct Detector {
    /// Bytes already looked at.
    checked: usize,
    /// Buffer length at which the answer can next change.
    due_at: usize,
    /// Full detections run (tests bound it).
    parses: u32,
}

impl Detector {
    /// The answer for `buf` (all bytes read so far, the previous call's plus the new ones).
    pub fn feed(&mut self, buf: &[u8]) -> Detected {
        let len = buf.len().min(MAX_PEEK);
        let fresh = buf.get(self.checked.min(len)..len).unwrap_or_default();
        let tls = buf.first() == Some(&CONTENT_TYPE_HANDSHAKE);
        let due = len >= self.due_at || len >= MAX_PEEK || (!tls && fresh.iter().any(|b| ends_or_breaks_a_line(*b)));
        self.checked = len;
        if !due {
            return Detected::NeedMore;
        }
        self.parses = self.parses.saturating_add(1);
        let d = detect(buf);
        if d == Detected::NeedMore {
            self.due_at = if tls { record_end(buf) } else { plaintext_due(buf) };
        }
        d
    }

    /// How many full detections ran.
    pub fn parses(&self) -> u32 {
        self.parses
    }
}

/// A newline, or a byte that cannot occur in a request line (so the line is invalid).
fn ends_or_breaks_a_line(b: u8) -> bool {
    b == b'\n' || !(is_target_byte(b) || b == b' ' || b == b'\r')
}

/// Until the HTTP/2 preface is ruled in or out, every byte counts; after that, only line ends
/// and bad bytes (or the cap) do.
fn plaintext_due(buf: &[u8]) -> usize {
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        buf.len() + 1
    } else {
        MAX_PEEK
    }
}

/// The buffer length at which the first incomplete TLS record (or its header) completes.
fn record_end(buf: &[u8]) -> usize {
    let mut pos = 0usize;
    loop {
        let header_end = pos.saturating_add(RECORD_HEADER_LEN);
        let (Some(&hi), Some(&lo)) = (buf.get(pos + 3), buf.get(pos + 4)) else {
            return header_end.min(MAX_PEEK);
        };
        let end = header_end.saturating_add(usize::from(u16::from_be_bytes([hi, lo])));
        if buf.len() < end || end <= pos {
            return end.min(MAX_PEEK);
        }
        pos = end;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `input` one byte at a time; returns the final answer and the full parses run.
    fn trickle(input: &[u8]) -> (Detected, u32) {
        let mut d = Detector::default();
        for n in 1..=input.len() {
            let got = d.feed(&input[..n]);
            if got != Detected::NeedMore {
                return (got, d.parses());
            }
        }
        (Detected::NeedMore, d.parses())
    }

    /// A ClientHello with a 12 KiB SNI-less extension padding, split over three records.
    fn big_hello() -> Vec<u8> {
        let mut exts = Vec::new();
        // padding extension (21) of 12,000 bytes
        exts.extend_from_slice(&21u16.to_be_bytes());
        exts.extend_from_slice(&12_000u16.to_be_bytes());
        exts.extend(std::iter::repeat_n(0u8, 12_000));
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&[0x13, 0x01]);
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut out = Vec::new();
        for chunk in hs.chunks(5_000) {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn a_trickled_hello_is_parsed_once_per_record() {
        let hello = big_hello();
        assert!(matches!(detect(&hello), Detected::Tls(_)), "the fixture is a whole hello");
        let (got, parses) = trickle(&hello);
        assert!(matches!(got, Detected::Tls(_)), "{got:?}");
        // One parse at the first byte, one per record header and one per record end.
        assert!(parses <= 8, "{parses} parses for {} bytes", hello.len());
    }

    #[test]
    fn a_trickled_request_line_is_parsed_at_its_end() {
        let line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(8_000));
        let (got, parses) = trickle(line.as_bytes());
        assert_eq!(got, Detected::Plaintext(Some(crate::detect::HttpKind::Http11)));
        assert!(parses <= 30, "{parses} parses");
        // The HTTP/2 preface still decides as soon as it is whole.
        let (got, _) = trickle(H2_PREFACE);
        assert_eq!(got, Detected::Plaintext(Some(crate::detect::HttpKind::H2c)));
        // A bad byte after a good start ends detection at once.
        let (got, parses) = trickle(b"GET /a\x01bcdef");
        assert_eq!((got, parses <= 10), (Detected::Plaintext(None), true));
    }

    #[test]
    fn every_prefix_gives_what_detect_gives() {
        let hello = big_hello();
        for input in [&hello[..], b"GET / HTTP/1.0\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00\x01junk"] {
            let mut d = Detector::default();
            let mut decided = None;
            for n in 1..=input.len() {
                let got = d.feed(&input[..n]);
                if got != Detected::NeedMore {
                    decided = Some(got);
                    break;
                }
            }
            assert_eq!(decided.unwrap_or(Detected::NeedMore), detect(input));
        }
    }
}
