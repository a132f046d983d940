//! `harness-focal`: the `focal` CLI as a child process for the tests. When
//! `FOCAL_TEST_PEAK_RSS_FILE` is set, it writes its own peak resident set
//! (VmHWM, KiB) there on exit, so memory tests can bound the client.
fn main() -> std::process::ExitCode {
    let code = focal_client::cli::main();
    if let Some(path) = std::env::var_os("FOCAL_TEST_PEAK_RSS_FILE") {
        let hwm = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default();
        let _ = std::fs::write(path, hwm);
    }
    code
}
