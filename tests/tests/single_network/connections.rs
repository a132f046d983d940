//! What one client can hold on the relay: connections per identity
//! (`limits.max_connections_per_identity`), the time a Send may stall
//! (`limits.upload_idle_secs`) and the size of one request message.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use focal_proto::pb;
use focal_tests::Federation;
use focal_tests::raw::{CraftOptions, craft};
use tonic::Code;
use tonic::transport::Channel;

use crate::{PROMPT, addr};

/// A new connection of `who` (its own TCP and TLS session) and the status
/// of one cheap authenticated RPC on it.
async fn connection(fed: &Federation, who: &str) -> Result<(Channel, Result<(), tonic::Status>)> {
    let profile = fed.fp(who).profile()?;
    let (creds, trust) = focal_client::connect::load_identity(&profile)?;
    let channel = focal_client::connect::connect(&profile, &creds, trust).await?;
    let rpc = pb::relay_client::RelayClient::new(channel.clone())
        .receipts(pb::ReceiptsRequest::default())
        .await
        .map(drop);
    Ok((channel, rpc))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_holds_at_most_its_share_of_connections() -> Result<()> {
    let fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .limits("carin", |l| l.max_connections_per_identity = 2)
        .start()
        .await?;
    let (first, r) = connection(&fed, "nl-fiod@carin").await?;
    r?;
    let (_second, r) = connection(&fed, "nl-fiod@carin").await?;
    r?;
    let (_third, r) = connection(&fed, "nl-fiod@carin").await?;
    let e = r.expect_err("a third connection of one identity is refused");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("already has 2 connections open"), "{e:?}");
    // Another focal point is not affected.
    let (_other, r) = connection(&fed, "be-ocsc@carin").await?;
    r?;
    // A closed connection gives its slot back (once the relay sees it close).
    drop(first);
    let deadline = Instant::now() + PROMPT;
    loop {
        let (_again, r) = connection(&fed, "nl-fiod@carin").await?;
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%e, "slot not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("the slot of a closed connection never came back: {e:?}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_abandoned_and_an_oversized_message_refused() -> Result<()> {
    let fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .limits("carin", |l| l.upload_idle_secs = 1)
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    let b_key =
        focal_proto::envelope::RecipientPublicKey(a.lookup(&addr("be-ocsc@carin")).await?.x25519_public);
    let creds = fed.fp("nl-fiod@carin").cert.credentials()?;
    let env =
        craft(&addr("nl-fiod@carin"), &creds, &[(addr("be-ocsc@carin"), b_key)], &CraftOptions::default())?;

    // The header, then nothing: the relay gives up after upload_idle_secs.
    let header = pb::SendRequest { part: Some(pb::send_request::Part::Header(env.header.clone().unwrap())) };
    let stalled = futures::StreamExt::chain(futures::stream::iter([header]), futures::stream::pending());
    let started = Instant::now();
    let e = tokio::time::timeout(PROMPT, pb::relay_client::RelayClient::new(a.channel()).send(stalled))
        .await?
        .expect_err("a stalled Send is abandoned");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("no Send data from the client for 1 s"), "{e:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));

    // One request message above the relay's 1 MiB limit is refused before
    // it is buffered whole.
    let mut big = env.header.clone().unwrap();
    big.sender_cert = vec![0; 2 * 1024 * 1024];
    let parts = futures::stream::iter([pb::SendRequest { part: Some(pb::send_request::Part::Header(big)) }]);
    let e = pb::relay_client::RelayClient::new(a.channel()).send(parts).await.expect_err("too large");
    assert!(e.message().contains("too large"), "{e:?}");

    // The relay serves on, and b's mailbox holds nothing from either.
    assert!(crate::inbox_ids(&b).await?.is_empty());
    a.send(&crate::draft(&["be-ocsc@carin"], "after", "the stalled upload"), crate::quiet()).await?;
    assert_eq!(crate::inbox_ids(&b).await?.len(), 1);
    Ok(())
}
