//! Checkpoints and signed notes: arbitrary text through
//! `LogKey::verify_checkpoint` (with the key of the golden audit log, whose
//! checkpoint is a good seed), `CheckpointBody::parse` and `note_signatures`,
//! and arbitrary verifier-key strings through `LogKey::parse`.
#![no_main]

use std::sync::OnceLock;

use focal_proto::audit::{CheckpointBody, LogKey, note_signatures};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static LogKey {
    static KEY: OnceLock<LogKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let vkey = include_str!("../../proto/tests/fixtures/audit_v1/verifier_key.txt");
        LogKey::parse(vkey.trim()).expect("golden verifier key")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = CheckpointBody::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = key().verify_checkpoint(text);
        let _ = note_signatures(text);
        let _ = LogKey::parse(text);
    }
});
