//! Forwarding, releases and network broadcast.
//!
//! - [`Client::make_release`]: the ORIGINATOR of a message signs a
//!   [`pb::Release`] (tag `focal/v1/release\0`) permitting onward sending of
//!   that message to the named networks until an expiry. `focal release`
//!   writes it to a file (a prost-encoded [`pb::SignedBlob`]) that the
//!   originator hands to the recipient who wants to forward.
//! - [`Client::forward`]: a recipient re-fetches and opens the original
//!   (it must still be in its mailbox: not yet acknowledged), and sends its
//!   subject and body to new recipients as a new message whose clear context
//!   carries `forward_of` (original id, sender, handling code and the
//!   release, if any). Relays enforce H2 on it (see `docs/HANDLING.md`).
//!   Attachments of the original are not carried over.
//! - Broadcast: [`Client::resolve_recipients`] expands `*@network` through
//!   the directory (`ListMembers`, answered across networks through the hub)
//!   into every member with a valid entry, and the message is sealed once to
//!   all of them with `broadcast_network` set.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use focal_proto::envelope::RecipientPublicKey;
use focal_proto::signed::{TAG_RELEASE, sign_blob, verify_blob};
use focal_proto::{Address, NetworkId, pb};
use prost::Message;

use crate::client::{Client, MessageRef};
use crate::error::{ClientError, Result};
use crate::progress::{NoProgress, Progress};
use crate::read::ReadOptions;
use crate::send::{Accepted, Draft};
use crate::util::{msg_id_hex, now_ms};

/// Decodes a release file (prost `SignedBlob`) and checks that it is a
/// release signed by the key of its certificate; returns the blob and body.
pub fn decode_release(bytes: &[u8]) -> Result<(pb::SignedBlob, pb::Release)> {
    let blob = pb::SignedBlob::decode(bytes)
        .map_err(|e| ClientError::invalid("release", format!("not a signed release: {e}")))?;
    verify_blob(TAG_RELEASE, &blob).map_err(|e| ClientError::invalid("release", e.to_string()))?;
    let body = pb::Release::decode(blob.body.as_slice())
        .map_err(|e| ClientError::invalid("release", format!("body: {e}")))?;
    Ok((blob, body))
}

impl Client {
    /// Signs a release of this focal point's message `msg_id` for onward
    /// sending to `networks` (empty = any network), valid for `valid`.
    pub fn make_release(&self, msg_id: [u8; 16], networks: &[NetworkId], valid: Duration) -> pb::SignedBlob {
        let mut nets: Vec<String> = networks.iter().map(ToString::to_string).collect();
        nets.sort();
        nets.dedup();
        let body = pb::Release {
            version: 1,
            msg_id: msg_id.to_vec(),
            originator: self.me.to_string(),
            permitted_networks: nets,
            expires_at_ms: crate::util::ms_after(now_ms(), valid),
        };
        sign_blob(TAG_RELEASE, body.encode_to_vec(), &self.signing, self.creds.cert_der())
    }

    /// Forwards the message `original` (re-fetched from this focal point's
    /// mailbox and verified) to `to`, keeping its kind, case reference,
    /// handling code and restrictions; `release` is the originator's signed
    /// release, needed for an H2 message leaving the forwarder's network.
    pub async fn forward(
        &self,
        original: &MessageRef,
        to: Vec<Address>,
        release: Option<pb::SignedBlob>,
        progress: Arc<dyn Progress>,
    ) -> Result<Accepted> {
        let opened = self.read(original, &ReadOptions::default(), Arc::new(NoProgress)).await?;
        let c = &opened.content;
        let subject =
            if c.subject.starts_with("Fwd: ") { c.subject.clone() } else { format!("Fwd: {}", c.subject) };
        let body = format!(
            "---------- forwarded message {} from {} ----------\n{}",
            msg_id_hex(&original.msg_id),
            original.sender,
            c.body
        );
        let mut draft = Draft::new(to, subject, body);
        draft.kind = c.kind();
        draft.case_ref = c.case_ref.clone();
        draft.request = c.request.clone();
        draft.handling = pb::HandlingCode::try_from(opened.info.handling).unwrap_or(pb::HandlingCode::H1);
        draft.handling_restrictions = c.handling_restrictions.clone();
        draft.forward_of = Some(pb::ForwardOf {
            original_msg_id: original.msg_id.to_vec(),
            original_sender: original.sender.to_string(),
            original_handling: opened.info.handling,
            release,
        });
        self.send(&draft, progress).await
    }

    /// The concrete recipients of `to`, their verified encryption keys, and
    /// the broadcast network if `to` is a single `*@network`.
    pub async fn resolve_recipients(
        &self,
        to: &[Address],
    ) -> Result<(Vec<Address>, Vec<RecipientPublicKey>, Option<NetworkId>)> {
        let mut to = to.to_vec();
        to.sort();
        to.dedup();
        if let Some(b) = to.iter().find(|a| a.is_broadcast()) {
            if to.len() > 1 {
                return Err(ClientError::invalid(
                    "recipients",
                    format!("{b} addresses a whole network and cannot be combined with other recipients"),
                ));
            }
            let network = b.network().clone();
            let members = self.list_members(&network).await?;
            if members.is_empty() {
                return Err(ClientError::invalid(
                    "recipient",
                    format!("{b}: network {network} has no member with a valid directory entry"),
                ));
            }
            let (addrs, keys) = members.into_iter().unzip();
            return Ok((addrs, keys, Some(network)));
        }
        let mut keys = Vec::with_capacity(to.len());
        for addr in &to {
            keys.push(RecipientPublicKey(self.lookup(addr).await?.x25519_public));
        }
        Ok((to, keys, None))
    }

    /// Every current member of `network` (other than this focal point) with
    /// a directory entry that verifies now, sorted by address. Entries that
    /// do not verify (expired, revoked, forged) are skipped with a warning.
    pub async fn list_members(&self, network: &NetworkId) -> Result<Vec<(Address, RecipientPublicKey)>> {
        let op = format!("directory list of network {network}");
        let entries = self
            .directory()
            .list_members(pb::ListMembersRequest { network: network.to_string() })
            .await
            .map_err(|s| ClientError::rpc(op, s))?
            .into_inner()
            .entries;
        let trust = self.trust.current();
        let now = SystemTime::now();
        let mut out: Vec<(Address, RecipientPublicKey)> = Vec::new();
        for e in &entries {
            match focal_certs::verify_directory_entry(&trust, e, now) {
                Ok(v) if v.address.network() == network && v.address != self.me => {
                    if !out.iter().any(|(a, _)| a == &v.address) {
                        out.push((v.address, RecipientPublicKey(v.x25519_public)));
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "skipping a directory entry of {network} that does not verify")
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_release() {
        let e = decode_release(b"\x01\x02not a blob").unwrap_err().to_string();
        assert!(e.contains("release"), "{e}");
        let blob = pb::SignedBlob { body: vec![1], signature: vec![0; 64], signer_cert: vec![1, 2] };
        let e = decode_release(&blob.encode_to_vec()).unwrap_err().to_string();
        assert!(e.contains("release"), "{e}");
    }
}
