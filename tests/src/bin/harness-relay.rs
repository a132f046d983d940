//! `harness-relay`: the relay as a child process for the tests (same logic as
//! `focal-relay`, built inside this crate so tests find it through
//! `CARGO_BIN_EXE_harness-relay`).
fn main() -> std::process::ExitCode {
    focal_relay::cli::main()
}
