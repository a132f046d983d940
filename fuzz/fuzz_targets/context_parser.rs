//! Envelope context parser: `parse_context` over arbitrary bytes; whatever it
//! accepts is canonical (re-encodes to the same bytes) and its recipients
//! are sorted, unique and recognised by `is_recipient`.
#![no_main]

use focal_proto::envelope::parse_context;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = parse_context(data) {
        assert_eq!(ctx.ctx.encode_to_vec(), data, "parse_context accepted non-canonical bytes");
        assert_eq!(ctx.bytes, data);
        assert!(ctx.recipients.iter().all(|r| ctx.is_recipient(r)));
    }
});
