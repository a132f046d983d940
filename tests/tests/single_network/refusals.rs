//! What the relay refuses, each with a precise gRPC status, and the store
//! left unchanged: the recipient's mailbox shows nothing new afterwards.

use anyhow::Result;
use focal_client::{Client, ReadOptions};
use focal_proto::envelope::RecipientPublicKey;
use focal_proto::{Address, pb};
use focal_tests::Federation;
use focal_tests::raw::{CraftOptions, craft, raw_client_streaming, send_envelope};
use prost::Message;
use tonic::Code;

use crate::{addr, draft, inbox_ids, quiet};

/// Limit of the test relay's payload size.
const MAX: u64 = 256 * 1024;

struct Setup {
    fed: Federation,
    a: Client,
    b: Client,
    b_key: RecipientPublicKey,
}

async fn setup() -> Result<Setup> {
    let fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .focal_point("de-bka@carin")
        .limits("carin", |l| l.max_message_bytes = MAX)
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    let b_key = RecipientPublicKey(a.lookup(&addr("be-ocsc@carin")).await?.x25519_public);
    Ok(Setup { fed, a, b, b_key })
}

impl Setup {
    fn creds(&self, who: &str) -> focal_certs::Credentials {
        self.fed.fp(who).cert.credentials().expect("test credentials")
    }

    fn to_b(&self) -> Vec<(Address, RecipientPublicKey)> {
        vec![(addr("be-ocsc@carin"), self.b_key)]
    }

    /// Sends `env` as a (from a's connection) and checks the refusal code,
    /// that the message names what was wrong, and that b's mailbox is unchanged.
    async fn refused(&self, env: &pb::Envelope, code: Code, needle: &str) -> Result<()> {
        let before = inbox_ids(&self.b).await?;
        let err = send_envelope(self.a.channel(), env, 64 * 1024).await.expect_err("must be refused");
        assert_eq!(err.code(), code, "{err:?}");
        assert!(
            err.message().contains(needle),
            "status message {:?} should mention {needle:?}",
            err.message()
        );
        assert_eq!(inbox_ids(&self.b).await?, before, "mailbox changed by a refused send");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_spoofing_is_refused() -> Result<()> {
    let s = setup().await?;
    // a's connection, but the envelope is b's in every respect (b's name,
    // b's certificate, b's valid signature): the relay must go by the caller.
    let env = craft(&addr("de-bka@carin"), &s.creds("de-bka@carin"), &s.to_b(), &CraftOptions::default())?;
    s.refused(&env, Code::PermissionDenied, "not the caller").await?;
    // a's own name but someone else's certificate and signature.
    let mut env =
        craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &CraftOptions::default())?;
    let other = craft(&addr("de-bka@carin"), &s.creds("de-bka@carin"), &s.to_b(), &CraftOptions::default())?;
    env.header.as_mut().unwrap().sender_cert = other.header.unwrap().sender_cert;
    s.refused(&env, Code::PermissionDenied, "sender_cert").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_listing_the_most_and_longest_recipients_is_audited_and_the_relay_serves_on() -> Result<()>
{
    let mut s = setup().await?;
    // A spoofed sender (refused before any routing) naming as many
    // recipients as a context may hold, with the longest names: the REFUSED
    // audit record lists them all (about 150 KB). Such a record once made
    // the store fail, which shut the relay down.
    let mut rcpts = s.to_b();
    rcpts.extend(
        (1..focal_proto::envelope::MAX_RECIPIENTS).map(|i| (addr(&format!("{i:0>64}@carin")), s.b_key)),
    );
    let opts = CraftOptions::default();
    let env = craft(&addr("de-bka@carin"), &s.creds("de-bka@carin"), &rcpts, &opts)?;
    s.refused(&env, Code::PermissionDenied, "not the caller").await?;
    // The relay still accepts, stores and delivers.
    let sent = s.a.send(&draft(&["be-ocsc@carin"], "after", "the big refusal"), quiet()).await?;
    let ids = inbox_ids(&s.b).await?;
    assert!(ids.contains(&hex::encode(sent.msg_id)), "{ids:?}");
    assert!(s.fed.relay("carin").is_running());
    // The auditor reads the refusal with every recipient listed.
    let auditor = s.fed.add_member("secretariat-audit@carin", focal_proto::Role::Auditor)?.clone();
    let mut audit = Client::connect(auditor.profile()?).await?.audit();
    audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await?;
    let mut entries = audit.get_entries(pb::EntriesRequest { start: 0, end: 0 }).await?.into_inner();
    let mut refusal = None;
    while let Some(entry) = futures::StreamExt::next(&mut entries).await {
        let r = focal_proto::audit::decode_record(&entry?.leaf)?;
        if r.kind() == pb::AuditKind::Refused && r.msg_id == opts.msg_id {
            refusal = Some(r);
        }
    }
    let refusal = refusal.expect("the REFUSED record is in the log");
    assert_eq!(refusal.recipients.len(), focal_proto::envelope::MAX_RECIPIENTS);
    // Under the caller's name, not the one its header claimed.
    assert_eq!(refusal.sender, "nl-fiod@carin");
    assert!(refusal.detail.contains("envelope sender de-bka@carin is not the caller"), "{}", refusal.detail);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_another_members_mailbox_is_refused() -> Result<()> {
    let s = setup().await?;
    let sent = s.a.send(&draft(&["be-ocsc@carin"], "for b only", "secret"), quiet()).await?;
    let c = s.fed.client("de-bka@carin").await?;
    let msg = focal_client::MessageRef { msg_id: sent.msg_id, sender: addr("nl-fiod@carin") };

    let err = c.read(&msg, &ReadOptions::default(), quiet()).await.expect_err("c must not read b's mail");
    assert_eq!(err.status_code(), Some(Code::PermissionDenied), "{err}");
    let mut relay = c.relay();
    let err = relay
        .fetch(pb::FetchRequest { msg_id: sent.msg_id.to_vec(), sender: "nl-fiod@carin".into(), offset: 0 })
        .await
        .map(|_| ())
        .expect_err("raw fetch refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    // An ack by c (with a receipt signed by c) neither works nor removes it.
    let err = c.ack(&msg, &[0u8; 32]).await.expect_err("c cannot ack b's message");
    assert!(matches!(err.status_code(), Some(Code::PermissionDenied | Code::InvalidArgument)), "{err}");
    assert!(inbox_ids(&c).await?.is_empty());
    assert_eq!(inbox_ids(&s.b).await?, vec![hex::encode(sent.msg_id)], "b's mailbox unchanged");
    // b still reads it.
    let opened = s.b.read(&msg, &ReadOptions::default(), quiet()).await?;
    assert_eq!(opened.content.body, "secret");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() -> Result<()> {
    let s = setup().await?;
    let opts = CraftOptions { body_len: MAX as usize + 1, ..Default::default() };
    let env = craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &opts)?;
    s.refused(&env, Code::ResourceExhausted, "exceeds").await?;

    // A header that understates the size: more payload than announced.
    let opts = CraftOptions { body_len: 1000, ..Default::default() };
    let mut env = craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &opts)?;
    env.payload.extend_from_slice(&vec![0u8; 4096]);
    s.refused(&env, Code::InvalidArgument, "").await?;

    // Through the library, a big attachment is refused the same way.
    let big = s.fed.dir().join("big.bin");
    std::fs::write(&big, vec![7u8; MAX as usize + 10])?;
    let mut d = draft(&["be-ocsc@carin"], "big", "too big");
    d.attachments = vec![big];
    let before = inbox_ids(&s.b).await?;
    let err = s.a.send(&d, quiet()).await.expect_err("too big");
    assert_eq!(err.status_code(), Some(Code::ResourceExhausted), "{err}");
    assert_eq!(inbox_ids(&s.b).await?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_overlong_messages_are_refused() -> Result<()> {
    let s = setup().await?;
    let now = focal_client::util::now_ms();
    let opts = CraftOptions {
        created_at_ms: now - 2 * 86_400_000,
        expires_at_ms: now - 86_400_000,
        ..Default::default()
    };
    let env = craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &opts)?;
    s.refused(&env, Code::FailedPrecondition, "expired").await?;

    let opts =
        CraftOptions { created_at_ms: now, expires_at_ms: now + 400 * 86_400_000, ..Default::default() };
    let env = craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &opts)?;
    s.refused(&env, Code::InvalidArgument, "lifetime").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_msg_id_is_refused() -> Result<()> {
    let s = setup().await?;
    let env = craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &CraftOptions::default())?;
    send_envelope(s.a.channel(), &env, 64 * 1024).await?;
    s.refused(&env, Code::AlreadyExists, "already").await?;
    // A different envelope reusing the id is refused too.
    let opts = CraftOptions {
        msg_id: focal_proto::envelope::parse_context(&env.header.as_ref().unwrap().context)?.msg_id,
        body_len: 7,
        ..Default::default()
    };
    let env2 = craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &opts)?;
    s.refused(&env2, Code::AlreadyExists, "already").await?;
    assert_eq!(inbox_ids(&s.b).await?.len(), 1, "stored once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_tampered_payloads_are_refused() -> Result<()> {
    let s = setup().await?;
    let mut env =
        craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &CraftOptions::default())?;
    env.header.as_mut().unwrap().signature[10] ^= 0x40;
    s.refused(&env, Code::InvalidArgument, "signature").await?;

    // Valid signature over the header's digest, but a payload swapped in
    // transit: the digest check catches it.
    let mut env =
        craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &CraftOptions::default())?;
    let last = env.payload.len() - 1;
    env.payload[last] ^= 1;
    s.refused(&env, Code::InvalidArgument, "").await?;

    // Re-addressed context (recipient changed after signing).
    let mut env =
        craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &CraftOptions::default())?;
    let other =
        craft(&addr("nl-fiod@carin"), &s.creds("nl-fiod@carin"), &s.to_b(), &CraftOptions::default())?;
    env.header.as_mut().unwrap().context = other.header.unwrap().context;
    s.refused(&env, Code::InvalidArgument, "signature").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_refused() -> Result<()> {
    let s = setup().await?;
    let before = inbox_ids(&s.b).await?;
    // Raw bytes that are not a SendRequest (a field 2 length-delimited that
    // runs past the end; then an invalid wire type).
    for garbage in [vec![0x12, 0xff, 0xff, 0x01, 0x00], vec![0x0f, 0x01, 0x02]] {
        let err = raw_client_streaming(s.a.channel(), "/focal.v1.Relay/Send", vec![garbage])
            .await
            .expect_err("refused");
        // gRPC's status table maps "error parsing request proto" to INTERNAL
        // (tonic-prost does so); INVALID_ARGUMENT would be as precise.
        assert!(matches!(err.code(), Code::Internal | Code::InvalidArgument), "{err:?}");
        assert!(
            err.message().to_lowercase().contains("decode") || err.code() == Code::InvalidArgument,
            "{err:?}"
        );
    }
    // Well-formed protobuf in the wrong order: a chunk before any header.
    let chunk_first =
        pb::SendRequest { part: Some(pb::send_request::Part::Chunk(vec![1, 2, 3])) }.encode_to_vec();
    let err = raw_client_streaming(s.a.channel(), "/focal.v1.Relay/Send", vec![chunk_first])
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("header"), "{err:?}");
    // A header whose context is not a Context.
    let bad_ctx = pb::SendRequest {
        part: Some(pb::send_request::Part::Header(pb::EnvelopeHeader {
            context: vec![0xff; 20],
            ..Default::default()
        })),
    }
    .encode_to_vec();
    let err = raw_client_streaming(s.a.channel(), "/focal.v1.Relay/Send", vec![bad_ctx])
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("context"), "{err:?}");
    assert_eq!(inbox_ids(&s.b).await?, before);
    Ok(())
}
