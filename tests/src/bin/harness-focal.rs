//! `harness-focal`: the `focal` CLI as a child process for the tests. When
//! `FOCAL_TEST_PEAK_RSS_FILE` is set, it writes its own peak resident set
//! (VmHWM, KiB) there on exit, so memory tests can bound the client.
/// mimalloc instead of glibc malloc: the relay's sled store and async tasks
/// allocate many short-lived small blocks (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let code = focal_client::cli::main();
    focal_tests::transfer::write_own_peak_rss();
    code
}
