//! The real `focal-certs` binary: the secretariat's flow end to end, file
//! modes, refusal to overwrite, and one-line errors for bad arguments.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use focal_certs::{ClientPolicy, Credentials, SharedTrust, TrustStore, client_config, server_config};
use focal_proto::Role;

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn focal_certs(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_focal-certs")).args(args).output().unwrap();
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn ok(args: &[&str]) -> String {
    let run = focal_certs(args);
    assert!(run.ok, "focal-certs {args:?} failed: {}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    run.stdout
}

/// Asserts a failure with exactly one `focal-certs: error:` line and returns it.
fn fails(args: &[&str]) -> String {
    let run = focal_certs(args);
    assert!(!run.ok && run.code.is_some_and(|c| c != 0), "focal-certs {args:?} succeeded: {}", run.stdout);
    assert!(run.stdout.is_empty(), "{args:?}: stdout {:?}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: stderr {:?}", run.stderr);
    assert!(lines[0].starts_with("focal-certs: error: "), "{args:?}: {:?}", lines[0]);
    lines[0].to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn full_flow_produces_files_relays_and_clients_load() {
    install_provider();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["init-network", "carin", "--dir", s(d)]);
    ok(&["init-network", "arinsa", "--dir", s(d), "--days", "400"]);
    let out = ok(&[
        "issue",
        "--network",
        "carin",
        "--role",
        "relay",
        "--name",
        "relay1",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--dir",
        s(d),
    ]);
    assert!(out.contains("issued focal://carin/relay/relay1"), "{out}");
    ok(&["issue", "--network", "carin", "--role", "fp", "--name", "nl-fiod", "--days", "30", "--dir", s(d)]);
    ok(&["issue", "--network", "arinsa", "--role", "fp", "--name", "za-afu", "--dir", s(d)]);
    let out = ok(&["crl", "--network", "carin", "--dir", s(d)]);
    assert!(out.contains("CRL number 1, 0 revoked"), "{out}");
    let bundle = d.join("bundle.toml");
    let out = ok(&["bundle", "--dir", s(d), "--out", s(&bundle)]);
    assert!(out.contains("arinsa, carin"), "{out}");

    let carin = d.join("carin");
    let load = |role: &str, name: &str, net: &Path| {
        Credentials::load(&net.join(format!("{role}-{name}.pem")), &net.join(format!("{role}-{name}.key")))
            .unwrap()
    };
    let relay = load("relay", "relay1", &carin);
    let nl = load("fp", "nl-fiod", &carin);
    let za = load("fp", "za-afu", &d.join("arinsa"));
    assert_eq!(relay.identity.uri(), "focal://carin/relay/relay1");
    let crl = carin.join("crl.pem");
    let trust = SharedTrust::new(TrustStore::load(&bundle, &[&crl]).unwrap());
    let policy = ClientPolicy { roles: vec![Role::Fp], networks: None };
    let server = server_config(&relay, trust.clone(), focal_certs::ALPN_GRPC, policy).unwrap();
    for (who, uri) in [(&nl, "focal://carin/fp/nl-fiod"), (&za, "focal://arinsa/fp/za-afu")] {
        let client = client_config(
            who,
            SharedTrust::new(TrustStore::load(&bundle, &[]).unwrap()),
            focal_certs::ALPN_GRPC,
            expect_relay("carin"),
        )
        .unwrap();
        handshake(server.clone(), client, "127.0.0.1").await.assert_ok(uri);
    }

    // Revoke nl-fiod, publish, reload: refused at the next handshake.
    let out = ok(&["revoke", "--network", "carin", "--role", "fp", "--name", "nl-fiod", "--dir", s(d)]);
    assert!(out.contains("revoked focal://carin/fp/nl-fiod serial"), "{out}");
    let out = ok(&["crl", "--network", "carin", "--dir", s(d), "--days", "7"]);
    assert!(out.contains("CRL number 2, 1 revoked"), "{out}");
    trust.replace(TrustStore::load(&bundle, &[&crl]).unwrap());
    let client = client_config(
        &nl,
        SharedTrust::new(TrustStore::load(&bundle, &[]).unwrap()),
        focal_certs::ALPN_GRPC,
        expect_relay("carin"),
    )
    .unwrap();
    handshake(server, client, "localhost").await.assert_refused();
    // Revoking again finds nothing left to revoke.
    let err = fails(&["revoke", "--network", "carin", "--role", "fp", "--name", "nl-fiod", "--dir", s(d)]);
    assert!(err.contains("no unrevoked certificate of focal://carin/fp/nl-fiod"), "{err}");

    // A bundle of one network only.
    let only = d.join("only-arinsa.toml");
    ok(&["bundle", "--dir", s(d), "--out", s(&only), "--network", "arinsa"]);
    let store = TrustStore::load(&only, &[]).unwrap();
    assert_eq!(store.bundle().networks.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["arinsa"]);
}

#[cfg(unix)]
#[test]
fn keys_are_0600_and_existing_files_are_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["init-network", "carin", "--dir", s(d)]);
    ok(&["issue", "--network", "carin", "--role", "admin", "--name", "sec", "--dir", s(d)]);
    let carin = d.join("carin");
    assert_eq!(mode(&carin), 0o700);
    assert_eq!(mode(&carin.join("ca.key")), 0o600);
    assert_eq!(mode(&carin.join("admin-sec.key")), 0o600);
    assert_eq!(mode(&carin.join("ca.pem")), 0o644);
    assert_eq!(mode(&carin.join("admin-sec.pem")), 0o644);

    let ca_before = std::fs::read(carin.join("ca.key")).unwrap();
    let err = fails(&["init-network", "carin", "--dir", s(d)]);
    assert!(err.contains("already exists (use --force to overwrite)"), "{err}");
    assert_eq!(std::fs::read(carin.join("ca.key")).unwrap(), ca_before);

    let key_before = std::fs::read(carin.join("admin-sec.key")).unwrap();
    let err = fails(&["issue", "--network", "carin", "--role", "admin", "--name", "sec", "--dir", s(d)]);
    assert!(err.contains("admin-sec"), "{err}");
    assert_eq!(std::fs::read(carin.join("admin-sec.key")).unwrap(), key_before);
    // --force replaces, and the new key is still 0600.
    ok(&["issue", "--network", "carin", "--role", "admin", "--name", "sec", "--dir", s(d), "--force"]);
    assert_ne!(std::fs::read(carin.join("admin-sec.key")).unwrap(), key_before);
    assert_eq!(mode(&carin.join("admin-sec.key")), 0o600);

    let bundle = d.join("b.toml");
    ok(&["bundle", "--dir", s(d), "--out", s(&bundle)]);
    let err = fails(&["bundle", "--dir", s(d), "--out", s(&bundle)]);
    assert!(err.contains("b.toml already exists"), "{err}");
    ok(&["bundle", "--dir", s(d), "--out", s(&bundle), "--force"]);

    let issued = std::fs::read_to_string(carin.join("issued.toml")).unwrap();
    assert_eq!(issued.matches("[[cert]]").count(), 2, "{issued}");
    // Nothing half-written is left beside the files.
    let names: Vec<String> =
        std::fs::read_dir(&carin).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");

    // --force on init-network keeps the replaced CA: only it can still
    // revoke what it issued.
    let out = ok(&["init-network", "carin", "--dir", s(d), "--force"]);
    assert!(out.contains("kept the replaced"), "{out}");
    let kept: Vec<String> = std::fs::read_dir(&carin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ca.replaced-"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let old_key = kept.iter().find(|n| n.ends_with(".key")).unwrap();
    assert_eq!(std::fs::read(carin.join(old_key)).unwrap(), ca_before);
    assert_eq!(mode(&carin.join(old_key)), 0o600);
    assert_ne!(std::fs::read(carin.join("ca.key")).unwrap(), ca_before);
}

/// The serial is recorded before the key and certificate are written, so a
/// state file that cannot be updated leaves no certificate `revoke` could
/// not find; and runs at the same time do not lose each other's serials.
#[test]
fn issued_serials_are_recorded_first_and_not_lost_by_parallel_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["init-network", "carin", "--dir", s(d)]);
    let carin = d.join("carin");
    std::fs::write(carin.join("issued.toml"), "not = [toml").unwrap();
    let err = fails(&["issue", "--network", "carin", "--role", "fp", "--name", "nl", "--dir", s(d)]);
    assert!(err.contains("issued.toml"), "{err}");
    assert!(!carin.join("fp-nl.key").exists() && !carin.join("fp-nl.pem").exists());
    std::fs::remove_file(carin.join("issued.toml")).unwrap();

    let runs: Vec<_> = (0..8)
        .map(|i| {
            let d = d.to_owned();
            std::thread::spawn(move || {
                ok(&[
                    "issue",
                    "--network",
                    "carin",
                    "--role",
                    "fp",
                    "--name",
                    &format!("m{i}"),
                    "--dir",
                    s(&d),
                ])
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap();
    }
    let issued = std::fs::read_to_string(carin.join("issued.toml")).unwrap();
    assert_eq!(issued.matches("[[cert]]").count(), 8, "{issued}");
}

#[test]
fn renew_keeps_the_identity_with_a_new_key_and_serial() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["init-network", "gfp", "--dir", s(d)]);
    ok(&[
        "issue",
        "--network",
        "gfp",
        "--role",
        "relay",
        "--name",
        "hub",
        "--dns",
        "hub.gfp.example",
        "--dir",
        s(d),
    ]);
    let (pem, key) = (d.join("gfp/relay-hub.pem"), d.join("gfp/relay-hub.key"));
    let before = Credentials::load(&pem, &key).unwrap();
    let out =
        ok(&["renew", "--network", "gfp", "--role", "relay", "--name", "hub", "--days", "90", "--dir", s(d)]);
    assert!(out.contains("renewed focal://gfp/relay/hub") && out.contains("previous certificate"), "{out}");
    let after = Credentials::load(&pem, &key).unwrap();
    assert_eq!(after.identity, before.identity);
    assert_ne!(after.cert_der(), before.cert_der());
    assert_ne!(after.key.secret_der(), before.key.secret_der());
    // The DNS SAN carried over.
    let store = TrustStore::new(
        {
            let mut b = focal_certs::TrustBundle::default();
            let ca = std::fs::read_to_string(d.join("gfp/ca.pem")).unwrap();
            b.insert(net("gfp"), rustls_pki_types::pem::PemObject::from_pem_slice(ca.as_bytes()).unwrap());
            b
        },
        vec![],
    )
    .unwrap();
    let peer = focal_certs::verify_peer(&store, after.cert_der(), &[], std::time::SystemTime::now()).unwrap();
    assert!(peer.not_after < std::time::SystemTime::now() + 91 * DAY);
    let ee = webpki::EndEntityCert::try_from(after.cert_der()).unwrap();
    let name = rustls_pki_types::ServerName::try_from("hub.gfp.example").unwrap();
    ee.verify_is_valid_for_subject_name(&name).unwrap();
    // Both serials are on record; revoking one by serial works.
    let issued = std::fs::read_to_string(d.join("gfp/issued.toml")).unwrap();
    assert_eq!(issued.matches("[[cert]]").count(), 2, "{issued}");
    let err = fails(&["renew", "--network", "gfp", "--role", "fp", "--name", "nobody", "--dir", s(d)]);
    assert!(err.contains("nothing to renew"), "{err}");
}

#[test]
fn bad_arguments_get_one_line_and_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = s(tmp.path());
    let cases: &[(&[&str], &str)] = &[
        (&[], "subcommand"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["init-network", "carin"], "--dir"),
        (&["init-network", "CARIN", "--dir", d], "upper case is not allowed"),
        (&["init-network", "carin", "--dir", d, "--days", "0"], "--days"),
        (&["init-network", "carin", "--dir", d, "--days", "3000000"], "--days"),
        (&["crl", "--network", "carin", "--dir", d, "--days", "3000000"], "--days"),
        (&["init-network", "carin", "--dir", d, "--bogus"], "--bogus"),
        (&["issue", "--network", "carin", "--role", "boss", "--name", "x", "--dir", d], "expected relay, fp"),
        (&["issue", "--network", "carin", "--role", "fp", "--name", "x", "--ip", "nope", "--dir", d], "nope"),
        (&["issue", "--network", "carin", "--role", "fp", "--name", "Bad Name", "--dir", d], "invalid name"),
        (
            &["issue", "--network", "carin", "--role", "fp", "--name", "x", "--dir", d],
            "no CA for network carin",
        ),
        (&["crl", "--network", "carin", "--dir", d], "no CA for network carin"),
        (
            &["revoke", "--network", "carin", "--role", "fp", "--name", "x", "--dir", d],
            "no unrevoked certificate",
        ),
        (&["bundle", "--dir", d, "--out", "/nonexistent/dir/b.toml"], "no network CA found"),
        (&["bundle", "--dir", "/nonexistent/pki", "--out", "b.toml"], "/nonexistent/pki"),
    ];
    for (args, want) in cases {
        let line = fails(args);
        assert!(line.contains(want), "{args:?}: want {want:?} in {line:?}");
    }
    // Once a CA exists, a DNS name that is not one is refused by name.
    ok(&["init-network", "carin", "--dir", d]);
    let line =
        fails(&["issue", "--network", "carin", "--role", "relay", "--name", "r", "--dns", "a b", "--dir", d]);
    assert!(line.contains("invalid DNS name \"a b\""), "{line}");
    let line = fails(&["bundle", "--dir", d, "--out", "/nonexistent/dir/b.toml"]);
    assert!(line.contains("/nonexistent/dir/b.toml"), "{line}");
    // Help and version are not errors.
    assert!(focal_certs(&["--help"]).ok);
    assert!(focal_certs(&["--version"]).ok);
}

/// `init-network --force` run twice within a second keeps both replaced
/// CAs (the second used to rename over the first's kept key), and two
/// runs at once without `--force` do not both succeed (the second used to
/// set the first's new CA aside and install its own).
#[test]
fn replaced_cas_are_all_kept_and_parallel_inits_do_not_replace_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["init-network", "carin", "--dir", s(d)]);
    let carin = d.join("carin");
    let k0 = std::fs::read(carin.join("ca.key")).unwrap();
    ok(&["init-network", "carin", "--dir", s(d), "--force"]);
    let k1 = std::fs::read(carin.join("ca.key")).unwrap();
    ok(&["init-network", "carin", "--dir", s(d), "--force"]);
    let kept: Vec<Vec<u8>> = std::fs::read_dir(&carin)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("ca.replaced-"))
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "both replaced keys are kept");
    assert!(kept.contains(&k0) && kept.contains(&k1));

    let other = tmp.path().join("other");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let d = other.clone();
            std::thread::spawn(move || focal_certs(&["init-network", "arinsa", "--dir", s(&d)]))
        })
        .collect();
    let runs: Vec<Run> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(runs.iter().filter(|r| r.ok).count(), 1, "exactly one creates the CA");
    assert!(runs.iter().filter(|r| !r.ok).all(|r| r.stderr.contains("already exists")), "refused by name");
    let names: Vec<String> = std::fs::read_dir(other.join("arinsa"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("replaced")), "{names:?}");
}

/// A certificate issued by a CA that `init-network --force` replaced can
/// still be revoked: `crl` also signs the revocations with each replaced
/// CA that is still valid, and a store trusting both CAs refuses it.
#[test]
fn a_certificate_of_a_replaced_ca_is_revoked_by_its_crl() {
    install_provider();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let carin = d.join("carin");
    ok(&["init-network", "carin", "--dir", s(d)]);
    ok(&["issue", "--network", "carin", "--role", "fp", "--name", "x", "--dir", s(d)]);
    let c0 = Credentials::load(&carin.join("fp-x.pem"), &carin.join("fp-x.key")).unwrap();
    let old_ca = std::fs::read_to_string(carin.join("ca.pem")).unwrap();
    ok(&["init-network", "carin", "--dir", s(d), "--force"]);
    // A bundle in rollover: the old and the new CA.
    let bundle = d.join("bundle.toml");
    ok(&["bundle", "--dir", s(d), "--out", s(&bundle)]);
    let text = std::fs::read_to_string(&bundle).unwrap();
    let text = text.replacen("ca = [", &format!("ca = [\n\"\"\"\n{old_ca}\"\"\",",), 1);
    std::fs::write(&bundle, &text).unwrap();
    ok(&["revoke", "--network", "carin", "--role", "fp", "--name", "x", "--dir", s(d)]);
    let out = ok(&["crl", "--network", "carin", "--dir", s(d)]);
    assert!(out.contains("signed by the CA replaced at"), "{out}");
    let old_crl = std::fs::read_dir(&carin)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("crl.replaced-"))
        .expect("a CRL of the replaced CA");
    let store = TrustStore::load(&bundle, &[carin.join("crl.pem").as_path(), old_crl.as_path()]).unwrap();
    assert_eq!(store.bundle().networks.values().next().unwrap().len(), 2, "{text}");
    let err = focal_certs::verify_peer(&store, c0.cert_der(), &[], std::time::SystemTime::now()).unwrap_err();
    assert!(matches!(err, focal_certs::CertsError::Revoked { .. }), "{err}");
    // Without the replaced CA's CRL the old certificate would still pass.
    let store = TrustStore::load(&bundle, &[carin.join("crl.pem").as_path()]).unwrap();
    assert!(focal_certs::verify_peer(&store, c0.cert_der(), &[], std::time::SystemTime::now()).is_ok());
}

/// A run killed while writing leaves `.<name>.tmp-<pid>` beside the file
/// (possibly a private key's copy): the next run that locks the network
/// directory removes it.
#[test]
fn temporaries_of_a_killed_run_are_removed_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["init-network", "carin", "--dir", s(d)]);
    let carin = d.join("carin");
    let leftover = carin.join(".fp-x.key.tmp-4242");
    std::fs::write(&leftover, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let unrelated = carin.join(".notes.tmp-draft");
    std::fs::write(&unrelated, "kept").unwrap();
    ok(&["issue", "--network", "carin", "--role", "fp", "--name", "y", "--dir", s(d)]);
    assert!(!leftover.exists(), "the killed run's key copy is gone");
    assert!(unrelated.exists(), "only <name>.tmp-<pid> files are removed");
}
