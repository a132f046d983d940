//! `harness-relay`: the relay as a child process for the tests (same logic as
//! `focal-relay`, built inside this crate so tests find it through
//! `CARGO_BIN_EXE_harness-relay`).
/// mimalloc instead of glibc malloc: the relay's sled store and async tasks
/// allocate many short-lived small blocks (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    focal_relay::cli::main()
}
