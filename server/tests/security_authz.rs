//! Authorization matrix: every RPC of every service called by every role of
//! the relay's own network and of another network, against a real relay
//! over mTLS. Only the allowed cells succeed (or fail for a reason other
//! than authorization, e.g. NOT_FOUND for an unknown message id).
//!
//! [`TABLE`] is the single source: the test checks each cell against it and
//! checks that `docs/AUTHORIZATION.md` is exactly [`render`] of it. After a
//! deliberate change to the table, regenerate the document with
//! `FOCAL_WRITE_DOCS=1 cargo test -p focal-relay --test security_authz`.

mod common;
mod security_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::*;
use focal_certs::Credentials;
use focal_proto::Role;
use focal_proto::pb::{self, admin_client::AdminClient, audit_client::AuditClient};
use focal_proto::pb::{directory_client::DirectoryClient, relay_client::RelayClient};
use tonic::Code;
use tonic::transport::Channel;

/// What one role of the relay's own network may do with one RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// Allowed: succeeds, or fails for a reason other than authorization.
    Allow,
    /// Refused with PERMISSION_DENIED by the service.
    Deny,
    /// Refused at the TLS handshake (the gRPC listener admits fp, auditor
    /// and admin certificates of its own network only).
    Tls,
    /// The service is not mounted yet: UNIMPLEMENTED for everyone admitted.
    /// Intended: admin only.
    Pending,
}

use Cell::{Allow, Deny, Pending, Tls};

/// (service, rpc, [fp, auditor, admin, relay] of the relay's own network).
/// Every role of another network is refused at the TLS handshake.
const TABLE: &[(&str, &str, [Cell; 4])] = &[
    ("Relay", "Send", [Allow, Deny, Deny, Tls]),
    ("Relay", "Inbox", [Allow, Deny, Deny, Tls]),
    ("Relay", "Fetch", [Allow, Deny, Deny, Tls]),
    ("Relay", "Ack", [Allow, Deny, Deny, Tls]),
    ("Relay", "Receipts", [Allow, Deny, Deny, Tls]),
    ("Relay", "ProveAccepted", [Allow, Deny, Deny, Tls]),
    ("Directory", "Publish", [Allow, Deny, Deny, Tls]),
    ("Directory", "Lookup", [Allow, Allow, Allow, Tls]),
    ("Directory", "ListMembers", [Allow, Allow, Allow, Tls]),
    ("Audit", "GetLogInfo", [Deny, Allow, Allow, Tls]),
    ("Audit", "GetEntries", [Deny, Allow, Allow, Tls]),
    ("Audit", "GetInclusionProof", [Deny, Allow, Allow, Tls]),
    ("Audit", "GetConsistencyProof", [Deny, Allow, Allow, Tls]),
    ("Admin", "Status", [Pending, Pending, Pending, Tls]),
    ("Admin", "ListQueue", [Pending, Pending, Pending, Tls]),
    ("Admin", "RetryPeer", [Pending, Pending, Pending, Tls]),
    ("Admin", "PausePeer", [Pending, Pending, Pending, Tls]),
    ("Admin", "ResumePeer", [Pending, Pending, Pending, Tls]),
    ("Admin", "Purge", [Pending, Pending, Pending, Tls]),
    ("Admin", "Reload", [Pending, Pending, Pending, Tls]),
];

const ROLES: [Role; 4] = [Role::Fp, Role::Auditor, Role::Admin, Role::Relay];

fn mark(c: Cell) -> &'static str {
    match c {
        Allow => "✅ allowed",
        Deny => "⛔ PERMISSION_DENIED",
        Tls => "⛔ TLS refused",
        Pending => "⏳ not mounted (UNIMPLEMENTED)",
    }
}

/// The markdown of `docs/AUTHORIZATION.md`.
fn render() -> String {
    let mut s = String::from(
        "# Authorization matrix\n\n\
         Who may call which RPC of a relay's gRPC API. Generated from the table in\n\
         `server/tests/security_authz.rs`, whose test calls every RPC with every role of\n\
         the relay's own network and of another network and checks each cell; the test\n\
         also fails if this file differs from the table (regenerate with\n\
         `FOCAL_WRITE_DOCS=1 cargo test -p focal-relay --test security_authz`).\n\n\
         - **allowed**: the call succeeds, or fails for a reason other than authorization\n  \
         (e.g. NOT_FOUND for an unknown message id).\n\
         - **PERMISSION_DENIED**: the service refuses the caller's role.\n\
         - **TLS refused**: the listener admits only `fp`, `auditor` and `admin` certificates\n  \
         of its own network; the handshake fails and the refusal is audited\n  \
         (CERTIFICATE_REFUSED).\n\
         - **not mounted**: the Admin service is not served yet; every admitted caller gets\n  \
         UNIMPLEMENTED. Intended: `admin` of the own network only.\n\n\
         Within the allowed cells, the services check more: a focal point reads only its\n\
         own mailbox and receipts, fetches and acks only messages addressed to it, proves\n\
         only its own messages, and publishes only its own directory entry.\n\n\
         | service | RPC | fp | auditor | admin | relay | any role of another network |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (service, rpc, cells) in TABLE {
        let c: Vec<&str> = cells.iter().map(|c| mark(*c)).collect();
        s.push_str(&format!(
            "| {service} | {rpc} | {} | {} | {} | {} | {} |\n",
            c[0],
            c[1],
            c[2],
            c[3],
            mark(Tls)
        ));
    }
    s
}

fn doc_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/AUTHORIZATION.md")
}

#[test]
fn authorization_doc_matches_the_table() {
    let want = render();
    if std::env::var_os("FOCAL_WRITE_DOCS").is_some() {
        std::fs::create_dir_all(doc_path().parent().unwrap()).unwrap();
        std::fs::write(doc_path(), &want).unwrap();
    }
    let have = std::fs::read_to_string(doc_path()).unwrap_or_default();
    assert!(
        have == want,
        "docs/AUTHORIZATION.md differs from TABLE; regenerate with \
         FOCAL_WRITE_DOCS=1 cargo test -p focal-relay --test security_authz"
    );
}

/// What a call came to.
#[derive(Debug)]
enum Outcome {
    Ok,
    Status(tonic::Status),
}

fn outcome<T>(r: Result<T, tonic::Status>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(s) => Outcome::Status(s),
    }
}

/// Drains a server stream, keeping the first error.
async fn drain<T>(r: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>) -> Outcome {
    match r {
        Err(s) => Outcome::Status(s),
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Outcome::Ok,
                    Err(e) => return Outcome::Status(e),
                }
            }
        }
    }
}

/// A caller: its credentials and channel (which may fail at first use when
/// the relay refuses its certificate).
struct Caller {
    creds: Credentials,
    fp: Fp,
    channel: Channel,
}

async fn caller(pki: &Pki, net: &str, role: Role, relay: SocketAddr) -> Caller {
    let name = format!("{role}-{net}");
    let creds = pki.creds(net, role, &name);
    // TLS 1.3: the client finishes its handshake before the server checks its
    // certificate, so a refused caller usually connects and fails at its first RPC.
    let channel = match channel(pki.trust(), &creds, "carin", relay).await {
        Ok(c) => c,
        Err(_) => Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
    };
    let fp = Fp {
        creds: std::sync::Arc::new(creds.clone()),
        addr: creds.identity.address(),
        channel: channel.clone(),
    };
    Caller { creds, fp, channel }
}

use tonic::transport::Endpoint;

/// Calls `service`/`rpc` as `who` with a plausible request.
async fn call(service: &str, rpc: &str, who: &Caller, helper: &Fp) -> Outcome {
    let ch = who.channel.clone();
    let me = &who.fp;
    let unknown = vec![7u8; 16];
    match (service, rpc) {
        ("Relay", "Send") => {
            let payload = random_bytes(300, 5);
            outcome(me.send_header(me.header(&["b@carin"], &payload, |_| {}), &payload).await)
        }
        ("Relay", "Inbox") => {
            let req = pb::InboxRequest { include_receipts: true, replay_only: true };
            drain(RelayClient::new(ch).inbox(req).await).await
        }
        ("Relay", "Fetch") => {
            let req = pb::FetchRequest { msg_id: unknown, sender: "b@carin".into(), offset: 0 };
            drain(RelayClient::new(ch).fetch(req).await).await
        }
        ("Relay", "Ack") => {
            let req = pb::AckRequest { msg_id: unknown, sender: "b@carin".into(), delivered: None };
            outcome(RelayClient::new(ch).ack(req).await)
        }
        ("Relay", "Receipts") => {
            outcome(RelayClient::new(ch).receipts(pb::ReceiptsRequest { since_ms: 0 }).await)
        }
        ("Relay", "ProveAccepted") => {
            let req = pb::ProveAcceptedRequest { msg_id: unknown, tree_size: 0 };
            outcome(RelayClient::new(ch).prove_accepted(req).await)
        }
        ("Directory", "Publish") => {
            // A focal point publishes its own entry; others try a focal
            // point's validly signed entry (they cannot sign one of their own).
            let signer = if who.creds.identity.role == Role::Fp { &who.creds } else { &helper.creds };
            let now = now_ms();
            let entry = focal_certs::make_directory_entry(
                signer,
                [9; 32],
                1,
                now - 1000,
                now + 86_400_000,
                true,
                "A",
            )
            .unwrap();
            outcome(DirectoryClient::new(ch).publish(entry).await)
        }
        ("Directory", "Lookup") => {
            outcome(DirectoryClient::new(ch).lookup(pb::LookupRequest { address: "b@carin".into() }).await)
        }
        ("Directory", "ListMembers") => outcome(
            DirectoryClient::new(ch).list_members(pb::ListMembersRequest { network: String::new() }).await,
        ),
        ("Audit", "GetLogInfo") => {
            outcome(AuditClient::new(ch).get_log_info(pb::GetCheckpointRequest { fresh: false }).await)
        }
        ("Audit", "GetEntries") => {
            drain(AuditClient::new(ch).get_entries(pb::EntriesRequest { start: 0, end: 1 }).await).await
        }
        ("Audit", "GetInclusionProof") => {
            let req = pb::InclusionProofRequest {
                leaf: Some(pb::inclusion_proof_request::Leaf::Index(0)),
                tree_size: 0,
            };
            outcome(AuditClient::new(ch).get_inclusion_proof(req).await)
        }
        ("Audit", "GetConsistencyProof") => {
            let req = pb::ConsistencyProofRequest { old_size: 1, new_size: 0 };
            outcome(AuditClient::new(ch).get_consistency_proof(req).await)
        }
        ("Admin", "Status") => outcome(AdminClient::new(ch).status(pb::StatusRequest::default()).await),
        ("Admin", "ListQueue") => {
            outcome(AdminClient::new(ch).list_queue(pb::ListQueueRequest::default()).await)
        }
        ("Admin", "RetryPeer") => outcome(AdminClient::new(ch).retry_peer(pb::PeerRequest::default()).await),
        ("Admin", "PausePeer") => outcome(AdminClient::new(ch).pause_peer(pb::PeerRequest::default()).await),
        ("Admin", "ResumePeer") => {
            outcome(AdminClient::new(ch).resume_peer(pb::PeerRequest::default()).await)
        }
        ("Admin", "Purge") => outcome(AdminClient::new(ch).purge(pb::PurgeRequest::default()).await),
        ("Admin", "Reload") => outcome(AdminClient::new(ch).reload(pb::ReloadRequest::default()).await),
        other => panic!("no call for {other:?}: add it"),
    }
}

/// Whether `got` is what `want` says; `Err` explains a mismatch.
fn check(want: Cell, got: &Outcome) -> Result<(), String> {
    let fail = |why: &str| Err(format!("expected {want:?} ({why}), got {got:?}"));
    match (want, got) {
        (Allow, Outcome::Ok) => Ok(()),
        (Allow, Outcome::Status(s)) => match s.code() {
            Code::PermissionDenied | Code::Unauthenticated | Code::Unimplemented => {
                fail("an authorization refusal")
            }
            Code::Unavailable | Code::Unknown | Code::Cancelled => fail("a transport failure"),
            _ => Ok(()),
        },
        (Deny, Outcome::Status(s)) if s.code() == Code::PermissionDenied => Ok(()),
        (Pending, Outcome::Status(s)) if s.code() == Code::Unimplemented => Ok(()),
        // Refused at the handshake: the RPC fails as a transport error.
        (Tls, Outcome::Status(s))
            if matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) =>
        {
            Ok(())
        }
        _ => fail("see the table"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_with_every_role_of_both_networks() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let helper = Fp::connect(&pki, "carin", "b", relay.addr).await;

    let mut callers = BTreeMap::new();
    for net in ["carin", "arinsa"] {
        for role in ROLES {
            callers.insert((net, role.as_str()), caller(&pki, net, role, relay.addr).await);
        }
    }
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for (service, rpc, row) in TABLE {
        for net in ["carin", "arinsa"] {
            for (i, role) in ROLES.iter().enumerate() {
                let want = if net == "carin" { row[i] } else { Tls };
                let got = call(service, rpc, &callers[&(net, role.as_str())], &helper).await;
                cells += 1;
                if let Err(why) = check(want, &got) {
                    mismatches.push(format!("{service}.{rpc} as {role} of {net}: {why}"));
                }
            }
        }
    }
    assert_eq!(cells, TABLE.len() * 8);
    assert!(mismatches.is_empty(), "{} of {cells} cells wrong:\n{}", mismatches.len(), mismatches.join("\n"));

    // The allowed Send really delivered; nothing else reached b's mailbox.
    let inbox = helper.inbox().await;
    let senders: Vec<String> = inbox
        .iter()
        .map(|m| {
            focal_proto::envelope::parse_context(&m.header.as_ref().unwrap().context)
                .unwrap()
                .sender
                .to_string()
        })
        .collect();
    assert_eq!(senders, ["fp-carin@carin"]);
    relay.stop().await.unwrap();
}
