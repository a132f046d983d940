//! `focal-relay check` on the CRL cases an operator meets (the certificate
//! cases are in `cli.rs`): a file that is not a CRL and a CRL of a CA
//! outside the bundle are errors naming the file; a CRL whose next update
//! is near is a warning; a peer whose network has no CA in the bundle is a
//! warning naming it; metrics on the gRPC address is refused.

mod common;

use std::process::Command;

use common::*;
use focal_certs::NetworkCa;
use focal_proto::NetworkId;

const BIN: &str = env!("CARGO_BIN_EXE_focal-relay");

fn check(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN).args(["check", "--config"]).arg(config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_reports_crl_problems() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let crl = pki.path("carin-crl.pem");

    let (ok, text) = check(&pki.relay_config("carin", data.path(), ""));
    assert!(ok, "{text}");
    assert!(
        text.contains("ok    tls.crls[0]: CRL Focal carin CA (carin-crl.pem): next update due in "),
        "{text}"
    );

    std::fs::write(&crl, pki.cas["carin"].crl(&[], 2, 3).unwrap()).unwrap();
    let (ok, text) = check(&pki.relay_config("carin", data.path(), ""));
    assert!(ok, "a CRL due soon still works: {text}");
    assert!(text.contains("warn  tls.crls[0]") && text.contains("republish it soon"), "{text}");

    std::fs::write(&crl, "garbage").unwrap();
    let (ok, text) = check(&pki.relay_config("carin", data.path(), ""));
    assert!(!ok);
    assert!(text.contains("carin-crl.pem") && text.contains("not a PEM X509 CRL"), "{text}");

    let stranger = NetworkCa::generate(&NetworkId::new("rrag").unwrap(), 10).unwrap();
    std::fs::write(&crl, stranger.crl(&[], 1, 30).unwrap()).unwrap();
    let (ok, text) = check(&pki.relay_config("carin", data.path(), ""));
    assert!(!ok);
    assert!(text.contains("is not a CA of any network in the trust bundle"), "{text}");
}

#[test]
fn check_refuses_metrics_on_the_grpc_address() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let path = pki.relay_config("carin", data.path(), "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("grpc = \"127.0.0.1:0\"\n", "grpc = \"127.0.0.1:7443\"\nmetrics = \"127.0.0.1:7443\"\n");
    std::fs::write(&path, text).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("listen.metrics: same address as listen.grpc (127.0.0.1:7443)"), "{text}");
}

#[test]
fn check_warns_of_a_peer_whose_network_the_bundle_does_not_trust() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let data = tempfile::tempdir().unwrap();
    let peers = "[[peers]]\nname = \"relay-gfp\"\nnetwork = \"gfp\"\naddress = \"127.0.0.1:7000\"\n\n\
                 [[peers]]\nname = \"relay-rrag\"\nnetwork = \"rrag\"\naddress = \"127.0.0.1:7001\"\n";
    let (ok, text) = check(&pki.federated_relay_config("carin", data.path(), peers, 0));
    assert!(ok, "the relay still starts (the CA may be added by a reload): {text}");
    assert!(
        text.contains("warn  peers[1] relay-rrag serves network rrag, which has no CA in tls.trust_bundle"),
        "{text}"
    );
    assert!(!text.contains("peers[0]"), "gfp is in the bundle: {text}");
}
