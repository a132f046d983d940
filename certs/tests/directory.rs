//! Directory entries: a focal point's X25519 key, signed by its identity key,
//! verified against the trust store.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use focal_certs::{
    CertsError, Credentials, EncryptionKey, IssueRequest, Revoked, make_directory_entry,
    verify_directory_entry,
};
use focal_proto::signed::TAG_DIRECTORY;
use focal_proto::{Role, pb};
use prost::Message as _;

fn ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// An entry signed by `signer` over an arbitrary body (what an attacker could build).
fn forge(signer: &Credentials, body: &pb::DirectoryEntryBody) -> pb::DirectoryEntry {
    let bytes = body.encode_to_vec();
    let sig = signer.signing_key().unwrap().sign(&[TAG_DIRECTORY, &bytes].concat());
    pb::DirectoryEntry {
        signed: Some(pb::SignedBlob {
            body: bytes,
            signature: sig.as_ref().to_vec(),
            signer_cert: signer.cert_der().to_vec(),
        }),
        escalation: None,
    }
}

fn body_for(address: &str, key: [u8; 32]) -> pb::DirectoryEntryBody {
    let now = SystemTime::now();
    pb::DirectoryEntryBody {
        version: 1,
        address: address.to_owned(),
        x25519_public: key.to_vec(),
        not_before_ms: ms(now - HOUR),
        not_after_ms: ms(now + DAY),
        key_serial: 1,
        law_enforcement: true,
        display_name: String::new(),
    }
}

fn err_of(r: Result<focal_certs::VerifiedEntry, CertsError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn a_signed_entry_round_trips() {
    let carin = ca("carin");
    let fp = creds(&carin, Role::Fp, "nl-fiod");
    let enc = EncryptionKey::generate().unwrap();
    let now = SystemTime::now();
    let entry =
        make_directory_entry(&fp, enc.public(), 3, ms(now - HOUR), ms(now + DAY), true, "FIOD").unwrap();
    let v = verify_directory_entry(&store(&[&carin], vec![]), &entry, now).unwrap();
    assert_eq!(v.address.to_string(), "nl-fiod@carin");
    assert_eq!(v.x25519_public, enc.public());
    assert_eq!((v.body.key_serial, v.body.law_enforcement, v.body.display_name.as_str()), (3, true, "FIOD"));
    // The encryption key survives a round trip through its secret bytes.
    assert_eq!(EncryptionKey::from_secret_bytes(*enc.secret_bytes()).public(), enc.public());
    assert_ne!(EncryptionKey::generate().unwrap().public(), enc.public());
}

#[test]
fn only_focal_points_publish_entries() {
    let carin = ca("carin");
    let relay = creds(&carin, Role::Relay, "relay1");
    let now = ms(SystemTime::now());
    assert!(matches!(
        make_directory_entry(&relay, [7; 32], 1, now, now + 1000, false, ""),
        Err(CertsError::Directory(_))
    ));
    // And a forged one signed by a relay is refused.
    let entry = forge(&relay, &body_for("relay1@carin", [7; 32]));
    let err = err_of(verify_directory_entry(&store(&[&carin], vec![]), &entry, SystemTime::now()));
    assert!(err.contains("not a focal point"), "{err}");
}

#[test]
fn tampering_is_detected() {
    let carin = ca("carin");
    let s = store(&[&carin], vec![]);
    let fp = creds(&carin, Role::Fp, "nl-fiod");
    let good = forge(&fp, &body_for("nl-fiod@carin", [9; 32]));
    verify_directory_entry(&s, &good, SystemTime::now()).unwrap();

    let mut body = good.clone();
    let b = &mut body.signed.as_mut().unwrap().body;
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(err_of(verify_directory_entry(&s, &body, SystemTime::now())).contains("signature"));

    let mut sig = good.clone();
    sig.signed.as_mut().unwrap().signature[0] ^= 1;
    assert!(err_of(verify_directory_entry(&s, &sig, SystemTime::now())).contains("signature"));

    // Another focal point's certificate in place of the signer's.
    let other = creds(&carin, Role::Fp, "other");
    let mut swapped = good.clone();
    swapped.signed.as_mut().unwrap().signer_cert = other.cert_der().to_vec();
    assert!(err_of(verify_directory_entry(&s, &swapped, SystemTime::now())).contains("signature"));

    assert!(
        verify_directory_entry(&s, &pb::DirectoryEntry { signed: None, escalation: None }, SystemTime::now())
            .is_err()
    );
}

#[test]
fn a_focal_point_cannot_publish_for_another_address() {
    let carin = ca("carin");
    let s = store(&[&carin], vec![]);
    let mallory = creds(&carin, Role::Fp, "mallory");
    let entry = forge(&mallory, &body_for("nl-fiod@carin", [9; 32]));
    let err = err_of(verify_directory_entry(&s, &entry, SystemTime::now()));
    assert!(err.contains("entry for nl-fiod@carin is signed by focal://carin/fp/mallory"), "{err}");
    let entry = forge(&mallory, &body_for("*@carin", [9; 32]));
    assert!(verify_directory_entry(&s, &entry, SystemTime::now()).is_err());
}

#[test]
fn signer_certificate_must_verify() {
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let s = store(&[&carin, &arinsa], vec![]);
    // CARIN-signed certificate claiming an ARINSA focal point.
    let forged = signed_by_ca(&carin, &leaf_params(Some("focal://arinsa/fp/za-afu")));
    let forged = Credentials {
        chain: vec![forged.cert.clone()],
        key: forged.key.clone_key(),
        identity: focal_certs::identity_of_cert(&forged.cert).unwrap(),
    };
    let entry = forge(&forged, &body_for("za-afu@arinsa", [9; 32]));
    let err = verify_directory_entry(&s, &entry, SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::WrongNetwork { .. }), "{err}");

    // A revoked signer.
    let issued = carin.issue(&IssueRequest::new(Role::Fp, "nl-fiod")).unwrap();
    let fp = Credentials::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    let entry = forge(&fp, &body_for("nl-fiod@carin", [9; 32]));
    let crl = carin.crl(&[Revoked { serial_hex: issued.serial_hex.clone(), revoked_at: 1 }], 1, 7).unwrap();
    let revoked_store = store(&[&carin, &arinsa], vec![crl_der(&crl)]);
    let err = verify_directory_entry(&revoked_store, &entry, SystemTime::now()).unwrap_err();
    assert!(matches!(err, CertsError::Revoked { .. }), "{err}");
}

#[test]
fn validity_window_and_key_are_checked() {
    let carin = ca("carin");
    let s = store(&[&carin], vec![]);
    let fp = creds(&carin, Role::Fp, "nl-fiod");
    let now = SystemTime::now();
    let mut later = body_for("nl-fiod@carin", [9; 32]);
    (later.not_before_ms, later.not_after_ms) = (ms(now + HOUR), ms(now + 2 * HOUR));
    let entry = forge(&fp, &later);
    assert!(err_of(verify_directory_entry(&s, &entry, now)).contains("not valid before"));
    verify_directory_entry(&s, &entry, now + HOUR + HOUR / 2).unwrap();
    assert!(err_of(verify_directory_entry(&s, &entry, now + 3 * HOUR)).contains("expired"));
    let mut short = body_for("nl-fiod@carin", [9; 32]);
    short.x25519_public.truncate(31);
    assert!(err_of(verify_directory_entry(&s, &forge(&fp, &short), now)).contains("31 bytes, expected 32"));
    let zero = body_for("nl-fiod@carin", [0; 32]);
    assert!(err_of(verify_directory_entry(&s, &forge(&fp, &zero), now)).contains("all zero"));
    let mut v2 = body_for("nl-fiod@carin", [9; 32]);
    v2.version = 2;
    assert!(err_of(verify_directory_entry(&s, &forge(&fp, &v2), now)).contains("unsupported version 2"));
    assert!(make_directory_entry(&fp, [9; 32], 1, 10, 10, false, "").is_err());
}
