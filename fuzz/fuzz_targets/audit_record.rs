//! Audit leaves: `decode_record` over arbitrary bytes; an accepted record
//! must re-encode to exactly the same leaf (leaves are canonical).
#![no_main]

use focal_proto::audit::{decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_record(data) {
        let again = encode_record(&record).expect("a decoded record re-encodes");
        assert_eq!(again, data, "decode_record accepted a non-canonical leaf");
    }
});
