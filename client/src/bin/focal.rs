//! `focal`: the focal point's command-line client (logic in `focal_client::cli`).
fn main() -> std::process::ExitCode {
    focal_client::cli::main()
}
