//! The `focal` CLI driven as a user would: two profiles enrol, exchange a
//! message with an attachment, acknowledge it, see the receipt, reply; bad
//! arguments give one line on stderr and a non-zero exit.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use focal_tests::Federation;
use focal_tests::cli::{json_lines, ok, run};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_profiles_exchange_a_message_with_attachment_and_receipt() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder()
        .focal_point_unenrolled("nl-fiod@carin")
        .focal_point_unenrolled("be-ocsc@carin")
        .start()
        .await?;
    let (a, b) = (fed.fp("nl-fiod@carin"), fed.fp("be-ocsc@carin"));

    for fp in [a, b] {
        let out = ok(fp, &bins, &["keys", "init"]).await?;
        assert!(out.contains("created encryption key serial 1"), "{out}");
        let out = ok(fp, &bins, &["keys", "publish", "--display-name", "Test unit"]).await?;
        assert!(out.contains("published key serial 1"), "{out}");
    }
    let look = json_lines(&ok(a, &bins, &["--json", "directory", "lookup", "be-ocsc@carin"]).await?)?;
    assert_eq!(look[0]["address"], "be-ocsc@carin");
    assert_eq!(look[0]["verified"], true);

    let att = fed.dir().join("statement.pdf");
    std::fs::write(&att, b"%PDF-1.4 synthetic bank statement\n")?;
    let sent = json_lines(
        &ok(
            a,
            &bins,
            &[
                "--json",
                "send",
                "--to",
                "be-ocsc@carin",
                "--subject",
                "Pre-MLA consultation",
                "--body",
                "Could you confirm the account holder?",
                "--attach",
                att.to_str().unwrap(),
                "--handling",
                "H2",
                "--case-ref",
                "CARIN-7",
                "--expires-in",
                "3d",
            ],
        )
        .await?,
    )?;
    let msg_id = sent[0]["msg_id"].as_str().context("msg_id")?.to_owned();
    assert_eq!(sent[0]["type"], "accepted");

    let inbox = json_lines(&ok(b, &bins, &["--json", "inbox"]).await?)?;
    let m = inbox.iter().find(|v| v["type"] == "message").context("message listed")?;
    assert_eq!(m["msg_id"], msg_id.as_str());
    assert_eq!(m["from"], "nl-fiod@carin");
    assert_eq!(m["handling"], "H2");

    // Human-readable inbox mentions it too.
    let human = ok(b, &bins, &["inbox"]).await?;
    assert!(human.contains(&msg_id) && human.contains("nl-fiod@carin"), "{human}");

    let out_dir = fed.dir().join("b-out");
    let opened =
        json_lines(&ok(b, &bins, &["--json", "read", &msg_id, "--out", out_dir.to_str().unwrap()]).await?)?;
    assert_eq!(opened[0]["subject"], "Pre-MLA consultation");
    assert_eq!(opened[0]["body"], "Could you confirm the account holder?");
    assert_eq!(opened[0]["case_ref"], "CARIN-7");
    assert_eq!(opened[0]["verified"], true);
    assert_eq!(std::fs::read(out_dir.join("statement.pdf"))?, std::fs::read(&att)?);
    // Reading again into the same directory refuses to overwrite.
    let again = run(b, &bins, &["read", &msg_id, "--out", out_dir.to_str().unwrap()]).await?;
    assert_one_line_error(&again, 1, "exists already")?;

    let acked = ok(b, &bins, &["ack", &msg_id]).await?;
    assert!(acked.contains("acknowledged"), "{acked}");
    let inbox = json_lines(&ok(b, &bins, &["--json", "inbox"]).await?)?;
    assert!(inbox.iter().all(|v| v["type"] != "message"), "acked message still listed: {inbox:?}");

    // The DELIVERED receipt is waiting for the sender once Ack returned; the
    // CLI has no push here, so allow the relay a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let receipt = loop {
        let rs = json_lines(&ok(a, &bins, &["--json", "receipts"]).await?)?;
        if let Some(r) = rs.into_iter().find(|r| r["msg_id"] == msg_id.as_str() && r["kind"] == "DELIVERED") {
            break r;
        }
        ensure!(Instant::now() < deadline, "no DELIVERED receipt for {msg_id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(receipt["verified"], true);
    assert_eq!(receipt["subject"], "be-ocsc@carin");

    // b replies; a reads the reply: same case, linked to the original.
    let reply = json_lines(
        &ok(b, &bins, &["--json", "reply", &msg_id, "--body", "Confirmed: Blue Yacht BV."]).await?,
    )?;
    let reply_id = reply[0]["msg_id"].as_str().context("reply id")?.to_owned();
    let got = json_lines(&ok(a, &bins, &["--json", "read", &reply_id]).await?)?;
    assert_eq!(got[0]["subject"], "Re: Pre-MLA consultation");
    assert_eq!(got[0]["case_ref"], "CARIN-7");
    assert_eq!(got[0]["reply_to_msg_id"], msg_id.as_str());
    assert_eq!(got[0]["handling"], "H2", "a reply keeps the original's handling code");
    Ok(())
}

/// `focal inbox` run with a copy of `fp`'s profile rewritten by `edit`.
async fn inbox_with_profile(
    fp: &focal_tests::FocalPoint,
    bins: &focal_tests::Bins,
    edit: impl FnOnce(String) -> String,
) -> Result<Output> {
    let wrong = fp.dir.join("wrong-profile.toml");
    std::fs::write(&wrong, edit(std::fs::read_to_string(&fp.profile_path)?))?;
    let mut cmd = std::process::Command::new(&bins.focal);
    cmd.arg("--profile").arg(&wrong).arg("inbox");
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

fn assert_one_line_error(out: &Output, code: i32, needle: &str) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(out.status.code() == Some(code), "exit {:?}, want {code}; stderr: {stderr}", out.status.code());
    ensure!(lines.len() == 1, "want one line on stderr, got {}: {stderr}", lines.len());
    ensure!(lines[0].starts_with("focal: error: "), "{stderr}");
    ensure!(lines[0].contains(needle), "{:?} should mention {needle:?}", lines[0]);
    ensure!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_give_one_line_and_a_non_zero_exit() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder().focal_point("nl-fiod@carin").start().await?;
    let a = fed.fp("nl-fiod@carin");
    let usage: &[(&[&str], &str)] = &[
        (&[], "subcommand"),
        (&["keys"], "subcommand"),
        (&["frobnicate"], "frobnicate"),
        (&["send", "--subject", "s", "--body", "b"], "--to"),
        (&["send", "--to", "NL@carin", "--subject", "s", "--body", "b"], "upper case"),
        (&["send", "--to", "x@carin", "--subject", "s"], "--body"),
        (&["send", "--to", "x@carin", "--subject", "s", "--body", "b", "--body-file", "f"], "--body"),
        (&["send", "--to", "x@carin", "--subject", "s", "--body", "b", "--expires-in", "3y"], "duration"),
        (
            &["send", "--to", "x@carin", "--subject", "s", "--body", "b", "--handling", "H9"],
            "H0, H1, H2 or H3",
        ),
        (&["read", "not-hex"], "32 hexadecimal"),
        (&["ack"], "MSG_ID"),
    ];
    for (args, needle) in usage {
        let out = run(a, &bins, args).await?;
        assert_one_line_error(&out, 2, needle).with_context(|| format!("focal {args:?}"))?;
    }
    // Failures after parsing: exit 1, one line.
    let missing = Path::new("/nonexistent/focal/profile.toml");
    let mut cmd = std::process::Command::new(&bins.focal);
    cmd.args(["--profile", missing.to_str().unwrap(), "inbox"]);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    assert_one_line_error(&out, 1, "profile /nonexistent/focal/profile.toml")?;

    let out = run(a, &bins, &["read", "00112233445566778899aabbccddeeff"]).await?;
    assert_one_line_error(&out, 1, "not found")?;
    let out = run(a, &bins, &["send", "--to", "nobody@carin", "--subject", "s", "--body", "b"]).await?;
    assert_one_line_error(&out, 1, "NOT_FOUND")?;
    let out = run(
        a,
        &bins,
        &["send", "--to", "x@carin", "--subject", "s", "--body", "b", "--attach", "/no/such/file"],
    )
    .await?;
    assert_one_line_error(&out, 1, "")?;
    let out = run(a, &bins, &["keys", "init"]).await?;
    assert_one_line_error(&out, 1, "--rotate")?;

    // A profile naming another relay: the TLS connection is refused, with the reason.
    let out = inbox_with_profile(a, &bins, |t| t.replace("relay.carin", "relay.elsewhere")).await?;
    assert_one_line_error(&out, 1, "focal://carin/relay/relay.elsewhere")?;
    // A profile expecting another network's relay: the reason names the
    // certificate's identity, not only a TLS error category.
    let out = inbox_with_profile(a, &bins, |t| {
        t.replace("relay_network = \"carin\"", "relay_network = \"arinsa\"")
            .replace("relay_name = \"relay.carin\"\n", "")
    })
    .await?;
    assert_one_line_error(&out, 1, "the relay's certificate was refused: focal://carin/relay/relay.carin")?;
    // A profile with a bad key.
    let out =
        inbox_with_profile(a, &bins, |t| t.replace("relay_network = \"carin\"", "relay_network = \"Carin\""))
            .await?;
    assert_one_line_error(&out, 1, "key `relay_network`")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_follow_shows_new_messages_live() -> Result<()> {
    use std::io::BufRead;
    let bins = focal_tests::bins!();
    let fed = Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let mut cmd = fed.fp("be-ocsc@carin").cli(&bins);
    cmd.args(["--json", "inbox", "--follow"]).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut next = async || -> Result<Value> {
        let line =
            tokio::time::timeout(crate::PROMPT, rx.recv()).await?.context("focal inbox --follow exited")?;
        Ok(serde_json::from_str(&line)?)
    };
    assert_eq!(next().await?["type"], "replay_done");
    let a = fed.client("nl-fiod@carin").await?;
    let sent = a.send(&crate::draft(&["be-ocsc@carin"], "live", "now"), crate::quiet()).await?;
    let ev = next().await?;
    assert_eq!(ev["type"], "message");
    assert_eq!(ev["msg_id"], hex::encode(sent.msg_id));
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditor_fetches_verifies_and_traces_the_log() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed =
        Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let a = fed.client("nl-fiod@carin").await?;
    let sent = a.send(&crate::draft(&["be-ocsc@carin"], "audited", "metadata only"), crate::quiet()).await?;
    let msg_id = hex::encode(sent.msg_id);
    let auditor = fed.add_member("secretariat-audit@carin", focal_proto::Role::Auditor)?.clone();
    // The verifier key comes from the secretariat out of band; here, from the relay itself.
    let info = focal_client::Client::connect(auditor.profile()?)
        .await?
        .audit()
        .get_log_info(focal_proto::pb::GetCheckpointRequest { fresh: true })
        .await?
        .into_inner();
    let key = info.verifier_key;
    let dir = auditor.dir.join("log");
    let d = dir.to_str().unwrap();

    let fetched =
        json_lines(&ok(&auditor, &bins, &["--json", "audit", "fetch", "--dir", d, "--key", &key]).await?)?;
    assert!(fetched[0]["new_size"].as_u64().unwrap() >= 1, "{fetched:?}");
    let verified =
        json_lines(&ok(&auditor, &bins, &["--json", "audit", "verify", "--dir", d, "--key", &key]).await?)?;
    assert_eq!(verified[0]["type"], "audit_verified");
    let trace = json_lines(&ok(&auditor, &bins, &["--json", "audit", "trace", &msg_id, "--dir", d]).await?)?;
    assert!(trace.iter().any(|e| e["kind"] == "ACCEPTED" || e["kind"] == "accepted"), "{trace:?}");
    assert!(trace.iter().all(|e| e["sender"] == "nl-fiod@carin" || e["sender"] == ""), "{trace:?}");
    let stats = json_lines(&ok(&auditor, &bins, &["--json", "audit", "stats", "--dir", d]).await?)?;
    assert!(stats[0]["records"].as_u64().unwrap() >= 1);
    let csv = ok(&auditor, &bins, &["audit", "export", "--dir", d, "--format", "csv"]).await?;
    assert!(csv.lines().next().unwrap().starts_with("index,"), "{csv}");
    assert!(csv.contains(&msg_id));
    // A wrong key is refused, in one line.
    let out = run(&auditor, &bins, &["audit", "verify", "--dir", d, "--key", "nope"]).await?;
    assert_one_line_error(&out, 1, "key")?;
    // A focal point is not an auditor.
    let fp = fed.fp("nl-fiod@carin");
    let fp_dir = fp.dir.join("log");
    let out = run(fp, &bins, &["audit", "fetch", "--dir", fp_dir.to_str().unwrap(), "--key", &key]).await?;
    assert_one_line_error(&out, 1, "PERMISSION_DENIED")?;
    Ok(())
}
