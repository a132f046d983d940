//! The properties Focal's fuzz targets check, as plain functions over
//! arbitrary bytes: each panics if and only if its property is violated.
//!
//! Written once, run twice: the cargo-fuzz targets in `fuzz/fuzz_targets/`
//! are one-liners calling these (coverage-guided, `fuzz/run-all.sh SECONDS`),
//! and `tests/smoke.rs` runs them in `cargo test --workspace` on the golden
//! fixtures and seeded pseudo-random mutations of them (no libFuzzer, no
//! coverage feedback). [`TARGETS`] lists them by cargo-fuzz target name.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use focal_certs::{NetworkCa, TrustBundle, TrustStore, verify_directory_entry};
use focal_proto::audit::{CheckpointBody, LogKey, decode_record, encode_record, note_signatures};
use focal_proto::envelope::{self, Opener, RecipientSecretKey, parse_context};
use focal_proto::frame::{FrameDecoder, decode_exact};
use focal_proto::{NetworkId, pb};
use focal_relay::config::RelayConfig;
use prost::Message;

/// A property: panics if and only if it does not hold for the input.
pub type Property = fn(&[u8]);

/// Every property, by the name of its cargo-fuzz target (and binary).
pub const TARGETS: &[(&str, Property)] = &[
    ("frame_decoder", frame_decoder),
    ("context_parser", context_parser),
    ("envelope_header", envelope_header),
    ("stream_opener", stream_opener),
    ("checkpoint_note", checkpoint_note),
    ("audit_record", audit_record),
    ("directory_entry", directory_entry),
    ("relay_config", relay_config),
];

/// Largest frame the `frame_decoder` property accepts.
const MAX_FRAME: usize = 64 * 1024;

/// Federation frame codec: arbitrary bytes fed to `FrameDecoder` in pieces
/// (split points taken from the input) and to `decode_exact`. Must never
/// panic or buffer beyond the frame limit plus one length prefix.
pub fn frame_decoder(data: &[u8]) {
    let _ = decode_exact(data, MAX_FRAME);
    let Some((&step, rest)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let mut dec = FrameDecoder::new(MAX_FRAME);
    for piece in rest.chunks(step) {
        dec.push(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = dec.finish();
}

/// Envelope context parser: `parse_context` over arbitrary bytes; whatever it
/// accepts is canonical (re-encodes to the same bytes) and its recipients
/// are sorted, unique and recognised by `is_recipient`.
pub fn context_parser(data: &[u8]) {
    if let Ok(ctx) = parse_context(data) {
        assert_eq!(ctx.ctx.encode_to_vec(), data, "parse_context accepted non-canonical bytes");
        assert_eq!(ctx.bytes, data);
        assert!(ctx.recipients.iter().all(|r| ctx.is_recipient(r)));
    }
}

/// Envelope header as a relay receives it: prost-decode arbitrary bytes as
/// `pb::EnvelopeHeader`, then the relay-side checks (context parse and the
/// sender signature over context and payload digest).
pub fn envelope_header(data: &[u8]) {
    if let Ok(header) = pb::EnvelopeHeader::decode(data) {
        let _ = envelope::parse_context(&header.context);
        let _ = envelope::verify_signature(&header);
    }
}

/// STREAM opener (age v1 payload): a fixed recipient key and context over
/// arbitrary ciphertext, pushed in pieces whose size comes from the input.
/// Must fail cleanly (never panic, never release unauthenticated plaintext
/// beyond what chunk tags verified).
pub fn stream_opener(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else { return };
    let key = RecipientSecretKey::from_bytes([7; 32]);
    let mut opener = Opener::new(b"fuzz context", &[&key]);
    let mut out = Vec::new();
    for piece in rest.chunks(usize::from(step).max(1) * 16) {
        if opener.push(piece, &mut out).is_err() {
            return;
        }
    }
    let _ = opener.finish(&mut out);
}

/// The golden audit log's verifier key (parsed once per process).
fn log_key() -> &'static LogKey {
    static KEY: OnceLock<LogKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let vkey = include_str!("../../../proto/tests/fixtures/audit_v1/verifier_key.txt");
        LogKey::parse(vkey.trim()).expect("golden verifier key")
    })
}

/// Checkpoints and signed notes: arbitrary text through
/// `LogKey::verify_checkpoint` (with the key of the golden audit log, whose
/// checkpoint is a good seed), `CheckpointBody::parse` and `note_signatures`,
/// and arbitrary verifier-key strings through `LogKey::parse`.
pub fn checkpoint_note(data: &[u8]) {
    let _ = CheckpointBody::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = log_key().verify_checkpoint(text);
        let _ = note_signatures(text);
        let _ = LogKey::parse(text);
    }
}

/// Audit leaves: `decode_record` over arbitrary bytes; an accepted record
/// must re-encode to exactly the same leaf (leaves are canonical).
pub fn audit_record(data: &[u8]) {
    if let Ok(record) = decode_record(data) {
        let again = encode_record(&record).expect("a decoded record re-encodes");
        assert_eq!(again, data, "decode_record accepted a non-canonical leaf");
    }
}

/// A trust store holding one generated CA (made once per process).
fn trust_store() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let ca = NetworkCa::generate(&NetworkId::new("carin").unwrap(), 30).unwrap();
        let mut bundle = TrustBundle::default();
        bundle.insert(ca.network().clone(), ca.cert_der());
        TrustStore::new(bundle, vec![]).unwrap()
    })
}

/// Directory entries: arbitrary bytes prost-decoded as `pb::DirectoryEntry`
/// and verified with `focal_certs::verify_directory_entry` against a trust
/// store holding one generated CA.
pub fn directory_entry(data: &[u8]) {
    if let Ok(entry) = pb::DirectoryEntry::decode(data) {
        let _ = verify_directory_entry(
            trust_store(),
            &entry,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        );
    }
}

/// Relay configuration: arbitrary text parsed as TOML into `RelayConfig`
/// (the same `toml::from_str` `RelayConfig::load` uses), paths resolved
/// against a directory that does not exist, then `validate`.
pub fn relay_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mut config) = toml::from_str::<RelayConfig>(text) {
        config.resolve_paths(Path::new("/nonexistent/focal-fuzz"));
        let _ = config.validate();
    }
}
