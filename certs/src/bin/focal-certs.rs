//! `focal-certs`: the secretariat's PKI tool (logic in `focal_certs::cli`).
fn main() -> std::process::ExitCode {
    focal_certs::cli::main()
}
