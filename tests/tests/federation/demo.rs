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
    let _heavy = crate::HEAVY.blocking_lock();
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
    let _heavy = crate::HEAVY.blocking_lock();
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
    let _heavy = crate::HEAVY.blocking_lock();
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("precious.txt"), "keep me")?;
    let out = run_demo(&["--dir", dir.path().to_str().context("utf-8 path")?])?;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("not empty"), "stderr:\n{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("precious.txt"))?, "keep me");
    Ok(())
}

/// `--keep-running`: the federation stays up, the printed profiles work
/// with the `focal` CLI (a user's own message crosses it), and SIGTERM
/// stops it cleanly.
#[test]
fn demo_keep_running_serves_the_printed_profiles() -> Result<()> {
    let _heavy = crate::HEAVY.blocking_lock();
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir()?;
    let demo_dir = dir.path().join("demo");
    let mut child = Command::new(bins!().relay)
        .args(["demo", "--keep-running", "--dir"])
        .arg(&demo_dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let start = Instant::now();
    // Wait until it prints its example commands (the last thing before it waits).
    while !seen
        .iter()
        .any(|l: &String| l.trim_start().starts_with("focal --profile") && l.ends_with(" receipts"))
    {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if start.elapsed() < DEMO_DEADLINE => {}
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "demo did not stay up ({e}):\n{}\n{}",
                    seen.join("\n"),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    let profile = |who: &str| demo_dir.join("members").join(who).join("profile.toml");
    let focal = |who: &str, args: &[&str]| -> Result<Output> {
        Ok(Command::new(bins!().focal)
            .arg("--profile")
            .arg(profile(who))
            .args(args)
            .env("NO_COLOR", "1")
            .output()?)
    };
    assert!(seen.iter().any(|l| l.contains(&profile("fp-za-npa@arinsa").display().to_string())), "{seen:#?}");
    let sent = focal(
        "fp-nl-fiod@carin",
        &["send", "--to", "fp-za-npa@arinsa", "--subject", "user test", "--body", "hello"],
    )?;
    assert!(sent.status.success(), "focal send: {}", String::from_utf8_lossy(&sent.stderr));
    // The message crosses the federation; the inbox lists it once it arrived.
    let deadline = Instant::now() + PROMPT;
    loop {
        let inbox = focal("fp-za-npa@arinsa", &["inbox"])?;
        assert!(inbox.status.success(), "focal inbox: {}", String::from_utf8_lossy(&inbox.stderr));
        if String::from_utf8_lossy(&inbox.stdout).contains("fp-nl-fiod@carin") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the user's message did not arrive: {}",
            String::from_utf8_lossy(&inbox.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status()?.success());
    let status = child.wait()?;
    assert!(status.success(), "demo exit after SIGTERM: {status}");
    Ok(())
}
