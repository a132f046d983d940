//! cargo-fuzz target `frame_decoder`: the property is `focal_fuzz_props::frame_decoder`
//! (fuzz/props/src/lib.rs, documented there), which CI also runs on seeded
//! mutations without libFuzzer (fuzz/props/tests/smoke.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| focal_fuzz_props::frame_decoder(data));
