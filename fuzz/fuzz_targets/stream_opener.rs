//! STREAM opener (age v1 payload): a fixed recipient key and context over
//! arbitrary ciphertext, pushed in pieces whose size comes from the input.
//! Must fail cleanly (never panic, never release unauthenticated plaintext
//! beyond what chunk tags verified).
#![no_main]

use focal_proto::envelope::{Opener, RecipientSecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
