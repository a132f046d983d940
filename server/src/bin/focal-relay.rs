//! `focal-relay`: runs a relay node, checks a config, or runs the demo federation.
/// mimalloc instead of glibc malloc: the relay's sled store and async tasks
/// allocate many short-lived small blocks (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    focal_relay::cli::main()
}
