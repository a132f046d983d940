//! Trust bundle, trust store, CRL binding, CA handling and `verify_peer`,
//! driven directly (no sockets).

mod common;

use std::time::SystemTime;

use common::*;
use focal_certs::{
    CertsError, Credentials, IssueRequest, NetworkCa, Revoked, TrustBundle, TrustStore, Usage, verify_peer,
    verify_peer_for,
};
use focal_proto::Role;
use ring::signature::KeyPair as _;

fn r(serial: &str) -> Revoked {
    Revoked { serial_hex: serial.to_owned(), revoked_at: 1_700_000_000 }
}

#[test]
fn verify_peer_returns_identity_and_raw_ed25519_key() {
    let carin = ca("carin");
    let fp = creds(&carin, Role::Fp, "nl-fiod");
    let peer = verify_peer(&store(&[&carin], vec![]), fp.cert_der(), &[], SystemTime::now()).unwrap();
    assert_eq!(peer.identity.uri(), "focal://carin/fp/nl-fiod");
    assert_eq!(peer.ed25519_public.as_slice(), fp.signing_key().unwrap().public_key().as_ref());
    assert!(peer.not_after > SystemTime::now() + 29 * DAY); // capped at the 30-day CA
    // fp certificates are client-only; relays are both.
    let s = store(&[&carin], vec![]);
    assert!(matches!(
        verify_peer_for(&s, fp.cert_der(), &[], SystemTime::now(), Usage::Server),
        Err(CertsError::WrongUsage { .. })
    ));
    let relay = creds(&carin, Role::Relay, "relay1");
    verify_peer_for(&s, relay.cert_der(), &[], SystemTime::now(), Usage::Server).unwrap();
    verify_peer(&s, relay.cert_der(), &[], SystemTime::now()).unwrap();
}

#[test]
fn identity_of_a_network_missing_from_the_bundle_is_refused() {
    let (carin, rrag) = (ca("carin"), ca("rrag"));
    let fp = creds(&rrag, Role::Fp, "x");
    let err = verify_peer(&store(&[&carin], vec![]), fp.cert_der(), &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::UnknownNetwork { .. }), "{err}");
    assert!(err.to_string().contains("network rrag is not in the trust bundle"), "{err}");
}

#[test]
fn bundle_round_trips_through_toml() {
    let (carin, arinsa, arin_wa) = (ca("carin"), ca("arinsa"), ca("arin-wa"));
    let mut bundle = TrustBundle::default();
    bundle.insert(carin.network().clone(), carin.cert_der());
    bundle.insert(arin_wa.network().clone(), arin_wa.cert_der());
    bundle.insert(arinsa.network().clone(), arinsa.cert_der());
    bundle.insert(arinsa.network().clone(), arinsa.cert_der()); // duplicate ignored
    let text = bundle.to_toml();
    assert!(text.contains("[networks.arin-wa]"), "{text}");
    let back = TrustBundle::parse(&text).unwrap();
    assert_eq!(back.networks, bundle.networks);
    assert_eq!(back.networks[&net("arinsa")].len(), 1);
    // Two CAs for one network (rollover) are kept in order.
    let carin2 = ca("carin");
    bundle.insert(carin2.network().clone(), carin2.cert_der());
    let back = TrustBundle::parse(&bundle.to_toml()).unwrap();
    assert_eq!(back.networks[&net("carin")], vec![carin.cert_der(), carin2.cert_der()]);
    // Both CAs of a network vouch for its identities.
    let s = TrustStore::new(back, vec![]).unwrap();
    for issuer in [&carin, &carin2] {
        verify_peer(&s, creds(issuer, Role::Fp, "a").cert_der(), &[], SystemTime::now()).unwrap();
    }
}

#[test]
fn bundle_errors_name_the_key() {
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let pem = carin.cert_pem();
    let cases = [
        ("networks = 3".to_owned(), "trust bundle: networks: must be a table"),
        ("[other]\n".to_owned(), "trust bundle: other: unknown key"),
        ("[networks.CARIN]\nca = []\n".to_owned(), "trust bundle: networks.CARIN: invalid network id"),
        ("[networks.carin]\n".to_owned(), "trust bundle: networks.carin.ca: missing"),
        ("[networks.carin]\nca = []\n".to_owned(), "networks.carin.ca: empty"),
        ("[networks.carin]\nca = [\"hello\"]\n".to_owned(), "networks.carin.ca[0]: no PEM CERTIFICATE block"),
        ("[networks.carin]\nca = [1]\n".to_owned(), "networks.carin.ca[0]: must be a PEM string"),
        (
            format!("[networks.carin]\nca = [\"\"\"\n{pem}\"\"\"]\nextra = 1\n"),
            "networks.carin.extra: unknown key",
        ),
        (
            format!("[networks.arinsa]\nca = [\"\"\"\n{pem}\"\"\"]\n"),
            "networks.arinsa.ca[0]: not a usable CA certificate for network arinsa: it is the CA of network carin",
        ),
        ("[networks.carin\nca = 1".to_owned(), "trust bundle: (syntax): line 1"),
    ];
    for (text, want) in cases {
        let err = TrustBundle::parse(&text).unwrap_err().to_string();
        assert!(err.contains(want), "want {want:?}, got {err:?}");
    }
    // A leaf certificate is no CA.
    let leaf = carin.issue(&IssueRequest::new(Role::Fp, "x")).unwrap();
    let text = format!("[networks.carin]\nca = [\"\"\"\n{}\"\"\"]\n", leaf.cert_pem);
    let err = TrustBundle::parse(&text).unwrap_err().to_string();
    assert!(err.contains("networks.carin.ca[0]"), "{err}");
    // The store refuses a programmatic bundle filing a CA under the wrong network.
    let mut bundle = TrustBundle::default();
    bundle.insert(net("carin"), arinsa.cert_der());
    let err = TrustStore::new(bundle, vec![]).unwrap_err().to_string();
    assert!(err.contains("networks.carin.ca[0]") && err.contains("CA of network arinsa"), "{err}");
}

#[test]
fn crls_belong_to_the_network_whose_ca_signed_them() {
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let outsider = ca("rrag");
    let za = carin.issue(&IssueRequest::new(Role::Fp, "nl")).unwrap();
    // A CRL from a CA outside the bundle is refused outright.
    let crl = outsider.crl(&[r(&za.serial_hex)], 1, 7).unwrap();
    let err = TrustStore::new(
        {
            let mut b = TrustBundle::default();
            b.insert(net("carin"), carin.cert_der());
            b
        },
        vec![crl_der(&crl)],
    )
    .unwrap_err();
    assert!(matches!(err, CertsError::Crl { .. }), "{err}");
    assert!(err.to_string().contains("not a CA of any network in the trust bundle"), "{err}");
    // A CA with the same name but another key cannot publish carin's CRL.
    let impostor = ca("carin");
    let crl = impostor.crl(&[r(&za.serial_hex)], 1, 7).unwrap();
    assert!(TrustStore::new(store(&[&carin], vec![]).bundle().clone(), vec![crl_der(&crl)]).is_err());

    // ARINSA's CRL listing CARIN's serial revokes nothing of CARIN.
    let crl = arinsa.crl(&[r(&za.serial_hex)], 1, 7).unwrap();
    let s = store(&[&carin, &arinsa], vec![crl_der(&crl)]);
    assert!(s.has_crl(&net("arinsa")) && !s.has_crl(&net("carin")));
    let cert = Credentials::from_pem(&za.cert_pem, &za.key_pem).unwrap();
    verify_peer(&s, cert.cert_der(), &[], SystemTime::now()).unwrap();
    // CARIN's own CRL does.
    let crl = carin.crl(&[r(&za.serial_hex)], 1, 7).unwrap();
    let s = store(&[&carin, &arinsa], vec![crl_der(&crl)]);
    let err = verify_peer(&s, cert.cert_der(), &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::Revoked { .. }), "{err}");
}

/// A CA listed twice (a hand-edited bundle with the same PEM pasted twice,
/// or a CA re-issued with its key): the CRL covers both copies, and a
/// revoked certificate is refused, not let through by the copy tried next.
#[test]
fn a_ca_listed_twice_does_not_let_a_revoked_certificate_through() {
    let carin = ca("carin");
    let fp = carin.issue(&IssueRequest::new(Role::Fp, "nl")).unwrap();
    let cert = Credentials::from_pem(&fp.cert_pem, &fp.key_pem).unwrap();
    let mut bundle = TrustBundle::default();
    bundle.insert(net("carin"), carin.cert_der());
    let text = bundle.to_toml();
    let entry = &text[text.find("\"\"\"").unwrap()..text.rfind("\"\"\",").unwrap() + 4];
    let twice = text.replacen(entry, &format!("{entry}\n{entry}"), 1);
    let bundle = TrustBundle::parse(&twice).unwrap();
    assert_eq!(bundle.networks[&net("carin")].len(), 2, "{twice}");
    let crl = crl_der(&carin.crl(&[r(&fp.serial_hex)], 1, 7).unwrap());
    let s = TrustStore::new(bundle, vec![crl]).unwrap();
    let err = verify_peer(&s, cert.cert_der(), &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::Revoked { .. }), "{err}");
    // Asked again (a verification may be remembered): still refused.
    assert!(verify_peer(&s, cert.cert_der(), &[], SystemTime::now()).is_err());
}

#[test]
fn the_newest_crl_of_a_ca_wins_whatever_the_load_order() {
    let carin = ca("carin");
    let fp = carin.issue(&IssueRequest::new(Role::Fp, "nl")).unwrap();
    let cert = Credentials::from_pem(&fp.cert_pem, &fp.key_pem).unwrap();
    let old = crl_der(&carin.crl(&[], 4, 7).unwrap());
    let new = crl_der(&carin.crl(&[r(&fp.serial_hex)], 5, 7).unwrap());
    for crls in [vec![old.clone(), new.clone()], vec![new, old]] {
        let err = verify_peer(&store(&[&carin], crls), cert.cert_der(), &[], SystemTime::now()).unwrap_err();
        assert!(matches!(err, CertsError::Revoked { .. }), "{err}");
    }
}

#[test]
fn a_stale_crl_fails_closed_and_an_expired_ca_vouches_for_nobody() {
    let carin = ca("carin"); // 30-day CA
    let mut req = IssueRequest::new(Role::Fp, "nl");
    req.not_after = SystemTime::now() + 20 * DAY;
    let fp = creds_for(&carin, &req);
    let s = store(&[&carin], vec![crl_der(&carin.crl(&[], 1, 2).unwrap())]);
    let later = SystemTime::now() + 3 * DAY;
    let err = verify_peer(&s, fp.cert_der(), &[], later).unwrap_err();
    assert!(matches!(err, CertsError::RevocationUnknown { .. }), "{err}");
    let err =
        verify_peer(&store(&[&carin], vec![]), fp.cert_der(), &[], SystemTime::now() + 31 * DAY).unwrap_err();
    assert!(matches!(err, CertsError::CaNotValid { .. }), "{err}");
}

#[test]
fn leaf_validity_is_capped_at_the_ca() {
    let carin = ca("carin"); // 30 days
    let fp = creds(&carin, Role::Fp, "nl"); // asks for 365 days
    let peer = verify_peer(&store(&[&carin], vec![]), fp.cert_der(), &[], SystemTime::now()).unwrap();
    assert!(peer.not_after <= SystemTime::now() + 31 * DAY);
    let mut req = IssueRequest::new(Role::Fp, "nl");
    req.not_before = SystemTime::now() + 40 * DAY;
    req.not_after = SystemTime::now() + 50 * DAY;
    assert!(matches!(carin.issue(&req), Err(CertsError::InvalidRequest(_))));
}

#[test]
fn issue_requests_are_validated() {
    let carin = ca("carin");
    for (name, dns) in [("Bad Name", None), ("ok", Some("not a host!")), ("ok", Some(""))] {
        let mut req = IssueRequest::new(Role::Relay, name);
        req.dns = dns.map(|d| vec![d.to_owned()]).unwrap_or_default();
        assert!(carin.issue(&req).is_err(), "{name} {dns:?}");
    }
    assert!(NetworkCa::generate(&net("carin"), 0).is_err());
    assert!(carin.crl(&[r("zz")], 1, 7).is_err());
    assert!(carin.crl(&[], 1, 0).is_err());
}

#[test]
fn ca_load_round_trips_and_refuses_a_foreign_key() {
    let carin = ca("carin");
    let again = NetworkCa::load(&carin.cert_pem(), &carin.key_pem()).unwrap();
    assert_eq!(again.network(), carin.network());
    assert_eq!(again.cert_der(), carin.cert_der());
    // The reloaded CA issues certificates the original's bundle trusts.
    let fp = creds(&again, Role::Fp, "nl");
    verify_peer(&store(&[&carin], vec![]), fp.cert_der(), &[], SystemTime::now()).unwrap();
    let other = ca("carin");
    let err = NetworkCa::load(&carin.cert_pem(), &other.key_pem()).unwrap_err();
    assert!(matches!(err, CertsError::KeyMismatch { .. }), "{err}");
    let leaf = carin.issue(&IssueRequest::new(Role::Fp, "x")).unwrap();
    assert!(matches!(NetworkCa::load(&leaf.cert_pem, &leaf.key_pem), Err(CertsError::BadCa { .. })));
}

#[test]
fn credentials_refuse_a_key_of_another_certificate() {
    let carin = ca("carin");
    let a = carin.issue(&IssueRequest::new(Role::Fp, "a")).unwrap();
    let b = carin.issue(&IssueRequest::new(Role::Fp, "b")).unwrap();
    let err = Credentials::from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
    assert!(matches!(err, CertsError::KeyMismatch { .. }), "{err}");
    assert!(Credentials::from_pem("", &a.key_pem).is_err());
    assert!(Credentials::from_pem(&a.cert_pem, "").is_err());
    let ok = Credentials::from_pem(&a.cert_pem, &a.key_pem).unwrap();
    assert_eq!(ok.identity.uri(), "focal://carin/fp/a");
    assert_eq!(a.identity, ok.identity);
}

/// Each snapshot remembers its successful verifications (every relay hop
/// checks the same signers' certificates); a remembered success must never
/// outlive the window in which the full check would pass.
#[test]
fn a_remembered_verification_never_outlives_the_certificate_the_ca_or_the_crl() {
    let carin = ca("carin"); // 30-day CA
    let mut req = IssueRequest::new(Role::Fp, "nl");
    req.not_after = SystemTime::now() + 5 * DAY;
    let issued = carin.issue(&req).unwrap();
    let fp = Credentials::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    // CRL valid for 2 days: remembered now, refused after its nextUpdate.
    let s = store(&[&carin], vec![crl_der(&carin.crl(&[], 1, 2).unwrap())]);
    for _ in 0..3 {
        verify_peer(&s, fp.cert_der(), &[], SystemTime::now()).unwrap();
    }
    let err = verify_peer(&s, fp.cert_der(), &[], SystemTime::now() + 3 * DAY).unwrap_err();
    assert!(matches!(err, CertsError::RevocationUnknown { .. }), "{err}");
    // Without a CRL: remembered now, refused once the leaf expired.
    let s = store(&[&carin], vec![]);
    verify_peer(&s, fp.cert_der(), &[], SystemTime::now()).unwrap();
    let err = verify_peer(&s, fp.cert_der(), &[], SystemTime::now() + 6 * DAY).unwrap_err();
    assert!(matches!(err, CertsError::Expired { .. }), "{err}");
    // The usage is part of what is remembered.
    let err = verify_peer_for(&s, fp.cert_der(), &[], SystemTime::now(), Usage::Server).unwrap_err();
    assert!(matches!(err, CertsError::WrongUsage { .. }), "{err}");
    // A revocation reaches a new snapshot at once (a reload builds a new store).
    let s = store(&[&carin], vec![crl_der(&carin.crl(&[r(&issued.serial_hex)], 2, 2).unwrap())]);
    let err = verify_peer(&s, fp.cert_der(), &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::Revoked { .. }), "{err}");
}

/// One file holding several CRLs (`cat carin-crl.pem arinsa-crl.pem >
/// all.pem`): every CRL in it is loaded, not only the first, which left
/// the other networks without revocation checks.
#[test]
fn every_crl_of_a_file_holding_several_is_loaded() {
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let fp = arinsa.issue(&IssueRequest::new(Role::Fp, "za")).unwrap();
    let cert = Credentials::from_pem(&fp.cert_pem, &fp.key_pem).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle_path = dir.path().join("bundle.toml");
    std::fs::write(&bundle_path, store(&[&carin, &arinsa], vec![]).bundle().to_toml()).unwrap();
    let all = dir.path().join("all-crls.pem");
    let text = carin.crl(&[], 1, 7).unwrap() + &arinsa.crl(&[r(&fp.serial_hex)], 1, 7).unwrap();
    std::fs::write(&all, text).unwrap();
    let s = TrustStore::load(&bundle_path, &[all.as_path()]).unwrap();
    assert!(s.has_crl(&net("carin")) && s.has_crl(&net("arinsa")));
    let err = verify_peer(&s, cert.cert_der(), &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::Revoked { .. }), "{err}");
    // A file with no CRL in it is still refused, naming the file.
    std::fs::write(&all, "not a crl").unwrap();
    let err = TrustStore::load(&bundle_path, &[all.as_path()]).unwrap_err();
    assert!(
        err.to_string().contains("all-crls.pem") && err.to_string().contains("not a PEM X509 CRL"),
        "{err}"
    );
}
