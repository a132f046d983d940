//! Witnessing over the federation link, whole relays in-process
//! (`focal_relay::serve`, PKI from `focal_certs` in a temp dir): carin and
//! gfp are peers; after a message crosses the link, carin's `GetLogInfo`
//! (asked by a carin auditor) returns a checkpoint carrying gfp's
//! cosignature, which verifies with gfp's witness key (read from gfp's
//! `witness.key` and printed by `focal-relay check`), and the key file is
//! private (0600). A gfp admin then makes gfp's witness forget carin's log
//! (`Admin.ForgetWitnessedLog`: admins only, audited in gfp's log, NOT_FOUND
//! for a log it never pinned), and carin's next checkpoint is cosigned
//! again, pinned afresh.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Fp, Pki, init};
use focal_proto::audit::{WitnessKey, add_cosignature, verify_cosignatures};
use focal_proto::pb::admin_client::AdminClient;
use focal_proto::pb::audit_client::AuditClient;
use focal_proto::{Role, pb};
use focal_relay::audit::witness::{Witness, witness_name};
use focal_relay::config::RelayConfig;
use tokio::sync::oneshot;

const DEADLINE: Duration = Duration::from_secs(60);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_cosign_each_others_checkpoints() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let ports = [("carin", free_udp_port()), ("gfp", free_udp_port())];
    let mut dirs = Vec::new();
    let mut relays = Vec::new();
    for (i, (net, port)) in ports.iter().enumerate() {
        let (pnet, pport) = ports[1 - i];
        let extra = format!(
            "\n[limits]\nshutdown_grace_secs = 2\n\n[[peers]]\nname = \"relay-{pnet}\"\nnetwork = \"{pnet}\"\n\
             address = \"127.0.0.1:{pport}\"\ndefault_route = true\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = pki.federated_relay_config(net, dir.path(), &extra, *port);
        let config = RelayConfig::load(&path).unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let udp = UdpSocket::bind(("127.0.0.1", *port)).unwrap();
        let listeners = focal_relay::Listeners { grpc, federation: Some(udp), metrics: None };
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(focal_relay::serve(config, listeners, async move {
            let _ = rx.await;
        }));
        relays.push((addr, path, tx, join));
        dirs.push(dir);
    }
    let (carin_addr, gfp_addr) = (relays[0].0, relays[1].0);

    // Traffic across the link: carin -> gfp, fetched at gfp.
    let alice = Fp::connect(&pki, "carin", "nl-fiod", carin_addr).await;
    let gina = Fp::connect(&pki, "gfp", "secretariat", gfp_addr).await;
    alice.send(&["secretariat@gfp"], b"ciphertext standing in").await.unwrap();
    let start = Instant::now();
    while gina.inbox().await.is_empty() {
        assert!(start.elapsed() < DEADLINE, "the message never reached gfp");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // gfp's witness key: its key file (0600), as `focal-relay check` prints it.
    let key_path = dirs[1].path().join("witness.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "witness.key mode");
    }
    let gfp_signer = Witness::load_or_create_key(&key_path, &witness_name("focal/gfp/relay-gfp")).unwrap();
    let gfp_key = WitnessKey::parse(&gfp_signer.verifier_key()).unwrap();
    let report = focal_relay::check::check(&relays[1].1).to_string();
    assert!(report.contains(&gfp_signer.verifier_key()), "check prints the witness key:\n{report}");
    assert!(report.contains("audit log origin focal/gfp/relay-gfp"), "{report}");

    // carin's auditor eventually sees a checkpoint cosigned by gfp.
    let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "auditor", carin_addr).await;
    let mut audit = AuditClient::new(auditor.channel.clone());
    let start = Instant::now();
    let (info, cosigned) = loop {
        let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: false }).await.unwrap().into_inner();
        if let (Some(cp), [line, ..]) = (&info.checkpoint, info.cosignatures.as_slice())
            && cp.size > 0
        {
            let cosigned = add_cosignature(&cp.note, line).unwrap();
            break (info, cosigned);
        }
        assert!(start.elapsed() < DEADLINE, "no cosignature on carin's checkpoint: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let found = verify_cosignatures(&cosigned, std::slice::from_ref(&gfp_key), 1).unwrap();
    assert_eq!(found.len(), 1, "{info:?}");
    assert_eq!(gfp_key.witness_name(), "focal/gfp/relay-gfp/witness");
    // A key that is not gfp's does not count.
    let other = Witness::load_or_create_key(&dirs[0].path().join("witness.key"), gfp_key.witness_name())
        .unwrap()
        .verifier_key();
    let other = WitnessKey::parse(&other).unwrap();
    assert!(verify_cosignatures(&cosigned, &[other], 1).is_err());

    // gfp's admin makes its witness forget carin's log.
    let carin_origin = "focal/carin/relay-carin";
    let mut member = AdminClient::new(gina.channel.clone());
    let denied = member
        .forget_witnessed_log(pb::ForgetWitnessedLogRequest { origin: carin_origin.into() })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let gfp_admin = Fp::connect_role(&pki, "gfp", Role::Admin, "ops", gfp_addr).await;
    let mut admin = AdminClient::new(gfp_admin.channel.clone());
    let unknown = admin
        .forget_witnessed_log(pb::ForgetWitnessedLogRequest { origin: "focal/rrag/relay-rrag".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains(carin_origin), "names what is pinned: {unknown:?}");
    let ack = admin
        .forget_witnessed_log(pb::ForgetWitnessedLogRequest { origin: carin_origin.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        ack.detail.contains("witness forgets log focal/carin/relay-carin")
            && ack.detail.contains("audit leaf")
    );
    let gfp_auditor = Fp::connect_role(&pki, "gfp", Role::Auditor, "auditor", gfp_addr).await;
    let mut gfp_audit = AuditClient::new(gfp_auditor.channel.clone());
    let size = gfp_audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    let size = size.checkpoint.unwrap().size;
    let mut entries =
        gfp_audit.get_entries(pb::EntriesRequest { start: 0, end: size }).await.unwrap().into_inner();
    let mut forgotten = Vec::new();
    while let Some(e) = entries.message().await.unwrap() {
        let r = focal_proto::audit::decode_record(&e.leaf).unwrap();
        if r.kind == pb::AuditKind::WitnessForgotten as i32 {
            forgotten.push(r);
        }
    }
    assert_eq!(forgotten.len(), 1, "one WITNESS_FORGOTTEN record in gfp's log");
    assert_eq!(forgotten[0].peer, "focal://gfp/admin/ops");
    assert!(forgotten[0].detail.contains(carin_origin), "{:?}", forgotten[0]);

    // carin's next checkpoint is cosigned by gfp again (pinned afresh).
    let before = info.checkpoint.as_ref().unwrap().size;
    alice.send(&["secretariat@gfp"], b"after the witness forgot").await.unwrap();
    let start = Instant::now();
    loop {
        let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: false }).await.unwrap().into_inner();
        if let (Some(cp), [line, ..]) = (&info.checkpoint, info.cosignatures.as_slice())
            && cp.size > before
            && verify_cosignatures(
                &add_cosignature(&cp.note, line).unwrap(),
                std::slice::from_ref(&gfp_key),
                1,
            )
            .is_ok()
        {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "carin's later checkpoint was not cosigned: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (_, _, tx, join) in relays {
        let _ = tx.send(());
        join.await.unwrap().unwrap();
    }
}
