//! The age v1 header (c2sp.org/age), parsed strictly and encoded canonically.
//!
//! ```text
//! age-encryption.org/v1
//! -> X25519 <base64 ephemeral share>
//! <base64 body, wrapped at 64 columns, last line shorter than 64>
//! --- <base64 HMAC-SHA256>
//! ```
//!
//! Base64 is standard alphabet, no padding, canonical (no stray trailing
//! bits). Stanza arguments are non-empty strings of printable ASCII
//! (0x21–0x7E) separated by single spaces. Stanzas of unknown type (for
//! instance the random "grease" stanzas the `age` crate adds) are parsed and
//! kept but not used. The MAC covers the header bytes up to and including
//! `---`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::hmac;

use crate::error::{ProtoError, Result};

/// First line of every age v1 file.
pub(crate) const VERSION_LINE: &[u8] = b"age-encryption.org/v1";
/// Columns of a full stanza-body line.
const COLUMNS: usize = 64;

/// One recipient stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stanza {
    pub(crate) tag: String,
    pub(crate) args: Vec<String>,
    pub(crate) body: Vec<u8>,
}

/// A parsed header.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) stanzas: Vec<Stanza>,
    pub(crate) mac: [u8; 32],
    /// Length of the MAC'd prefix (through `---`).
    pub(crate) mac_input_len: usize,
}

fn malformed(msg: impl Into<String>) -> ProtoError {
    ProtoError::MalformedHeader(msg.into())
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Splits `bytes` into `\n`-terminated lines, yielding (offset, line).
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<(usize, &'a [u8])> {
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|b| *b == b'\n')?;
        let start = self.pos;
        self.pos += end + 1;
        Some((start, &rest[..end]))
    }
}

/// Whether `line` (without its newline) can appear after the version line
/// of a header: a stanza line, a body line or the MAC line. Lets a streaming
/// reader refuse garbage early; [`parse`] still does the full check.
pub(crate) fn plausible_line(line: &[u8]) -> bool {
    line.starts_with(b"-> ")
        || line.starts_with(b"--- ")
        || (line.len() <= COLUMNS && line.iter().all(|b| is_base64_char(*b)))
}

/// Parses a complete header: `bytes` runs from the version line through the
/// newline that ends the MAC line, and nothing more.
pub(crate) fn parse(bytes: &[u8]) -> Result<Header> {
    if bytes.last() != Some(&b'\n') {
        return Err(malformed("header does not end with a newline"));
    }
    let mut lines = Lines { bytes, pos: 0 };
    match lines.next_line() {
        Some((_, line)) if line == VERSION_LINE => {}
        _ => return Err(malformed("first line is not \"age-encryption.org/v1\"")),
    }
    let mut stanzas = Vec::new();
    loop {
        let Some((start, line)) = lines.next_line() else {
            return Err(malformed("header ends before the MAC line"));
        };
        if let Some(rest) = line.strip_prefix(b"-> ") {
            let mut args = parse_args(rest)?;
            let tag = args.remove(0);
            let body = parse_body(&mut lines)?;
            stanzas.push(Stanza { tag, args, body });
        } else if let Some(rest) = line.strip_prefix(b"--- ") {
            if rest.len() != 43 || !rest.iter().all(|b| is_base64_char(*b)) {
                return Err(malformed("MAC is not 43 characters of base64"));
            }
            let mac: [u8; 32] = STANDARD_NO_PAD
                .decode(rest)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| malformed("MAC is not canonical base64"))?;
            if lines.pos != bytes.len() {
                return Err(malformed("data after the MAC line"));
            }
            if stanzas.is_empty() {
                return Err(malformed("no recipient stanza"));
            }
            return Ok(Header { stanzas, mac, mac_input_len: start + 3 });
        } else {
            return Err(malformed("expected a stanza (\"-> \") or the MAC line (\"--- \")"));
        }
    }
}

fn parse_args(rest: &[u8]) -> Result<Vec<String>> {
    let mut args = Vec::new();
    for arg in rest.split(|b| *b == b' ') {
        if arg.is_empty() {
            return Err(malformed("empty stanza argument (double, leading or trailing space)"));
        }
        if !arg.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(malformed("stanza argument is not printable ASCII"));
        }
        // Printable ASCII is valid UTF-8.
        args.push(String::from_utf8_lossy(arg).into_owned());
    }
    Ok(args)
}

fn parse_body(lines: &mut Lines<'_>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some((_, line)) = lines.next_line() else {
            return Err(malformed("header ends inside a stanza body"));
        };
        if line.len() > COLUMNS {
            return Err(malformed("stanza body line longer than 64 columns"));
        }
        if !line.iter().all(|b| is_base64_char(*b)) {
            return Err(malformed("stanza body line is not base64"));
        }
        // A full line is 48 bytes exactly, so decoding line by line equals
        // decoding the concatenation; canonicity is checked on the last line.
        let decoded =
            STANDARD_NO_PAD.decode(line).map_err(|_| malformed("stanza body is not canonical base64"))?;
        body.extend_from_slice(&decoded);
        if line.len() < COLUMNS {
            return Ok(body);
        }
    }
}

/// Encodes the header for `stanzas` and appends its MAC line.
pub(crate) fn encode(stanzas: &[Stanza], mac_key: &hmac::Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + stanzas.len() * 100);
    out.extend_from_slice(VERSION_LINE);
    out.push(b'\n');
    for s in stanzas {
        out.extend_from_slice(b"-> ");
        out.extend_from_slice(s.tag.as_bytes());
        for a in &s.args {
            out.push(b' ');
            out.extend_from_slice(a.as_bytes());
        }
        out.push(b'\n');
        let b64 = STANDARD_NO_PAD.encode(&s.body);
        for line in b64.as_bytes().chunks(COLUMNS) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if b64.len() % COLUMNS == 0 {
            // The last line must be shorter than 64 columns, so a body that
            // fills whole lines (or is empty) ends with an empty line.
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"---");
    let mac = hmac::sign(mac_key, &out);
    out.push(b' ');
    out.extend_from_slice(STANDARD_NO_PAD.encode(mac.as_ref()).as_bytes());
    out.push(b'\n');
    out
}

/// Checks the header MAC.
pub(crate) fn verify_mac(bytes: &[u8], header: &Header, mac_key: &hmac::Key) -> Result<()> {
    hmac::verify(mac_key, &bytes[..header.mac_input_len], &header.mac).map_err(|_| ProtoError::HeaderMac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"test key")
    }

    fn stanza(tag: &str, args: &[&str], body_len: usize) -> Stanza {
        Stanza {
            tag: tag.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            body: (0..body_len).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn round_trips_bodies_of_every_shape() {
        // Empty, short line, exactly one full line, two lines, two full lines, three lines.
        for len in [0, 1, 32, 47, 48, 49, 95, 96, 97, 200] {
            let stanzas = vec![stanza("X25519", &["abc"], len), stanza("x-grease", &[], len)];
            let bytes = encode(&stanzas, &key());
            let h = parse(&bytes).unwrap();
            assert_eq!(h.stanzas, stanzas, "body length {len}");
            verify_mac(&bytes, &h, &key()).unwrap();
            assert_eq!(&bytes[h.mac_input_len - 3..h.mac_input_len], b"---");
        }
    }

    fn err_of(text: &str) -> String {
        match parse(text.as_bytes()) {
            Err(ProtoError::MalformedHeader(m)) => m,
            other => panic!("{text:?}: expected MalformedHeader, got {other:?}"),
        }
    }

    const MAC: &str = "--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";

    #[test]
    fn refuses_malformed_headers() {
        let v = "age-encryption.org/v1\n";
        let full = "A".repeat(64);
        let cases = [
            (format!("age-encryption.org/v2\n-> a\n\n{MAC}"), "first line"),
            (format!("{v}{MAC}"), "no recipient stanza"),
            (format!("{v}-> a\n\n{MAC}x"), "newline"),
            (format!("{v}-> a\n\n{MAC}\n"), "after the MAC"),
            (format!("{v}-> a\n"), "inside a stanza body"),
            (format!("{v}-> a\n\n"), "before the MAC"),
            (format!("{v}->  a\n\n{MAC}"), "empty stanza argument"),
            (format!("{v}-> a \n\n{MAC}"), "empty stanza argument"),
            (format!("{v}-> \n\n{MAC}"), "empty stanza argument"),
            (format!("{v}-> a\tb\n\n{MAC}"), "printable"),
            (format!("{v}-> a\nAAA=\n{MAC}"), "not base64"),
            (format!("{v}-> a\nAB\n{MAC}"), "canonical"), // trailing bits set
            (format!("{v}-> a\nA\n{MAC}"), "canonical"),  // 1 mod 4
            (format!("{v}-> a\n{full}A\n{MAC}"), "longer than 64"),
            (format!("{v}-> a\n{full}\n{MAC}"), "not base64"), // a full line needs a final short line
            (format!("{v}-> a\n\n--- AAAA\n"), "43 characters"),
            (format!("{v}-> a\n\n--- {}B\n", "A".repeat(42)), "canonical"),
            (format!("{v}-> a\n\n---\n"), "expected a stanza"),
            (format!("{v}-> a\n\nhello\n{MAC}"), "expected a stanza"),
        ];
        for (text, want) in cases {
            let m = err_of(&text);
            assert!(m.contains(want), "{text:?}: {m}");
        }
    }

    #[test]
    fn mac_covers_every_header_byte() {
        let bytes = encode(&[stanza("X25519", &["abc"], 32)], &key());
        let h = parse(&bytes).unwrap();
        let mut bad = bytes.clone();
        bad[25] ^= 0x01; // inside the stanza line, still printable
        let h2 = parse(&bad).unwrap();
        assert_eq!(verify_mac(&bad, &h2, &key()).unwrap_err(), ProtoError::HeaderMac);
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other key");
        assert_eq!(verify_mac(&bytes, &h, &other).unwrap_err(), ProtoError::HeaderMac);
    }
}
