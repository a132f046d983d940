//! Who may not open a federation link on a running relay: a relay
//! certificate of CARIN announcing ARINSA in its hello, and a focal point's
//! certificate. (The transport's own tests cover hello checking in depth;
//! these go through whole relays and check the honest traffic still flows.)

use focal_certs::{IssueRequest, SharedTrust};
use focal_proto::{NetworkId, Role};
use focal_relay::federation::close_code;
use focal_tests::Federation;
use focal_tests::fedraw::{close_code_of, hello_of, raw_connect, raw_hello};

use super::*;

async fn star() -> Result<Federation> {
    Federation::builder().hub("gfp").focal_point("nl-fiod@carin").focal_point("za-npa@arinsa").start().await
}

fn trust(fed: &Federation) -> Result<SharedTrust> {
    Ok(SharedTrust::new(fed.pki.trust_store()?))
}

fn hub_quic(fed: &Federation) -> Result<std::net::SocketAddr> {
    fed.relay("gfp").config.listen.federation.context("the hub has no federation listener")
}

/// carin -> arinsa still works end to end.
async fn honest_traffic_flows(fed: &Federation) -> Result<()> {
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("za-npa@arinsa").await?;
    let mut b_in = live(&b).await?;
    let sent = a.send(&draft(&["za-npa@arinsa"], "after the impostor"), quiet()).await?;
    wait_message(&mut b_in, sent.msg_id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carin_relay_certificate_announcing_arinsa_is_refused_by_the_hub() -> Result<()> {
    let fed = star().await?;
    let carin = NetworkId::new("carin")?;
    let gfp = NetworkId::new("gfp")?;
    // A genuine CARIN relay certificate (same relay name as the configured
    // peer, so the hub knows it), in other hands.
    let mut req = IssueRequest::new(Role::Relay, &fed.relay("carin").name);
    req.ips = vec!["127.0.0.1".parse()?];
    let files = fed.pki.issue_to_files(&carin, &req, "impostor-relay-carin")?;
    let creds = files.credentials()?;
    let (_ep, conn) = raw_connect(&creds, trust(&fed)?, &gfp, hub_quic(&fed)?).await?;
    let mut hello = hello_of(&creds);
    hello.networks = vec!["arinsa".into()];
    let answer = raw_hello(&conn, hello).await;
    assert!(answer.is_err(), "the hub answered a hello announcing arinsa: {answer:?}");
    assert_eq!(close_code_of(&conn).await?, Some(close_code::HELLO_REFUSED as u64));
    honest_traffic_flows(&fed).await?;
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fp_certificate_cannot_open_a_federation_link() -> Result<()> {
    let fed = star().await?;
    let gfp = NetworkId::new("gfp")?;
    let creds = fed.fp("nl-fiod@carin").cert.credentials()?;
    // TLS 1.3: the client may finish its side before the server refuses its
    // certificate, so the refusal shows either at connect or at the hello.
    match raw_connect(&creds, trust(&fed)?, &gfp, hub_quic(&fed)?).await {
        Err(_) => {}
        Ok((_ep, conn)) => {
            let hello = focal_proto::pb::Hello {
                protocol_version: 1,
                relay: "nl-fiod".into(),
                networks: vec!["carin".into()],
                ..Default::default()
            };
            let answer = raw_hello(&conn, hello).await;
            assert!(answer.is_err(), "the hub answered an fp certificate's hello: {answer:?}");
        }
    }
    honest_traffic_flows(&fed).await?;
    fed.shutdown().await
}
