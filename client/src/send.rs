//! Sending: look up and verify each recipient's directory entry, build the
//! plaintext (`Content`, then the attachments streamed from their files),
//! seal it with the streaming `Sealer`, sign, and upload with the
//! client-streaming `Send` RPC in 64 KiB chunks.
//!
//! Why a temporary file: the header goes first on the `Send` stream and
//! carries the sender's signature over SHA-256 of the *ciphertext*, which is
//! known only once everything is sealed. So the payload is sealed into a
//! temporary file under `<store_dir>/tmp/` (computing its digest on the way),
//! then the header is signed and the file streamed. Nothing is ever held
//! whole in memory: memory use is a few 64 KiB buffers whatever the size of
//! the attachments. The temporary file is deleted when the
//! [`SealedMessage`] is dropped. Attachments are read twice (digest for
//! `Content`, then sealing); a file that changes in between is refused.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use focal_proto::envelope::{self, CHUNK_SIZE, ContextParams, RecipientPublicKey, Sealer};
use focal_proto::{Address, pb};
use ring::digest;
use tokio::io::AsyncReadExt;

use crate::client::{Client, MessageRef};
use crate::error::{ClientError, Result, is_transient};
use crate::plaintext::{check_attachment_count, content_prefix};
use crate::progress::Progress;
use crate::store::SentRecord;
use crate::util::{handling_name, msg_id_hex, now_ms};

/// Bytes per `Send` chunk.
pub const SEND_CHUNK: usize = 64 * 1024;

/// A message to send.
#[derive(Clone, Debug)]
pub struct Draft {
    /// Recipients (concrete addresses).
    pub to: Vec<Address>,
    /// Subject (sealed; relays never see it).
    pub subject: String,
    /// Body text.
    pub body: String,
    /// Kind of message.
    pub kind: pb::MessageKind,
    /// Case reference (sealed).
    pub case_ref: String,
    /// The message this answers.
    pub reply_to: Option<MessageRef>,
    /// Files to attach.
    pub attachments: Vec<PathBuf>,
    /// Handling code (clear, relays enforce it).
    pub handling: pb::HandlingCode,
    /// Restrictions stated by the originator (H3; sealed).
    pub handling_restrictions: String,
    /// Priority.
    pub priority: pb::Priority,
    /// Lifetime from now.
    pub expires_in: Duration,
    /// Structured fields of a request kind (sealed).
    pub request: Option<pb::RequestFields>,
    /// Response wanted by (unix ms, 0 = none; sealed). `focal overdue` uses it.
    pub response_deadline_ms: i64,
    /// Set when this message forwards another (H2 enforcement at the relay).
    pub forward_of: Option<pb::ForwardOf>,
}

impl Draft {
    /// A general message with handling H1, normal priority, 7 days lifetime.
    pub fn new(to: Vec<Address>, subject: impl Into<String>, body: impl Into<String>) -> Self {
        Draft {
            to,
            subject: subject.into(),
            body: body.into(),
            kind: pb::MessageKind::General,
            case_ref: String::new(),
            reply_to: None,
            attachments: Vec::new(),
            handling: pb::HandlingCode::H1,
            handling_restrictions: String::new(),
            priority: pb::Priority::Normal,
            expires_in: Duration::from_secs(7 * 86_400),
            request: None,
            response_deadline_ms: 0,
            forward_of: None,
        }
    }
}

/// A sealed and signed message waiting to be sent (or re-sent: the relay
/// de-duplicates on sender and msg id).
#[derive(Debug)]
pub struct SealedMessage {
    /// The signed clear header.
    pub header: pb::EnvelopeHeader,
    /// Message id.
    pub msg_id: [u8; 16],
    /// The sealed payload (deleted on drop).
    pub payload: tempfile::TempPath,
    /// What the local store will remember once it is accepted.
    pub record: SentRecord,
}

/// The relay's answer to a send.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// Message id.
    pub msg_id: [u8; 16],
    /// Relay clock at acceptance (0 if the acceptance was inferred from a
    /// duplicate refusal after a retry).
    pub accepted_at_ms: i64,
    /// Relay name.
    pub relay: String,
    /// Audit record index of the ACCEPTED entry.
    pub audit_leaf_index: u64,
    /// True when an earlier attempt had been accepted and the retry was
    /// answered ALREADY_EXISTS.
    pub via_retry: bool,
    /// Every recipient it was sealed to: the ones asked for, a broadcast's
    /// members, and escalation alternates taken from the directory (which
    /// their relay, not their member, vouches for).
    pub to: Vec<String>,
}

fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// Name, size and SHA-256 of an attachment file (first pass).
fn describe_attachment(path: &Path) -> Result<pb::Attachment> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            ClientError::invalid("attachment", format!("{} has no UTF-8 file name", path.display()))
        })?
        .to_owned();
    let mut f = File::open(path).map_err(|e| ClientError::io("cannot open attachment", path, e))?;
    let meta = f.metadata().map_err(|e| ClientError::io("cannot open attachment", path, e))?;
    if !meta.is_file() {
        return Err(ClientError::invalid("attachment", format!("{} is not a regular file", path.display())));
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; SEND_CHUNK];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| ClientError::io("cannot read attachment", path, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok(pb::Attachment {
        media_type: media_type(&name).into(),
        name,
        size,
        sha256: ctx.finish().as_ref().to_vec(),
    })
}

/// The `Send` request stream, reporting each payload chunk to `progress`
/// as gRPC takes it, and the `storing` phase once it has taken them all.
struct CountedChunks {
    inner: tokio_stream::wrappers::ReceiverStream<pb::SendRequest>,
    progress: Arc<dyn Progress>,
    sent: u64,
}

impl tokio_stream::Stream for CountedChunks {
    type Item = pb::SendRequest;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<pb::SendRequest>> {
        use std::task::Poll;
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(pb::SendRequest { part: Some(pb::send_request::Part::Chunk(c)) })) => {
                self.sent += c.len() as u64;
                self.progress.advance(c.len() as u64, self.sent);
            }
            // gRPC has taken everything: until ACCEPTED, the relay receives
            // the last of it, checks digest and signature and stores it.
            Poll::Ready(None) => self.progress.start("storing", 0),
            _ => {}
        }
        polled
    }
}

/// A writer that hashes and counts what goes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hash: digest::Context,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hash.update(data);
        self.len += data.len() as u64;
        self.inner.write_all(data)
    }
}

/// Seals `prefix` and the attachment files into `out`; returns the
/// ciphertext digest and size. Synchronous: run it on a blocking thread.
fn seal_to_file(
    context: &[u8],
    keys: &[RecipientPublicKey],
    prefix: &[u8],
    files: &[(PathBuf, pb::Attachment)],
    out: File,
    out_path: &Path,
    progress: &dyn Progress,
) -> Result<([u8; 32], u64)> {
    let total: u64 = prefix.len() as u64 + files.iter().map(|(_, a)| a.size).sum::<u64>();
    progress.start("sealing", total);
    let werr = |e| ClientError::io("cannot write sealed payload", out_path, e);
    let (mut sealer, head) = Sealer::new(context, keys)?;
    let mut w =
        HashingWriter { inner: BufWriter::new(out), hash: digest::Context::new(&digest::SHA256), len: 0 };
    w.put(&head).map_err(werr)?;
    let mut sealed = Vec::with_capacity(2 * envelope::ENCRYPTED_CHUNK_SIZE);
    sealer.update(prefix, &mut sealed)?;
    w.put(&sealed).map_err(werr)?;
    sealed.clear();
    let mut done = prefix.len() as u64;
    let mut buf = vec![0u8; CHUNK_SIZE];
    for (path, meta) in files {
        let mut f = File::open(path).map_err(|e| ClientError::io("cannot open attachment", path, e))?;
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| ClientError::io("cannot read attachment", path, e))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
            sealer.update(&buf[..n], &mut sealed)?;
            w.put(&sealed).map_err(werr)?;
            sealed.clear();
            done += n as u64;
            progress.advance(n as u64, done);
        }
        if size != meta.size || hash.finish().as_ref() != meta.sha256.as_slice() {
            return Err(ClientError::invalid(
                "attachment",
                format!("{} changed while the message was being sealed", path.display()),
            ));
        }
    }
    sealer.finish(&mut sealed)?;
    w.put(&sealed).map_err(werr)?;
    let HashingWriter { inner, hash, len } = w;
    inner.into_inner().map_err(|e| werr(e.into_error()))?;
    progress.finish();
    Ok((hash.finish().as_ref().try_into().expect("32 bytes"), len))
}

/// `context` with `escalations` added (canonical: prost re-encoding).
fn with_escalations(context: Vec<u8>, mut escalations: Vec<pb::Escalation>) -> Result<Vec<u8>> {
    use prost::Message;
    if escalations.is_empty() {
        return Ok(context);
    }
    let mut ctx = pb::Context::decode(context.as_slice())
        .map_err(|e| ClientError::invalid("context", format!("cannot decode what was just built: {e}")))?;
    escalations.sort_by(|a, b| (&a.primary, &a.alternate).cmp(&(&b.primary, &b.alternate)));
    ctx.escalations = escalations;
    Ok(ctx.encode_to_vec())
}

impl Client {
    /// Escalation (urgent messages): for each recipient whose network names
    /// an alternate focal point (`DirectoryEntry.escalation`, attached by
    /// that network's relay), the alternate becomes a recipient too and the
    /// pair goes into the signed context; that relay holds the alternate's
    /// copy until the primary acknowledges or the network's time passes.
    /// An alternate who is a direct recipient is not added (it has the
    /// message anyway); one alternate of several primaries (a network's
    /// default rule) gets one copy, listed in a pair with each of them; an
    /// alternate that cannot be looked up is skipped with a warning (the
    /// primary still gets the message).
    async fn escalation_copies(
        &self,
        to: &mut Vec<Address>,
        keys: &mut Vec<RecipientPublicKey>,
    ) -> Result<Vec<pb::Escalation>> {
        let mut out: Vec<pb::Escalation> = Vec::new();
        let direct = to.clone();
        for primary in direct.iter().cloned() {
            let entry =
                match self.directory().lookup(pb::LookupRequest { address: primary.to_string() }).await {
                    Ok(e) => e.into_inner(),
                    Err(s) => return Err(ClientError::rpc(format!("directory lookup of {primary}"), s)),
                };
            let Some(route) = entry.escalation else { continue };
            let alternate = match Address::parse_member(&route.alternate) {
                Ok(a) if a.network() == primary.network() && a != primary => a,
                _ => {
                    tracing::warn!(%primary, alternate = route.alternate, "ignoring a malformed escalation alternate");
                    continue;
                }
            };
            if direct.contains(&alternate) {
                continue;
            }
            let pair = pb::Escalation { primary: primary.to_string(), alternate: alternate.to_string() };
            if to.contains(&alternate) {
                // Already added for an earlier primary: one copy serves both.
                out.push(pair);
                continue;
            }
            match self.lookup(&alternate).await {
                Ok(v) => {
                    to.push(alternate.clone());
                    keys.push(RecipientPublicKey(v.x25519_public));
                    out.push(pair);
                }
                Err(e) => {
                    tracing::warn!(%primary, %alternate, error = %e, "escalation alternate not reachable; not added")
                }
            }
        }
        to.sort();
        Ok(out)
    }

    /// Seals and signs `draft` into a temporary file; see the module docs.
    pub async fn seal(&self, draft: &Draft, progress: Arc<dyn Progress>) -> Result<SealedMessage> {
        if draft.to.is_empty() {
            return Err(ClientError::invalid("recipients", "at least one --to is needed"));
        }
        check_attachment_count(draft.attachments.len())?;
        let (mut to, mut keys, broadcast_network) = self.resolve_recipients(&draft.to).await?;
        let escalations = if draft.priority == pb::Priority::Urgent && broadcast_network.is_none() {
            self.escalation_copies(&mut to, &mut keys).await?
        } else {
            Vec::new()
        };
        let paths = draft.attachments.clone();
        let attachments = tokio::task::spawn_blocking(move || {
            paths.iter().map(|p| describe_attachment(p).map(|a| (p.clone(), a))).collect::<Result<Vec<_>>>()
        })
        .await
        .expect("attachment hashing does not panic")?;
        let mut names: Vec<&str> = attachments.iter().map(|(_, a)| a.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ClientError::invalid("attachments", format!("two attachments are named {:?}", w[0])));
        }
        let now = now_ms();
        let msg_id = envelope::new_msg_id();
        let context = envelope::build_context(&ContextParams {
            msg_id,
            sender: self.me.clone(),
            recipients: to.clone(),
            created_at_ms: now,
            expires_at_ms: crate::util::ms_after(now, draft.expires_in),
            handling: draft.handling,
            priority: draft.priority,
            forward_of: draft.forward_of.clone(),
            broadcast_network,
        })?;
        let context = with_escalations(context, escalations)?;
        let content = pb::Content {
            version: 1,
            subject: draft.subject.clone(),
            body: draft.body.clone(),
            kind: draft.kind as i32,
            case_ref: draft.case_ref.clone(),
            reply_to_msg_id: draft.reply_to.as_ref().map(|r| r.msg_id.to_vec()).unwrap_or_default(),
            reply_to_sender: draft.reply_to.as_ref().map(|r| r.sender.to_string()).unwrap_or_default(),
            request: draft.request.clone(),
            handling_restrictions: draft.handling_restrictions.clone(),
            attachments: attachments.iter().map(|(_, a)| a.clone()).collect(),
            response_deadline_ms: draft.response_deadline_ms,
        };
        let prefix = content_prefix(&content)?;
        let tmp_dir = self.store.tmp_dir();
        let tmp = tempfile::Builder::new()
            .prefix("sealing-")
            .tempfile_in(&tmp_dir)
            .map_err(|e| ClientError::io("cannot create temporary file in", &tmp_dir, e))?;
        let (file, path) = tmp.into_parts();
        let ctx2 = context.clone();
        let path2 = path.to_path_buf();
        let (sha, size) = tokio::task::spawn_blocking(move || {
            seal_to_file(&ctx2, &keys, &prefix, &attachments, file, &path2, &*progress)
        })
        .await
        .expect("sealing does not panic")?;
        let signature = envelope::sign(&self.signing, &context, &sha);
        let header = pb::EnvelopeHeader {
            context: context.clone(),
            signature,
            sender_cert: self.creds.cert_der().to_vec(),
            payload_sha256: sha.to_vec(),
            payload_size: size,
            hops: Vec::new(),
            deliver_to: Vec::new(),
        };
        let record = SentRecord {
            msg_id: msg_id_hex(&msg_id),
            to: to.iter().map(ToString::to_string).collect(),
            subject: draft.subject.clone(),
            case_ref: draft.case_ref.clone(),
            reply_to_msg_id: draft.reply_to.as_ref().map(|r| msg_id_hex(&r.msg_id)).unwrap_or_default(),
            reply_to_sender: draft.reply_to.as_ref().map(|r| r.sender.to_string()).unwrap_or_default(),
            handling: handling_name(draft.handling as i32).into(),
            created_at_ms: now,
            expires_at_ms: crate::util::ms_after(now, draft.expires_in),
            accepted_at_ms: 0,
            relay: String::new(),
            payload_sha256: hex::encode(sha),
            payload_size: size,
            attachments: content.attachments.iter().map(|a| a.name.clone()).collect(),
            kind: crate::case::kind_name(draft.kind).into(),
            response_deadline_ms: draft.response_deadline_ms,
            forward_of: draft
                .forward_of
                .as_ref()
                .map(|f| hex::encode(&f.original_msg_id))
                .unwrap_or_default(),
        };
        Ok(SealedMessage { header, msg_id, payload: path, record })
    }

    /// Uploads a sealed message: the header, then the payload file in 64 KiB
    /// chunks. A broken connection is retried (same msg id); if an earlier
    /// attempt had in fact been accepted, the relay's ALREADY_EXISTS on the
    /// retry counts as acceptance. A first-attempt ALREADY_EXISTS is an error
    /// (the msg id was used before).
    pub async fn send_sealed(&self, msg: &SealedMessage, progress: Arc<dyn Progress>) -> Result<Accepted> {
        let mut attempt = 0u32;
        loop {
            let result = self.upload_once(msg, progress.clone()).await;
            let status = match result {
                Ok(resp) => {
                    return Ok(Accepted {
                        msg_id: msg.msg_id,
                        accepted_at_ms: resp.accepted_at_ms,
                        relay: resp.relay,
                        audit_leaf_index: resp.audit_leaf_index,
                        via_retry: attempt > 0,
                        to: msg.record.to.clone(),
                    });
                }
                Err(ClientError::Rpc { status, .. }) => status,
                Err(e) => return Err(e),
            };
            if attempt > 0 && status.code() == tonic::Code::AlreadyExists {
                return Ok(Accepted {
                    msg_id: msg.msg_id,
                    accepted_at_ms: 0,
                    relay: String::new(),
                    audit_leaf_index: 0,
                    via_retry: true,
                    to: msg.record.to.clone(),
                });
            }
            if !is_transient(&status) || attempt >= self.retry.retries {
                return Err(ClientError::rpc("send", status));
            }
            tracing::debug!(%status, attempt, "send interrupted; retrying");
            tokio::time::sleep(self.retry.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One upload attempt: the header, then the payload file.
    async fn upload_once(
        &self,
        msg: &SealedMessage,
        progress: Arc<dyn Progress>,
    ) -> Result<pb::SendResponse> {
        let path = msg.payload.to_path_buf();
        let header = msg.header.clone();
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ClientError::io("cannot open sealed payload", &path, e))?;
        let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let err_slot = read_error.clone();
        let total = header.payload_size;
        progress.start("sending", total);
        let first = pb::SendRequest { part: Some(pb::send_request::Part::Header(header)) };
        // A reader task feeds a bounded channel: at most QUEUE chunks are
        // in memory, and a slow relay slows the reader down.
        const QUEUE: usize = 4;
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::SendRequest>(QUEUE);
        let reader = tokio::spawn(async move {
            let mut file = file;
            if tx.send(first).await.is_err() {
                return;
            }
            loop {
                let mut buf = vec![0u8; SEND_CHUNK];
                let mut filled = 0;
                // Fill whole chunks (short reads are possible) until EOF.
                while filled < SEND_CHUNK {
                    match file.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            *err_slot.lock().expect("slot") = Some(e);
                            return;
                        }
                    }
                }
                if filled == 0 {
                    return;
                }
                buf.truncate(filled);
                if tx.send(pb::SendRequest { part: Some(pb::send_request::Part::Chunk(buf)) }).await.is_err()
                {
                    return; // the RPC ended (refused or broken)
                }
            }
        });
        // Progress counts the bytes gRPC takes from the queue (what the
        // relay has not received yet is bounded by HTTP/2 flow control).
        let stream = CountedChunks {
            inner: tokio_stream::wrappers::ReceiverStream::new(rx),
            progress: progress.clone(),
            sent: 0,
        };
        let result = self.relay().send(stream).await;
        reader.abort();
        let _ = reader.await;
        progress.finish();
        if let Some(e) = read_error.lock().expect("slot").take() {
            return Err(ClientError::io("cannot read sealed payload", path, e));
        }
        result.map(|r| r.into_inner()).map_err(|s| ClientError::rpc("send", s))
    }

    /// Seals, signs and sends `draft`; remembers it in the local store.
    pub async fn send(&self, draft: &Draft, progress: Arc<dyn Progress>) -> Result<Accepted> {
        let sealed = self.seal(draft, progress.clone()).await?;
        let accepted = self.send_sealed(&sealed, progress).await?;
        let mut record = sealed.record.clone();
        record.accepted_at_ms = accepted.accepted_at_ms;
        record.relay = accepted.relay.clone();
        self.store.put_sent(&record)?;
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plaintext::{AttachmentSink, PlaintextReader};
    use crate::progress::NoProgress;
    use focal_proto::envelope::{Opener, RecipientSecretKey};

    struct Collect(Vec<Vec<u8>>);
    impl AttachmentSink for Collect {
        fn begin(&mut self, _: usize, _: &pb::Attachment) -> Result<()> {
            self.0.push(Vec::new());
            Ok(())
        }
        fn write(&mut self, i: usize, d: &[u8]) -> Result<()> {
            self.0[i].extend_from_slice(d);
            Ok(())
        }
    }

    /// Seal to a file exactly as `Client::seal` does, then open it in odd
    /// slices: content and attachments come back, digests match.
    #[test]
    fn sealed_file_opens_to_content_and_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        let b = dir.path().join("empty.txt");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, b"").unwrap();
        let files: Vec<_> =
            [&a, &b].iter().map(|p| ((*p).clone(), describe_attachment(p).unwrap())).collect();
        assert_eq!(files[0].1.media_type, "application/octet-stream");
        let content = pb::Content {
            version: 1,
            subject: "s".into(),
            attachments: files.iter().map(|(_, m)| m.clone()).collect(),
            ..Default::default()
        };
        let ctx = test_context();
        let secret = RecipientSecretKey::generate();
        let out_path = dir.path().join("sealed");
        let out = File::create(&out_path).unwrap();
        let prefix = content_prefix(&content).unwrap();
        let (sha, size) =
            seal_to_file(&ctx, &[secret.public_key()], &prefix, &files, out, &out_path, &NoProgress).unwrap();
        let sealed = std::fs::read(&out_path).unwrap();
        assert_eq!(sealed.len() as u64, size);
        assert_eq!(crate::util::sha256(&sealed), sha);

        let mut opener = Opener::new(&ctx, &[&secret]);
        let mut reader = PlaintextReader::new();
        let mut sink = Collect(Vec::new());
        let mut plain = Vec::new();
        for piece in sealed.chunks(10_007) {
            opener.push(piece, &mut plain).unwrap();
            reader.push(&plain, &mut sink).unwrap();
            plain.clear();
        }
        opener.finish(&mut plain).unwrap();
        reader.push(&plain, &mut sink).unwrap();
        assert_eq!(reader.finish().unwrap(), content);
        assert_eq!(sink.0, vec![data, Vec::new()]);
    }

    /// The context both sealing tests seal to: a@carin to b@carin.
    fn test_context() -> Vec<u8> {
        envelope::build_context(&ContextParams {
            msg_id: [1; 16],
            sender: Address::parse("a@carin").unwrap(),
            recipients: vec![Address::parse("b@carin").unwrap()],
            created_at_ms: 1,
            expires_at_ms: 2,
            handling: pb::HandlingCode::H1,
            priority: pb::Priority::Normal,
            forward_of: None,
            broadcast_network: None,
        })
        .unwrap()
    }

    #[test]
    fn an_attachment_changed_during_sealing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        std::fs::write(&a, b"before").unwrap();
        let meta = describe_attachment(&a).unwrap();
        std::fs::write(&a, b"after!").unwrap();
        let ctx = test_context();
        let key = RecipientSecretKey::generate().public_key();
        let out_path = dir.path().join("sealed");
        let e = seal_to_file(
            &ctx,
            &[key],
            b"",
            &[(a, meta)],
            File::create(&out_path).unwrap(),
            &out_path,
            &NoProgress,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("changed while"), "{e}");
    }
}
