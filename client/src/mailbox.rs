//! The mailbox side: inbox listing (replay, then optionally live), delivery
//! acknowledgements (a DELIVERED receipt signed by this focal point), and the
//! receipts that come back for what this focal point sent, each verified
//! (signature, signer certificate, signer bound to what it attests).

use std::time::SystemTime;

use focal_certs::TrustStore;
use focal_proto::signed::{TAG_RECEIPT, sign_blob, verify_blob};
use focal_proto::{Address, Identity, Role, envelope, pb};
use futures::stream::{BoxStream, StreamExt};
use prost::Message;
use rustls_pki_types::CertificateDer;

use crate::client::{Client, MessageRef};
use crate::error::{ClientError, Result};
use crate::store::{LocalStore, ReceiptRecord};
use crate::util::{msg_id_hex, now_ms, receipt_kind_name, sha256};

/// A waiting message as the relay lists it: the clear header only. Nothing
/// here is verified yet except that the context parses; `read` verifies.
#[derive(Clone, Debug)]
pub struct MessageInfo {
    /// Message id.
    pub msg_id: [u8; 16],
    /// Claimed sender (checked against its certificate on read).
    pub sender: Address,
    /// All recipients.
    pub recipients: Vec<Address>,
    /// Sender's creation time (unix ms).
    pub created_at_ms: i64,
    /// Expiry (unix ms).
    pub expires_at_ms: i64,
    /// Handling code (`pb::HandlingCode` as i32).
    pub handling: i32,
    /// Priority (`pb::Priority` as i32).
    pub priority: i32,
    /// Ciphertext size.
    pub payload_size: u64,
    /// Ciphertext SHA-256 as the header states it.
    pub payload_sha256: Vec<u8>,
    /// When the relay received it (relay clock).
    pub received_at_ms: i64,
    /// Position in the mailbox.
    pub mailbox_seq: u64,
    /// The full clear header.
    pub header: pb::EnvelopeHeader,
}

impl MessageInfo {
    /// Parses a header (context only; no signature check).
    pub fn from_header(header: pb::EnvelopeHeader, received_at_ms: i64, mailbox_seq: u64) -> Result<Self> {
        let ctx = envelope::parse_context(&header.context)?;
        Ok(MessageInfo {
            msg_id: ctx.msg_id,
            sender: ctx.sender.clone(),
            recipients: ctx.recipients.clone(),
            created_at_ms: ctx.ctx.created_at_ms,
            expires_at_ms: ctx.ctx.expires_at_ms,
            handling: ctx.ctx.handling,
            priority: ctx.ctx.priority,
            payload_size: header.payload_size,
            payload_sha256: header.payload_sha256.clone(),
            received_at_ms,
            mailbox_seq,
            header,
        })
    }

    /// The message's reference.
    pub fn reference(&self) -> MessageRef {
        MessageRef { msg_id: self.msg_id, sender: self.sender.clone() }
    }
}

/// A receipt with the outcome of its verification.
#[derive(Clone, Debug)]
pub struct ReceiptInfo {
    /// The decoded body (default if it did not decode).
    pub body: pb::ReceiptBody,
    /// Who signed it, from its certificate.
    pub signer: Option<Identity>,
    /// `None` if it verified; otherwise why not. Unverified receipts are
    /// shown flagged, never silently dropped.
    pub problem: Option<String>,
    /// SHA-256 of the signed body (identifies the receipt).
    pub body_sha256: [u8; 32],
}

impl ReceiptInfo {
    /// `DELIVERED`, `REFUSED`, ...
    pub fn kind(&self) -> &'static str {
        receipt_kind_name(self.body.kind)
    }
}

/// Verifies a receipt: the signature over the body, the signer's certificate
/// (chain to its network's CA, CRL, validity at `now`), and that the signer
/// may attest it: a DELIVERED or READ receipt must be signed by the recipient
/// it is about; REFUSED, EXPIRED and ESCALATED ones by a relay.
pub fn verify_receipt(trust: &TrustStore, receipt: &pb::Receipt, now: SystemTime) -> ReceiptInfo {
    let Some(blob) = &receipt.signed else {
        return ReceiptInfo {
            body: Default::default(),
            signer: None,
            problem: Some("receipt carries no signed body".into()),
            body_sha256: [0; 32],
        };
    };
    let body_sha256 = sha256(&blob.body);
    let body = match pb::ReceiptBody::decode(&blob.body[..]) {
        Ok(b) => b,
        Err(e) => {
            return ReceiptInfo {
                body: Default::default(),
                signer: None,
                problem: Some(format!("malformed receipt body: {e}")),
                body_sha256,
            };
        }
    };
    let mut info = ReceiptInfo { body, signer: None, problem: None, body_sha256 };
    if let Err(e) = verify_blob(TAG_RECEIPT, blob) {
        info.problem = Some(format!("bad signature: {e}"));
        return info;
    }
    let peer =
        match focal_certs::verify_peer(trust, &CertificateDer::from(blob.signer_cert.as_slice()), &[], now) {
            Ok(p) => p,
            Err(e) => {
                info.problem = Some(format!("signer certificate refused: {e}"));
                return info;
            }
        };
    let id = peer.identity;
    let by_recipient = matches!(
        pb::ReceiptKind::try_from(info.body.kind),
        Ok(pb::ReceiptKind::Delivered) | Ok(pb::ReceiptKind::Read)
    );
    let ok = if by_recipient {
        id.role == Role::Fp
            && id.address().to_string() == info.body.subject
            && info.body.signer == info.body.subject
    } else {
        id.role == Role::Relay && info.body.signer == id.uri()
    };
    if !ok {
        info.problem = Some(format!(
            "a {} receipt about {} signed as {:?} by {} is not allowed",
            receipt_kind_name(info.body.kind),
            info.body.subject,
            info.body.signer,
            id
        ));
    }
    info.signer = Some(id);
    info
}

/// One event of the inbox stream.
#[derive(Clone, Debug)]
pub enum InboxItem {
    /// A waiting (or newly arrived) message.
    Message(MessageInfo),
    /// A message whose header does not parse (shown, not hidden).
    Unreadable {
        /// Mailbox position.
        mailbox_seq: u64,
        /// Why.
        reason: String,
    },
    /// A receipt addressed to this focal point.
    Receipt(ReceiptInfo),
    /// Everything waiting has been listed; live events follow (with `follow`).
    ReplayDone,
}

impl Client {
    /// The inbox: first what is waiting, then (with `follow`) new arrivals
    /// as the relay pushes them. Receipts are included; verified ones are
    /// also kept in the local store.
    pub async fn inbox(&self, follow: bool) -> Result<BoxStream<'static, Result<InboxItem>>> {
        let req = pb::InboxRequest { include_receipts: true, replay_only: !follow };
        let stream = self.relay().inbox(req).await.map_err(|s| ClientError::rpc("inbox", s))?.into_inner();
        let trust = self.trust.clone();
        let store = self.store.clone();
        Ok(stream
            .map(move |ev| {
                let ev = ev.map_err(|s| ClientError::rpc("inbox", s))?;
                Ok(match ev.event {
                    Some(pb::inbox_event::Event::Message(m)) => {
                        let seq = m.mailbox_seq;
                        match m.header.ok_or_else(|| "no header".to_string()).and_then(|h| {
                            MessageInfo::from_header(h, m.received_at_ms, seq).map_err(|e| e.to_string())
                        }) {
                            Ok(info) => InboxItem::Message(info),
                            Err(reason) => InboxItem::Unreadable { mailbox_seq: seq, reason },
                        }
                    }
                    Some(pb::inbox_event::Event::Receipt(r)) => {
                        let mut info = verify_receipt(&trust.current(), &r, SystemTime::now());
                        keep_receipt(&store, &mut info)?;
                        InboxItem::Receipt(info)
                    }
                    Some(pb::inbox_event::Event::ReplayDone(_)) => InboxItem::ReplayDone,
                    None => InboxItem::Unreadable { mailbox_seq: 0, reason: "empty inbox event".into() },
                })
            })
            .boxed())
    }

    /// The messages waiting now (replay only), in mailbox order.
    pub async fn list_inbox(&self) -> Result<Vec<MessageInfo>> {
        let mut s = self.inbox(false).await?;
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item? {
                InboxItem::Message(m) => out.push(m),
                InboxItem::ReplayDone => break,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Finds a waiting message by id (and sender, if several senders used
    /// the same id).
    pub async fn find_message(&self, msg_id: &[u8; 16], sender: Option<&Address>) -> Result<MessageInfo> {
        let mut found: Vec<MessageInfo> = self
            .list_inbox()
            .await?
            .into_iter()
            .filter(|m| &m.msg_id == msg_id && sender.is_none_or(|s| &m.sender == s))
            .collect();
        match found.len() {
            0 => Err(ClientError::NotFound { what: "message in inbox", id: msg_id_hex(msg_id) }),
            1 => Ok(found.pop().expect("one")),
            _ => Err(ClientError::invalid(
                "message id",
                format!("{} is used by several senders; say which with --from", msg_id_hex(msg_id)),
            )),
        }
    }

    /// Acknowledges delivery: signs a DELIVERED receipt binding the msg id,
    /// the original sender, this recipient and the exact ciphertext digest,
    /// and sends it with Ack; the relay removes the message from the mailbox
    /// and routes the receipt back to the sender.
    pub async fn ack(&self, msg: &MessageRef, payload_sha256: &[u8]) -> Result<pb::Receipt> {
        if payload_sha256.len() != 32 {
            return Err(ClientError::invalid("payload digest", "must be 32 bytes"));
        }
        let body = pb::ReceiptBody {
            version: 1,
            msg_id: msg.msg_id.to_vec(),
            original_sender: msg.sender.to_string(),
            subject: self.me.to_string(),
            kind: pb::ReceiptKind::Delivered as i32,
            reason: 0,
            detail: String::new(),
            at_ms: now_ms(),
            signer: self.me.to_string(),
            payload_sha256: payload_sha256.to_vec(),
        };
        let signed = sign_blob(TAG_RECEIPT, body.encode_to_vec(), &self.signing, self.creds.cert_der());
        let receipt = pb::Receipt { signed: Some(signed) };
        let req = pb::AckRequest {
            msg_id: msg.msg_id.to_vec(),
            sender: msg.sender.to_string(),
            delivered: Some(receipt.clone()),
        };
        self.relay().ack(req).await.map_err(|s| ClientError::rpc("ack", s))?;
        self.store.mark_acked(&msg_id_hex(&msg.msg_id), &msg.sender.to_string())?;
        Ok(receipt)
    }

    /// Acknowledges a message by reference, taking the digest from the
    /// local record of a read message or else from the inbox listing.
    pub async fn ack_ref(&self, msg: &MessageRef) -> Result<pb::Receipt> {
        let digest = match self.store.received(&msg_id_hex(&msg.msg_id), &msg.sender.to_string())? {
            Some(r) => hex::decode(&r.payload_sha256)
                .map_err(|e| ClientError::Store { path: self.store.dir().into(), reason: e.to_string() })?,
            None => self.find_message(&msg.msg_id, Some(&msg.sender)).await?.payload_sha256,
        };
        self.ack(msg, &digest).await
    }

    /// Receipts addressed to this focal point since `since_ms`, each
    /// verified; verified ones are also kept in the local store.
    pub async fn receipts(&self, since_ms: i64) -> Result<Vec<ReceiptInfo>> {
        let resp = self
            .relay()
            .receipts(pb::ReceiptsRequest { since_ms })
            .await
            .map_err(|s| ClientError::rpc("receipts", s))?
            .into_inner();
        let trust = self.trust.current();
        let now = SystemTime::now();
        let mut out: Vec<ReceiptInfo> =
            resp.receipts.iter().map(|r| verify_receipt(&trust, r, now)).collect();
        for r in &mut out {
            keep_receipt(&self.store, r)?;
        }
        Ok(out)
    }
}

/// Checks a verified receipt against this focal point's record of the
/// message it is about, then keeps it in the local store if nothing is
/// wrong. A receipt's signature only proves who signed it: a DELIVERED
/// signed by some focal point, or a relay's REFUSED, about a message that
/// was never addressed to its subject would otherwise be shown as a fact
/// about the message. Every recipient (escalation alternates and the
/// members a broadcast reached included) is in the sent record's `to`.
/// Without a sent record (sent from another device, or purged) only the
/// signature is checked.
pub fn keep_receipt(store: &LocalStore, info: &mut ReceiptInfo) -> Result<()> {
    if info.problem.is_some() {
        return Ok(());
    }
    if let Some(sent) = store.sent(&msg_id_hex(&info.body.msg_id))? {
        let digest = hex::encode(&info.body.payload_sha256);
        let problem = if !sent.to.contains(&info.body.subject) {
            Some(format!(
                "{} was not a recipient of message {} (sent to {})",
                info.body.subject,
                sent.msg_id,
                sent.to.join(", ")
            ))
        } else if !sent.payload_sha256.is_empty() && digest != sent.payload_sha256 {
            Some(format!(
                "it names the payload digest {digest}, but message {} was sent with {}",
                sent.msg_id, sent.payload_sha256
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            info.problem = Some(format!("a {} receipt about {}: {p}", info.kind(), info.body.subject));
            return Ok(());
        }
    }
    store.put_receipt(&hex::encode(info.body_sha256), &receipt_record(info))
}

/// The local-store form of a verified receipt.
pub fn receipt_record(r: &ReceiptInfo) -> ReceiptRecord {
    ReceiptRecord {
        msg_id: msg_id_hex(&r.body.msg_id),
        kind: r.kind().to_string(),
        subject: r.body.subject.clone(),
        signer: r.body.signer.clone(),
        at_ms: r.body.at_ms,
        detail: r.body.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_naming_another_payload_digest_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let id = msg_id_hex(&[3; 16]);
        let mut sent = crate::store::tests::sent(&id, 100, 150);
        sent.payload_sha256 = hex::encode([0xab; 32]);
        store.put_sent(&sent).unwrap();
        let mut other = delivered(3, "b@carin");
        other.body.payload_sha256 = vec![0xcd; 32];
        keep_receipt(&store, &mut other).unwrap();
        let problem = other.problem.expect("flagged");
        assert!(
            problem.contains(&format!("names the payload digest {}", hex::encode([0xcd; 32]))),
            "{problem}"
        );
        let mut same = delivered(3, "b@carin");
        same.body.payload_sha256 = vec![0xab; 32];
        keep_receipt(&store, &mut same).unwrap();
        assert_eq!(same.problem, None);
    }

    fn delivered(msg_id: u8, subject: &str) -> ReceiptInfo {
        let body = pb::ReceiptBody {
            version: 1,
            msg_id: vec![msg_id; 16],
            original_sender: "a@carin".into(),
            subject: subject.into(),
            kind: pb::ReceiptKind::Delivered as i32,
            signer: subject.into(),
            payload_sha256: vec![0xab], // the digest `store::tests::sent` records
            ..Default::default()
        };
        ReceiptInfo { body_sha256: sha256(&body.encode_to_vec()), body, signer: None, problem: None }
    }

    #[test]
    fn a_receipt_about_someone_the_message_was_not_sent_to_is_flagged_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let id = msg_id_hex(&[1; 16]);
        store.put_sent(&crate::store::tests::sent(&id, 100, 150)).unwrap();

        let mut stranger = delivered(1, "x@rrag");
        keep_receipt(&store, &mut stranger).unwrap();
        let problem = stranger.problem.expect("flagged");
        assert!(
            problem.contains("x@rrag was not a recipient") && problem.contains("sent to b@carin"),
            "{problem}"
        );
        assert!(store.all_receipts().unwrap().is_empty(), "not kept");

        let mut recipient = delivered(1, "b@carin");
        keep_receipt(&store, &mut recipient).unwrap();
        assert_eq!(recipient.problem, None);
        // Without a sent record (another device, or purged) only the
        // signature can be checked.
        let mut unknown = delivered(2, "x@rrag");
        keep_receipt(&store, &mut unknown).unwrap();
        assert_eq!(unknown.problem, None);
        let kept: Vec<String> = store.all_receipts().unwrap().into_iter().map(|r| r.subject).collect();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains(&"b@carin".to_string()) && kept.contains(&"x@rrag".to_string()), "{kept:?}");
    }
}
