//! The case-work commands of `focal` driven as a user would: a freezing
//! request with its fields, `focal read --json` showing them, `focal case`,
//! `focal overdue`, and `focal release` + `focal forward --release` for H2.

use anyhow::Result;
use focal_tests::Federation;
use focal_tests::cli::{json_lines, ok, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_request_case_overdue_release_and_forward_through_the_cli() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-afu@arinsa")
        .focal_point("be-ocsc@carin")
        .start()
        .await?;
    let (nl, za, be) = (fed.fp("nl-fiod@carin"), fed.fp("za-afu@arinsa"), fed.fp("be-ocsc@carin"));
    crate::wait_reachable(&nl.client().await?, &["za-afu@arinsa"]).await?;
    let sent = json_lines(
        &ok(
            nl,
            &bins,
            &[
                "--json",
                "send",
                "--to",
                "za-afu@arinsa",
                "--kind",
                "freezing",
                "--case",
                "CARIN-9",
                "--subject",
                "Freeze: Blue Yacht",
                "--body",
                "Please freeze.",
                "--handling",
                "H2",
                "--authority",
                "FIOD",
                "--legal-basis",
                "UNCAC art. 54(2)(a)",
                "--subject-of",
                "Blue Yacht BV:KVK 123,NL91ABNA0417164300",
                "--subject-of",
                "J. Doe",
                "--asset",
                "yacht Blue",
                "--jurisdiction",
                "ZA",
                "--deadline",
                "2020-01-31",
            ],
        )
        .await?,
    )?;
    let id = sent[0]["msg_id"].as_str().expect("msg_id").to_owned();

    // ZA waits for it, reads it: kind and fields in the JSON.
    let mut opened = None;
    for _ in 0..300 {
        let out = run(za, &bins, &["--json", "read", &id, "--from", "nl-fiod@carin"]).await?;
        if out.status.success() {
            opened = Some(json_lines(&String::from_utf8(out.stdout)?)?.remove(0));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // polling a CLI: no signal to wait on
    }
    let o = opened.expect("message arrived");
    assert_eq!(o["kind"], "freezing");
    assert_eq!(o["case_ref"], "CARIN-9");
    assert_eq!(o["request"]["requesting_authority"], "FIOD");
    assert_eq!(o["request"]["legal_basis"], "UNCAC art. 54(2)(a)");
    assert_eq!(o["request"]["subjects"][0]["identifiers"][1], "NL91ABNA0417164300");
    assert_eq!(o["request"]["subjects"][1]["name"], "J. Doe");
    assert_eq!(o["request"]["assets_sought"][0], "yacht Blue");
    assert_eq!(o["request"]["jurisdictions"][0], "ZA");
    assert_eq!(o["response_deadline_ms"], 1_580_515_199_999i64);
    let text = ok(za, &bins, &["read", &id, "--from", "nl-fiod@carin"]).await?;
    assert!(text.contains("Kind:     freezing / seizure request"), "{text}");
    assert!(text.contains("Subject of request:   Blue Yacht BV (KVK 123, NL91ABNA0417164300)"), "{text}");
    assert!(text.contains("H2: no onward sending"), "{text}");

    // The sender's case view and overdue list (deadline 2020: overdue, no reply).
    let case = json_lines(&ok(nl, &bins, &["--json", "case", "CARIN-9"]).await?)?;
    assert_eq!(case.len(), 1);
    assert_eq!(case[0]["kind"], "freezing");
    let over = json_lines(&ok(nl, &bins, &["--json", "overdue"]).await?)?;
    assert_eq!(over.len(), 1);
    assert_eq!(over[0]["msg_id"], id.as_str());
    assert_eq!(over[0]["waiting_for"][0], "za-afu@arinsa");

    // H2: ZA's forward to carin is refused without a release...
    let out = run(za, &bins, &["forward", &id, "--to", "be-ocsc@carin"]).await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HANDLING"), "{err}");
    // ...and accepted with NL's release.
    let rel = fed.dir().join("release.bin");
    let rel_s = rel.to_str().expect("utf-8 path");
    ok(nl, &bins, &["release", &id, "--networks", "carin", "--valid", "1d", "--out", rel_s]).await?;
    let fwd = json_lines(
        &ok(za, &bins, &["--json", "forward", &id, "--to", "be-ocsc@carin", "--release", rel_s]).await?,
    )?;
    let fid = fwd[0]["msg_id"].as_str().expect("msg_id").to_owned();
    let mut got = None;
    for _ in 0..300 {
        let out = run(be, &bins, &["--json", "read", &fid, "--from", "za-afu@arinsa"]).await?;
        if out.status.success() {
            got = Some(json_lines(&String::from_utf8(out.stdout)?)?.remove(0));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let g = got.expect("forward arrived");
    assert_eq!(g["forward_of"]["original_msg_id"], id.as_str());
    assert_eq!(g["forward_of"]["released"], true);
    Ok(())
}
