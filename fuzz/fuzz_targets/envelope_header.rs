//! cargo-fuzz target `envelope_header`: the property is `focal_fuzz_props::envelope_header`
//! (fuzz/props/src/lib.rs, documented there), which CI also runs on seeded
//! mutations without libFuzzer (fuzz/props/tests/smoke.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| focal_fuzz_props::envelope_header(data));
