//! Reading a message: `Fetch` the envelope (resuming from the last byte
//! received if the connection breaks), verify the header before anything
//! else (context, sender signature, sender certificate chain/CRL and that it
//! names the claimed sender, that this focal point is a recipient), open the
//! payload with the streaming `Opener` while hashing the ciphertext, and split
//! the plaintext into the `Content` and attachment bytes written to temporary
//! files ([`crate::save`]). Only when the ciphertext digest matches the
//! signed header, the opener's `finish()` has proved the payload complete,
//! and every attachment matches its SHA-256 in `Content` is anything
//! returned or an attachment moved to its final name. Until then, nothing of
//! the message is shown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use focal_certs::VerifiedPeer;
use focal_proto::envelope::{self, Opener, ValidContext};
use focal_proto::{Role, pb};
use ring::digest;
use rustls_pki_types::CertificateDer;

use crate::client::{Client, MessageRef};
use crate::error::{ClientError, Result, is_transient};
use crate::mailbox::MessageInfo;
use crate::plaintext::{AttachmentSink, DiscardSink, PlaintextReader};
use crate::progress::Progress;
use crate::save::FileSink;
use crate::store::ReceivedRecord;
use crate::util::{handling_name, msg_id_hex, now_ms};

/// Where `read` puts attachments.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Save attachments here (created if missing). `None`: attachments are
    /// checked and discarded.
    pub out_dir: Option<PathBuf>,
    /// Replace existing files of the same name instead of refusing.
    pub overwrite: bool,
}

/// An attachment after a successful read.
#[derive(Clone, Debug)]
pub struct SavedAttachment {
    /// Name as the sender gave it.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex), checked.
    pub sha256: String,
    /// Media type as the sender gave it.
    pub media_type: String,
    /// Where it was saved, if an output directory was given.
    pub path: Option<PathBuf>,
}

/// A verified, opened message.
#[derive(Clone, Debug)]
pub struct OpenedMessage {
    /// The header's facts.
    pub info: MessageInfo,
    /// The sealed content.
    pub content: pb::Content,
    /// The attachments.
    pub attachments: Vec<SavedAttachment>,
    /// How many times the download was resumed after an interruption.
    pub resumed: u32,
}

/// Checks a header before opening: context, signature, sender certificate
/// (chain to the sender network's CA, CRL, validity, `fp` role, the same
/// address as the context's sender), and that `me` is a recipient.
pub fn verify_header(
    trust: &focal_certs::TrustStore,
    header: &pb::EnvelopeHeader,
    me: &focal_proto::Address,
    now: SystemTime,
) -> Result<(ValidContext, VerifiedPeer)> {
    let ctx = envelope::parse_context(&header.context)?;
    let what = format!("message {} from {}", msg_id_hex(&ctx.msg_id), ctx.sender);
    if header.payload_sha256.len() != 32 {
        return Err(ClientError::verify(what, "header has no 32-byte payload digest"));
    }
    envelope::verify_signature(header).map_err(|e| ClientError::verify(what.clone(), e))?;
    let peer =
        focal_certs::verify_peer(trust, &CertificateDer::from(header.sender_cert.as_slice()), &[], now)
            .map_err(|e| ClientError::verify(what.clone(), format!("sender certificate refused: {e}")))?;
    if peer.identity.role != Role::Fp || peer.identity.address() != ctx.sender {
        return Err(ClientError::verify(
            what,
            format!("sender certificate is for {}, not for the sender {}", peer.identity, ctx.sender),
        ));
    }
    if !ctx.recipients.contains(me) {
        return Err(ClientError::verify(what, format!("{me} is not among its recipients")));
    }
    Ok((ctx, peer))
}

/// Outcome of one fetch attempt that did not complete.
enum Step {
    /// The RPC failed: retried if transient.
    Status(tonic::Status),
    /// Verification or local failure: never retried.
    Fatal(ClientError),
}

fn protocol(reason: &str) -> Step {
    Step::Fatal(ClientError::Protocol { op: "fetch", reason: reason.to_owned() })
}

impl Client {
    /// Fetches, verifies and opens a message (see the module docs), and
    /// records it as read in the local store.
    pub async fn read(
        &self,
        msg: &MessageRef,
        opts: &ReadOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<OpenedMessage> {
        let opened = self.open_verified(msg, opts, progress).await?;
        let (info, content) = (&opened.info, &opened.content);
        self.store.put_received(&ReceivedRecord {
            msg_id: msg_id_hex(&info.msg_id),
            from: info.sender.to_string(),
            to: info.recipients.iter().map(ToString::to_string).collect(),
            subject: content.subject.clone(),
            case_ref: content.case_ref.clone(),
            reply_to_msg_id: hex::encode(&content.reply_to_msg_id),
            reply_to_sender: content.reply_to_sender.clone(),
            handling: handling_name(info.handling).into(),
            created_at_ms: info.created_at_ms,
            read_at_ms: now_ms(),
            payload_sha256: hex::encode(&info.payload_sha256),
            attachments: opened.attachments.iter().map(|a| a.name.clone()).collect(),
            acked: false,
            kind: crate::case::kind_name(content.kind()).into(),
            response_deadline_ms: content.response_deadline_ms,
        })?;
        Ok(opened)
    }

    /// Fetches, verifies and opens a message exactly as [`Client::read`]
    /// does (every signature and digest checked, attachments hashed and
    /// discarded) but leaves no trace: nothing is written to the local
    /// store, so the message stays unread, and no receipt is sent. The
    /// console builds its inbox rows with it. The caller bounds the size:
    /// the whole payload is downloaded.
    pub async fn peek(&self, msg: &MessageRef) -> Result<OpenedMessage> {
        self.open_verified(msg, &ReadOptions::default(), Arc::new(crate::progress::NoProgress)).await
    }

    /// The fetch, verify and open of [`Client::read`], without recording.
    async fn open_verified(
        &self,
        msg: &MessageRef,
        opts: &ReadOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<OpenedMessage> {
        let keys = self.keys.all()?;
        if keys.is_empty() {
            return Err(ClientError::NoKey { dir: self.keys.dir().to_owned() });
        }
        let secrets: Vec<_> = keys.iter().map(|k| &k.secret).collect();
        let mut sink = match &opts.out_dir {
            Some(dir) => Some(FileSink::new(dir)?),
            None => None,
        };
        let op = "fetch";
        let mut header: Option<pb::EnvelopeHeader> = None;
        let mut opener: Option<Opener> = None;
        let mut reader = PlaintextReader::new();
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut plain = Vec::with_capacity(2 * envelope::CHUNK_SIZE);
        let mut offset = 0u64;
        let mut failures = 0u32;
        let mut started = false;
        let mut resumed = 0u32;
        loop {
            let req =
                pb::FetchRequest { msg_id: msg.msg_id.to_vec(), sender: msg.sender.to_string(), offset };
            let at_start = offset;
            let result: std::result::Result<(), Step> = async {
                let mut stream = self.relay().fetch(req).await.map_err(Step::Status)?.into_inner();
                while let Some(part) = stream.message().await.map_err(Step::Status)? {
                    match part.part {
                        Some(pb::fetch_response::Part::Header(h)) => match &header {
                            Some(seen) if seen != &h => {
                                return Err(protocol("the header changed between fetch attempts"));
                            }
                            Some(_) => {}
                            None => header = Some(h),
                        },
                        Some(pb::fetch_response::Part::Chunk(c)) => {
                            let Some(h) = &header else { return Err(protocol("payload before the header")) };
                            if opener.is_none() {
                                let (ctx, _) =
                                    verify_header(&self.trust.current(), h, &self.me, SystemTime::now())
                                        .map_err(Step::Fatal)?;
                                if ctx.msg_id != msg.msg_id || ctx.sender != msg.sender {
                                    return Err(protocol("the relay returned another message"));
                                }
                                opener = Some(Opener::new(&h.context, &secrets));
                                if !started {
                                    progress.start("fetching", h.payload_size);
                                    started = true;
                                }
                            }
                            if offset + c.len() as u64 > h.payload_size {
                                return Err(protocol("more payload than the header announced"));
                            }
                            hash.update(&c);
                            offset += c.len() as u64;
                            let what = || format!("message {}", msg_id_hex(&msg.msg_id));
                            let op = opener.as_mut().expect("opener");
                            op.push(&c, &mut plain)
                                .map_err(|e| Step::Fatal(ClientError::verify(what(), e)))?;
                            let s: &mut dyn AttachmentSink = match sink.as_mut() {
                                Some(s) => s,
                                None => &mut DiscardSink,
                            };
                            reader.push(&plain, s).map_err(Step::Fatal)?;
                            plain.clear();
                            progress.advance(c.len() as u64, offset);
                        }
                        None => {}
                    }
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => {
                    let Some(h) = &header else {
                        progress.finish();
                        return Err(ClientError::Protocol {
                            op,
                            reason: "the fetch stream carried no header".into(),
                        });
                    };
                    if offset == h.payload_size {
                        break;
                    }
                    // The stream ended early: resume as after a broken connection.
                    failures = if offset == at_start { failures + 1 } else { 1 };
                    if failures > self.retry.retries {
                        progress.finish();
                        return Err(ClientError::Protocol {
                            op,
                            reason: format!("the payload ends at byte {offset} of {}", h.payload_size),
                        });
                    }
                }
                Err(Step::Fatal(e)) => {
                    progress.finish();
                    return Err(e);
                }
                Err(Step::Status(status)) => {
                    if !is_transient(&status) {
                        progress.finish();
                        return Err(ClientError::rpc(op, status));
                    }
                    failures = if offset == at_start { failures + 1 } else { 1 };
                    if failures > self.retry.retries {
                        progress.finish();
                        return Err(ClientError::rpc(op, status));
                    }
                    tracing::debug!(%status, offset, "fetch interrupted; resuming");
                }
            }
            tokio::time::sleep(self.retry.backoff(failures.saturating_sub(1))).await;
            resumed += 1;
        }
        progress.finish();
        let header = header.expect("header seen");
        let what = || format!("message {}", msg_id_hex(&msg.msg_id));
        if hash.finish().as_ref() != header.payload_sha256.as_slice() {
            return Err(ClientError::verify(what(), "payload does not match the signed digest"));
        }
        let opener = opener.ok_or_else(|| ClientError::verify(what(), "empty payload"))?;
        opener.finish(&mut plain).map_err(|e| ClientError::verify(what(), e))?;
        {
            let s: &mut dyn AttachmentSink = match sink.as_mut() {
                Some(s) => s,
                None => &mut DiscardSink,
            };
            reader.push(&plain, s)?;
        }
        let content = reader.finish()?;
        let paths = match sink {
            Some(s) => s.commit(opts.overwrite)?.into_iter().map(Some).collect(),
            None => vec![None; content.attachments.len()],
        };
        let info = MessageInfo::from_header(header, 0, 0)?;
        let attachments: Vec<SavedAttachment> = content
            .attachments
            .iter()
            .zip(paths)
            .map(|(a, path)| SavedAttachment {
                name: a.name.clone(),
                size: a.size,
                sha256: hex::encode(&a.sha256),
                media_type: a.media_type.clone(),
                path,
            })
            .collect();
        Ok(OpenedMessage { info, content, attachments, resumed })
    }
}
