//! Federation frame codec: arbitrary bytes fed to `FrameDecoder` in pieces
//! (split points taken from the input) and to `decode_exact`. Must never
//! panic or buffer beyond the frame limit plus one length prefix.
#![no_main]

use focal_proto::frame::{FrameDecoder, decode_exact};
use libfuzzer_sys::fuzz_target;

const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
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
});
