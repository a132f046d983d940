//! `focal-relay`: runs a relay node, checks a config, or runs the demo federation.
fn main() -> std::process::ExitCode {
    focal_relay::cli::main()
}
