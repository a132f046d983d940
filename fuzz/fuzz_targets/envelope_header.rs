//! Envelope header as a relay receives it: prost-decode arbitrary bytes as
//! `pb::EnvelopeHeader`, then the relay-side checks (context parse and the
//! sender signature over context and payload digest).
#![no_main]

use focal_proto::{envelope, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = pb::EnvelopeHeader::decode(data) {
        let _ = envelope::parse_context(&header.context);
        let _ = envelope::verify_signature(&header);
    }
});
