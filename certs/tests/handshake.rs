//! Real TLS 1.3 handshakes over loopback (tokio-rustls) between configs built
//! by `server_config` / `client_config`: who is accepted, who is refused, and
//! that every refusal reaches the refusal hook with its reason.

mod common;

use std::time::SystemTime;

use common::*;
use focal_certs::{ClientPolicy, ExpectedServer, IssueRequest, Revoked, client_config, server_config};
use focal_proto::Role;
use rcgen::ExtendedKeyUsagePurpose;

fn reasons(seen: &std::sync::Mutex<Vec<focal_certs::CertRefusal>>) -> String {
    seen.lock()
        .unwrap()
        .iter()
        .map(|r| format!("[{:?}] {}", r.claimed, r.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn good_client_is_accepted_and_server_sees_its_identity() {
    install_provider();
    let carin = ca("carin");
    let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
    let fp = creds(&carin, Role::Fp, "nl-fiod");
    let client = good_client(&fp, store(&[&carin], vec![]), expect_relay("carin"));
    handshake(server.clone(), client.clone(), "localhost").await.assert_ok("focal://carin/fp/nl-fiod");
    // Dialling the relay by IP address works too (IP SAN).
    handshake(server, client, "127.0.0.1").await.assert_ok("focal://carin/fp/nl-fiod");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn relays_of_different_networks_federate() {
    install_provider();
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let both = || store(&[&carin, &arinsa], vec![]);
    let server_creds = creds(&carin, Role::Relay, "relay1");
    let server = server_config(
        &server_creds,
        focal_certs::SharedTrust::new(both()),
        focal_certs::ALPN_FEDERATION,
        ClientPolicy { roles: vec![Role::Relay], networks: None },
    )
    .unwrap();
    let peer = creds(&arinsa, Role::Relay, "relay1");
    let client = client_config(
        &peer,
        focal_certs::SharedTrust::new(both()),
        focal_certs::ALPN_FEDERATION,
        expect_relay("carin"),
    )
    .unwrap();
    handshake(server, client, "localhost").await.assert_ok("focal://arinsa/relay/relay1");
}

#[tokio::test]
async fn carin_ca_cannot_mint_an_arinsa_identity() {
    install_provider();
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    // The CARIN CA signs a certificate claiming an ARINSA relay identity.
    let mut params = leaf_params(Some("focal://arinsa/relay/relay1"));
    params.subject_alt_names.push(rcgen::SanType::DnsName("localhost".try_into().unwrap()));
    let forged = signed_by_ca(&carin, &params);

    // As a client, against a relay listener that accepts relays of any network.
    let (server, _, seen) = relay_server(&carin, store(&[&carin, &arinsa], vec![]), &[Role::Relay]);
    handshake(server, raw_client(raw_chain(&[&forged])), "localhost").await.assert_refused();
    let why = reasons(&seen);
    assert!(why.contains("focal://arinsa/relay/relay1"), "{why}");
    assert!(why.contains("issued by the carin CA, not the arinsa CA"), "{why}");

    // As a server, to a client that expects an ARINSA relay.
    let forged_creds = focal_certs::Credentials {
        chain: vec![forged.cert.clone()],
        key: forged.key.clone_key(),
        identity: focal_certs::identity_of_cert(&forged.cert).unwrap(),
    };
    let (trust, seen) = recording(store(&[&carin, &arinsa], vec![]));
    let server = server_config(
        &forged_creds,
        focal_certs::SharedTrust::new(store(&[&carin, &arinsa], vec![])),
        focal_certs::ALPN_GRPC,
        policy(&[Role::Fp]),
    )
    .unwrap();
    let fp = creds(&arinsa, Role::Fp, "za-afu");
    let client = client_config(&fp, trust, focal_certs::ALPN_GRPC, expect_relay("arinsa")).unwrap();
    handshake(server, client, "localhost").await.assert_refused();
    assert!(reasons(&seen).contains("issued by the carin CA, not the arinsa CA"), "{}", reasons(&seen));
}

#[tokio::test]
async fn fp_certificate_is_refused_on_a_relay_listener() {
    install_provider();
    let carin = ca("carin");
    let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Relay]);
    let fp = creds(&carin, Role::Fp, "nl-fiod");
    let client = good_client(&fp, store(&[&carin], vec![]), expect_relay("carin"));
    handshake(server, client, "localhost").await.assert_refused();
    let why = reasons(&seen);
    assert!(why.contains("role fp not accepted here (expected relay)"), "{why}");
}

#[tokio::test]
async fn listener_restricted_to_its_network_refuses_other_networks() {
    install_provider();
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let server_creds = creds(&carin, Role::Relay, "relay1");
    let (trust, seen) = recording(store(&[&carin, &arinsa], vec![]));
    let only_carin = ClientPolicy { roles: vec![Role::Fp], networks: Some(vec![net("carin")]) };
    let server = server_config(&server_creds, trust, focal_certs::ALPN_GRPC, only_carin).unwrap();
    let za = creds(&arinsa, Role::Fp, "za-afu");
    handshake(server, raw_client(chain_of(&za)), "localhost").await.assert_refused();
    assert!(
        reasons(&seen).contains("network arinsa not accepted here (expected carin)"),
        "{}",
        reasons(&seen)
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    install_provider();
    let carin = ca("carin");
    let now = SystemTime::now();
    let mut expired = IssueRequest::new(Role::Fp, "old");
    (expired.not_before, expired.not_after) = (now - 10 * DAY, now - DAY);
    let mut future = IssueRequest::new(Role::Fp, "early");
    (future.not_before, future.not_after) = (now + DAY, now + 10 * DAY);
    for (req, want) in [(expired, "expired at"), (future, "is not valid before")] {
        let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
        let client = good_client(&creds_for(&carin, &req), store(&[&carin], vec![]), expect_relay("carin"));
        let err = handshake(server, client, "localhost").await.assert_refused().to_owned();
        assert!(reasons(&seen).contains(want), "{}", reasons(&seen));
        assert!(err.to_lowercase().contains("valid") || err.contains("xpired"), "{err}");
    }
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_handshake_after_reload() {
    install_provider();
    let carin = ca("carin");
    let (server, trust, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
    let issued = carin.issue(&IssueRequest::new(Role::Fp, "nl-fiod")).unwrap();
    let fp = focal_certs::Credentials::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    let client = good_client(&fp, store(&[&carin], vec![]), expect_relay("carin"));
    handshake(server.clone(), client.clone(), "localhost").await.assert_ok("focal://carin/fp/nl-fiod");

    // A CRL that does not list it changes nothing.
    let other = carin.issue(&IssueRequest::new(Role::Fp, "other")).unwrap();
    let r = |s: &str| Revoked { serial_hex: s.to_owned(), revoked_at: 1_700_000_000 };
    trust.replace(store(&[&carin], vec![crl_der(&carin.crl(&[r(&other.serial_hex)], 1, 7).unwrap())]));
    handshake(server.clone(), client.clone(), "localhost").await.assert_ok("focal://carin/fp/nl-fiod");

    // Reload with a CRL listing it: the same server config refuses it now.
    let crl = carin.crl(&[r(&other.serial_hex), r(&issued.serial_hex)], 2, 7).unwrap();
    trust.replace(store(&[&carin], vec![crl_der(&crl)]));
    handshake(server, client, "localhost").await.assert_refused();
    let why = reasons(&seen);
    assert!(why.contains(&format!("serial {}) is revoked by the carin CRL", issued.serial_hex)), "{why}");
}

#[tokio::test]
async fn self_signed_and_unknown_ca_certificates_are_refused() {
    install_provider();
    let carin = ca("carin");
    let self_signed_cert = self_signed(&leaf_params(Some("focal://carin/fp/mallory")));
    let impostor_ca = ca("carin"); // same name, not in the bundle
    let from_unknown_ca = creds(&impostor_ca, Role::Fp, "mallory");
    let cases = [
        (raw_chain(&[&self_signed_cert]), "is not a CA of network carin"),
        (chain_of(&from_unknown_ca), "does not verify with the key of any carin CA"),
    ];
    for (chain, want) in cases {
        let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
        handshake(server, raw_client(chain), "localhost").await.assert_refused();
        let why = reasons(&seen);
        assert!(why.contains(want), "{want}: {why}");
        let case = want;
        assert!(why.contains("focal://carin/fp/mallory"), "{case}: {why}");
    }
}

#[tokio::test]
async fn wrong_or_missing_extended_key_usage_is_refused() {
    install_provider();
    let carin = ca("carin");
    for ekus in [vec![ExtendedKeyUsagePurpose::ServerAuth], vec![]] {
        let mut params = leaf_params(Some("focal://carin/fp/nl-fiod"));
        params.extended_key_usages = ekus.clone();
        let cert = signed_by_ca(&carin, &params);
        let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
        handshake(server, raw_client(raw_chain(&[&cert])), "localhost").await.assert_refused();
        let why = reasons(&seen);
        assert!(why.contains("not valid for TLS client authentication"), "{ekus:?}: {why}");
    }
}

#[tokio::test]
async fn a_leaf_cannot_act_as_a_ca() {
    install_provider();
    let carin = ca("carin");
    let leaf = signed_by_ca(&carin, &leaf_params(Some("focal://carin/fp/nl-fiod")));
    let child = signed_by_leaf(&leaf, &leaf_params(Some("focal://carin/fp/evil")));
    let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
    handshake(server, raw_client(raw_chain(&[&child, &leaf])), "localhost").await.assert_refused();
    let why = reasons(&seen);
    assert!(why.contains("focal://carin/fp/evil"), "{why}");
    assert!(why.contains("not trusted"), "{why}");
}

#[tokio::test]
async fn missing_malformed_or_duplicate_san_uris_are_refused() {
    install_provider();
    let carin = ca("carin");
    let mut two = leaf_params(Some("focal://carin/fp/a"));
    two.subject_alt_names.push(rcgen::SanType::URI("focal://carin/fp/b".try_into().unwrap()));
    let cases = [
        (leaf_params(None), "no subjectAltName extension"),
        (
            {
                let mut p = leaf_params(Some("https://carin.example/fp/x"));
                p.subject_alt_names.push(rcgen::SanType::DnsName("x.example".try_into().unwrap()));
                p
            },
            "no focal:// SAN URI",
        ),
        (leaf_params(Some("focal://carin/superuser/x")), "malformed SAN URI"),
        (leaf_params(Some("focal://CARIN/fp/x")), "malformed SAN URI"),
        (two, "2 focal:// SAN URIs"),
    ];
    for (params, want) in cases {
        let cert = signed_by_ca(&carin, &params);
        let (server, _, seen) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
        handshake(server, raw_client(raw_chain(&[&cert])), "localhost").await.assert_refused();
        let why = reasons(&seen);
        assert!(why.contains(want), "want {want:?}: {why}");
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    install_provider();
    let carin = ca("carin");
    let (server, _, _) = relay_server(&carin, store(&[&carin], vec![]), &[Role::Fp]);
    let err = handshake(server, raw_client(None), "localhost").await.assert_refused().to_owned();
    assert!(err.contains("no certificates") || err.contains("NoCertificatesPresented"), "{err}");
}

#[tokio::test]
async fn client_refuses_a_server_of_the_wrong_network_role_or_name() {
    install_provider();
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let both = || store(&[&carin, &arinsa], vec![]);
    let (server, _, _) = relay_server(&carin, both(), &[Role::Fp]);
    let fp = creds(&arinsa, Role::Fp, "za-afu");

    // Expecting an ARINSA relay, reaching a CARIN relay.
    let (trust, seen) = recording(both());
    let client = client_config(&fp, trust, focal_certs::ALPN_GRPC, expect_relay("arinsa")).unwrap();
    handshake(server.clone(), client, "localhost").await.assert_refused();
    assert!(
        reasons(&seen).contains("network carin not accepted here (expected arinsa)"),
        "{}",
        reasons(&seen)
    );

    // Expecting an auditor (a role the server does not have).
    let (trust, seen) = recording(both());
    let auditor = ExpectedServer { network: net("carin"), role: Role::Auditor };
    let client = client_config(&fp, trust, focal_certs::ALPN_GRPC, auditor).unwrap();
    handshake(server.clone(), client, "localhost").await.assert_refused();
    assert!(reasons(&seen).contains("role relay not accepted here (expected auditor)"), "{}", reasons(&seen));

    // The right relay, dialled under a name its certificate does not carry.
    let (trust, seen) = recording(both());
    let client = client_config(&fp, trust, focal_certs::ALPN_GRPC, expect_relay("carin")).unwrap();
    handshake(server.clone(), client.clone(), "relay.other.example").await.assert_refused();
    assert!(reasons(&seen).contains("is not valid for relay.other.example"), "{}", reasons(&seen));
    handshake(server, client, "localhost").await.assert_ok("focal://arinsa/fp/za-afu");
}

#[tokio::test]
async fn client_refuses_a_focal_point_posing_as_a_relay() {
    install_provider();
    let carin = ca("carin");
    // An fp certificate (no serverAuth) with a DNS SAN, used as a server certificate.
    let mut req = IssueRequest::new(Role::Fp, "nl-fiod");
    req.dns = vec!["localhost".into()];
    let fp_server = creds_for(&carin, &req);
    let server = server_config(
        &fp_server,
        focal_certs::SharedTrust::new(store(&[&carin], vec![])),
        focal_certs::ALPN_GRPC,
        policy(&[Role::Fp]),
    )
    .unwrap();
    let (trust, seen) = recording(store(&[&carin], vec![]));
    let me = creds(&carin, Role::Fp, "me");
    let as_fp = ExpectedServer { network: net("carin"), role: Role::Fp };
    let client = client_config(&me, trust, focal_certs::ALPN_GRPC, as_fp).unwrap();
    handshake(server, client, "localhost").await.assert_refused();
    assert!(reasons(&seen).contains("not valid for TLS server authentication"), "{}", reasons(&seen));
}
