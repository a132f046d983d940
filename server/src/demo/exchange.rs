//! The demo's case exchange, driven through the real client library
//! (`focal_client`): every focal point creates and publishes its encryption
//! key; a CARIN focal point seals an asset-tracing request to an ARINSA focal
//! point; the recipient waits for it on its live inbox, opens it (signature
//! and payload verified), acknowledges it (a DELIVERED receipt signed by the
//! recipient travels back); then the same the other way for the reply.
//!
//! Every wait has a deadline and fails naming what did not happen, with any
//! non-delivery receipt the sender received meanwhile.

use std::sync::Arc;
use std::time::Duration;

use focal_client::mailbox::InboxItem;
use focal_client::progress::NoProgress;
use focal_client::{Accepted, Client, Draft, MessageRef, Profile, PublishOptions, ReadOptions, ReceiptInfo};
use focal_proto::{Address, pb};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::setup::DemoMember;
use super::{DemoError, within};

/// How long each leg may take to arrive and to be acknowledged.
pub const LEG_DEADLINE: Duration = Duration::from_secs(30);

type Inbox = BoxStream<'static, focal_client::Result<InboxItem>>;

/// One message's journey as the two focal points saw it.
#[derive(Clone, Debug)]
pub struct Leg {
    /// Sender.
    pub from: Address,
    /// Recipient.
    pub to: Address,
    /// Message id.
    pub msg_id: [u8; 16],
    /// Sender's clock just before sealing (unix ms).
    pub started_ms: i64,
    /// The sender relay's answer.
    pub accepted: Accepted,
    /// The relays it passed, as they wrote themselves into the header.
    pub hops: Vec<pb::Hop>,
    /// When the recipient's relay put it in the mailbox (relay clock).
    pub received_at_ms: i64,
    /// When the recipient had opened and verified it (its clock).
    pub opened_ms: i64,
    /// Subject, as the recipient read it after decryption.
    pub subject: String,
    /// Receipts the sender got for it.
    pub receipts: Vec<ReceiptInfo>,
    /// When the DELIVERED receipt reached the sender (its clock).
    pub receipt_ms: i64,
}

/// Connects a member's client.
pub async fn connect(m: &DemoMember) -> Result<Client, DemoError> {
    let step = format!("connecting {} to its relay", m.address);
    let profile = Profile::load(&m.profile).map_err(|e| DemoError::new(&step, e))?;
    within(&step, async { Client::connect(profile).await.map_err(|e| DemoError::new(&step, e)) }).await
}

/// Creates and publishes every focal point's encryption key; returns the
/// connected clients in the same order.
pub async fn enrol(members: &[DemoMember]) -> Result<Vec<Client>, DemoError> {
    let mut out = Vec::new();
    for m in members {
        let client = connect(m).await?;
        let step = format!("publishing the encryption key of {}", m.address);
        if client.keys().all().map_err(|e| DemoError::new(&step, e))?.is_empty() {
            client
                .keys()
                .generate(false, focal_client::util::now_ms())
                .map_err(|e| DemoError::new(&step, e))?;
        }
        let opts =
            PublishOptions { display_name: format!("Demo focal point {}", m.address), ..Default::default() };
        within(&step, async { client.publish_key(&opts).await.map_err(|e| DemoError::new(&step, e)) })
            .await?;
        out.push(client);
    }
    Ok(out)
}

/// The case message and the reply.
pub async fn run(a: &Client, b: &Client) -> Result<(Leg, Leg), DemoError> {
    let mut a_inbox = subscribe(a).await?;
    let mut b_inbox = subscribe(b).await?;
    let mut draft = Draft::new(
        vec![b.address().clone()],
        "Asset tracing request: synthetic demo case",
        "Synthetic demo content. Please indicate whether real estate or bank accounts are held in your \
         jurisdiction by the companies named in the (fictitious) attached case summary.",
    );
    draft.kind = pb::MessageKind::AssetTracingRequest;
    draft.case_ref = "DEMO/CARIN-ARINSA/0001".into();
    let case = leg(a, &mut a_inbox, b, &mut b_inbox, draft).await?;

    let mut reply = Draft::new(
        vec![a.address().clone()],
        "Re: Asset tracing request: synthetic demo case",
        "Synthetic demo reply: request received; enquiries opened with the registries.",
    );
    reply.kind = pb::MessageKind::Response;
    reply.case_ref = "DEMO/CARIN-ARINSA/0001".into();
    reply.reply_to = Some(MessageRef { msg_id: case.msg_id, sender: a.address().clone() });
    let back = leg(b, &mut b_inbox, a, &mut a_inbox, reply).await?;
    Ok((case, back))
}

async fn subscribe(c: &Client) -> Result<Inbox, DemoError> {
    c.inbox(true).await.map_err(|e| DemoError::new(format!("opening the live inbox of {}", c.address()), e))
}

/// One message from `s` to `r`: send, arrival, open, ack, receipt back.
async fn leg(
    s: &Client,
    s_inbox: &mut Inbox,
    r: &Client,
    r_inbox: &mut Inbox,
    draft: Draft,
) -> Result<Leg, DemoError> {
    let (from, to) = (s.address().clone(), r.address().clone());
    let started_ms = focal_client::util::now_ms();
    let step = format!("sending the sealed message {from} -> {to}");
    let accepted = within(&step, async {
        s.send(&draft, Arc::new(NoProgress)).await.map_err(|e| DemoError::new(&step, e))
    })
    .await?;
    let msg_id = accepted.msg_id;
    let hex_id = hex::encode(msg_id);

    let arrived =
        wait(r_inbox, &format!("message {hex_id} to arrive in the inbox of {to}"), |item| match item {
            InboxItem::Message(m) if m.msg_id == msg_id && m.sender == from => Some(m.clone()),
            _ => None,
        })
        .await;
    let info = match arrived {
        Ok(info) => info,
        Err(e) => return Err(with_refusals(s, &msg_id, e).await),
    };
    let step = format!("{to} opening message {hex_id}");
    let opened = within(&step, async {
        r.read(&info.reference(), &ReadOptions::default(), Arc::new(NoProgress))
            .await
            .map_err(|e| DemoError::new(&step, e))
    })
    .await?;
    let opened_ms = focal_client::util::now_ms();
    let step = format!("{to} acknowledging message {hex_id}");
    within(&step, async {
        r.ack(&info.reference(), &info.payload_sha256).await.map_err(|e| DemoError::new(&step, e))
    })
    .await?;

    let what = format!("the DELIVERED receipt of message {hex_id} to reach {from}");
    let delivered = wait(s_inbox, &what, |item| match item {
        InboxItem::Receipt(rc) if rc.body.msg_id == msg_id => Some(rc.clone()),
        _ => None,
    })
    .await;
    let first = match delivered {
        Ok(rc) => rc,
        Err(e) => return Err(with_refusals(s, &msg_id, e).await),
    };
    if first.body.kind != pb::ReceiptKind::Delivered as i32 {
        return Err(DemoError::new(
            format!("message {hex_id} {from} -> {to}"),
            format!(
                "expected a DELIVERED receipt, got {} signed by {}: {}",
                first.kind(),
                first.body.signer,
                first.body.detail
            ),
        ));
    }
    if let Some(p) = &first.problem {
        return Err(DemoError::new(format!("verifying the DELIVERED receipt of {hex_id}"), p));
    }
    let receipt_ms = focal_client::util::now_ms();
    Ok(Leg {
        from,
        to,
        msg_id,
        started_ms,
        accepted,
        hops: info.header.hops.clone(),
        received_at_ms: info.received_at_ms,
        opened_ms,
        subject: opened.content.subject.clone(),
        receipts: vec![first],
        receipt_ms,
    })
}

/// Waits on a live inbox for the first item `f` picks.
async fn wait<T>(
    inbox: &mut Inbox,
    what: &str,
    mut f: impl FnMut(&InboxItem) -> Option<T>,
) -> Result<T, DemoError> {
    let step = format!("waiting for {what}");
    let found = tokio::time::timeout(LEG_DEADLINE, async {
        while let Some(item) = inbox.next().await {
            let item = item.map_err(|e| DemoError::new(&step, format!("inbox stream failed: {e}")))?;
            if let Some(t) = f(&item) {
                return Ok(t);
            }
        }
        Err(DemoError::new(&step, "the relay closed the inbox stream"))
    })
    .await;
    found.unwrap_or_else(|_| {
        Err(DemoError::new(&step, format!("nothing within {} s", LEG_DEADLINE.as_secs())))
    })
}

/// Adds any non-delivery receipt the sender holds for `msg_id` to `e`.
async fn with_refusals(sender: &Client, msg_id: &[u8; 16], mut e: DemoError) -> DemoError {
    if let Ok(rs) = sender.receipts(0).await {
        for r in rs.iter().filter(|r| r.body.msg_id == msg_id) {
            e.detail.push_str(&format!(
                "; the sender holds a {} receipt signed by {}: {}",
                r.kind(),
                r.body.signer,
                r.body.detail
            ));
        }
    }
    e
}
