//! `focal-relay demo` as a user runs it: a child process (`harness-relay`,
//! the same code as `focal-relay`), its exit code and what it prints.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use focal_tests::bins;

use super::*;

/// A demo run may take this long in a debug build on a busy machine.
const DEMO_DEADLINE: Duration = Duration::from_secs(180);

/// Runs `harness-relay demo <args>` to completion (killed past the deadline).
fn run_demo(args: &[&str]) -> Result<Output> {
    let mut child = Command::new(bins!().relay)
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > DEMO_DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "demo still running after {DEMO_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child.wait_with_output()?)
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn demo_exits_0_and_routes_carin_gfp_arinsa() -> Result<()> {
    let out = run_demo(&[])?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "demo failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let routes: Vec<&str> =
        stdout.lines().filter_map(|l| l.trim().strip_prefix("route")).map(str::trim).collect();
    assert_eq!(routes, ["carin -> gfp -> arinsa", "arinsa -> gfp -> carin"], "stdout:\n{stdout}");
    assert!(stdout.contains("DELIVERED  signed by fp-za-npa@arinsa"), "stdout:\n{stdout}");
    assert!(stdout.contains("DELIVERED  signed by fp-nl-fiod@carin"), "stdout:\n{stdout}");
    for relay in ["relay.carin", "relay.gfp", "relay.arinsa"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(relay) && l.contains(" hop ")),
            "no audit records of {relay}:\n{stdout}"
        );
    }
    Ok(())
}

/// Whatever this build can do, the demo never prints a route it did not
/// observe: it either succeeds with the route, or fails naming the step.
#[test]
fn demo_succeeds_or_fails_naming_the_step_never_fakes() -> Result<()> {
    let out = run_demo(&[])?;
    let (stdout, stderr) = text(&out);
    let has_route = stdout.lines().any(|l| l.trim_start().starts_with("route "));
    if out.status.success() {
        assert!(has_route, "exit 0 without a route:\n{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
        assert!(!has_route, "a failed demo printed a route:\n{stdout}");
        assert!(stderr.contains("DEMO FAILED while "), "stderr:\n{stderr}");
        // The federation came up before anything crossed it.
        assert!(stdout.contains("relay.gfp") && stdout.contains("relay.rrag"), "stdout:\n{stdout}");
    }
    Ok(())
}

#[test]
fn demo_refuses_a_non_empty_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("precious.txt"), "keep me")?;
    let out = run_demo(&["--dir", dir.path().to_str().context("utf-8 path")?])?;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("not empty"), "stderr:\n{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("precious.txt"))?, "keep me");
    Ok(())
}
