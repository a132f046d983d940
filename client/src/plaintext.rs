//! The sealed plaintext layout (see `proto/proto/focal/v1/content.proto`),
//! without I/O:
//!
//! ```text
//! SHA-256(context)        32 bytes   (added and checked by the envelope layer)
//! len(Content) u32 BE      4 bytes
//! Content (prost)
//! attachment bytes, concatenated in the order of Content.attachments
//! ```
//!
//! [`content_prefix`] builds the part the sender writes before the
//! attachments; [`PlaintextReader`] splits opened plaintext, pushed in any
//! slices, into the `Content` and a stream of attachment bytes handed to an
//! [`AttachmentSink`], hashing each attachment on the way. The reader keeps at
//! most the `Content` in memory, never attachment data. Both sides refuse a
//! `Content` listing more than [`MAX_ATTACHMENTS`] attachments.

use focal_proto::pb;
use prost::Message;
use ring::digest;

use crate::error::{ClientError, Result};

/// Largest encoded `Content` accepted (subject, body and structured fields;
/// attachments are outside it). Bounds what a reader buffers.
pub const MAX_CONTENT_BYTES: usize = 16 * 1024 * 1024;

/// Most attachments one message may carry. Senders refuse more
/// ([`check_attachment_count`]); a reader refuses a `Content` listing more
/// before it begins the first attachment (each one costs the reader a file
/// and a digest, even when empty).
pub const MAX_ATTACHMENTS: usize = 1000;

/// Refuses to send `n` attachments if that is more than [`MAX_ATTACHMENTS`].
pub fn check_attachment_count(n: usize) -> Result<()> {
    if n > MAX_ATTACHMENTS {
        return Err(ClientError::invalid(
            "attachments",
            format!("{n} attachments; a message carries at most {MAX_ATTACHMENTS} (send an archive instead)"),
        ));
    }
    Ok(())
}

/// The bytes the sender writes before the attachment data.
pub fn content_prefix(content: &pb::Content) -> Result<Vec<u8>> {
    check_attachment_count(content.attachments.len())?;
    let len = content.encoded_len();
    if len > MAX_CONTENT_BYTES {
        return Err(ClientError::invalid(
            "message body",
            format!("{len} bytes encoded; at most {MAX_CONTENT_BYTES} (send large text as an attachment)"),
        ));
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    content.encode(&mut out).expect("Vec grows");
    Ok(out)
}

/// Receives attachment data as the reader finds it.
pub trait AttachmentSink {
    /// Attachment `index` (of `Content.attachments`) starts.
    fn begin(&mut self, index: usize, meta: &pb::Attachment) -> Result<()>;
    /// Next bytes of attachment `index`.
    fn write(&mut self, index: usize, data: &[u8]) -> Result<()>;
    /// Attachment `index` has all its bytes (its digest is checked by
    /// [`PlaintextReader::finish`]); a sink may close what it kept open.
    fn end(&mut self, _index: usize) -> Result<()> {
        Ok(())
    }
}

/// A sink that discards attachment data (the digests are still checked).
pub struct DiscardSink;

impl AttachmentSink for DiscardSink {
    fn begin(&mut self, _: usize, _: &pb::Attachment) -> Result<()> {
        Ok(())
    }
    fn write(&mut self, _: usize, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

enum State {
    Len { buf: Vec<u8> },
    Content { need: usize, buf: Vec<u8> },
    Attachments { index: usize, remaining: u64 },
}

/// Incremental parser of opened plaintext (after the context-hash prefix).
pub struct PlaintextReader {
    state: State,
    content: Option<pb::Content>,
    hasher: Option<digest::Context>,
    digests: Vec<[u8; 32]>,
}

impl Default for PlaintextReader {
    fn default() -> Self {
        Self::new()
    }
}

fn bad(reason: impl std::fmt::Display) -> ClientError {
    ClientError::verify("message content", reason)
}

impl PlaintextReader {
    /// A reader at the start of the plaintext.
    pub fn new() -> Self {
        PlaintextReader {
            state: State::Len { buf: Vec::with_capacity(4) },
            content: None,
            hasher: None,
            digests: Vec::new(),
        }
    }

    /// The decoded `Content`, once its bytes have been pushed.
    pub fn content(&self) -> Option<&pb::Content> {
        self.content.as_ref()
    }

    /// Feeds the next plaintext bytes.
    pub fn push(&mut self, mut data: &[u8], sink: &mut dyn AttachmentSink) -> Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Len { buf } => {
                    let take = (4 - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == 4 {
                        let need = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        if need > MAX_CONTENT_BYTES {
                            return Err(bad(format!("content of {need} bytes exceeds {MAX_CONTENT_BYTES}")));
                        }
                        self.state = State::Content { need, buf: Vec::with_capacity(need.min(64 * 1024)) };
                        self.maybe_content_done(sink)?;
                    }
                }
                State::Content { need, buf } => {
                    let take = (*need - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.maybe_content_done(sink)?;
                }
                State::Attachments { index, remaining } => {
                    let (i, rem) = (*index, *remaining);
                    let attachments = &self.content.as_ref().expect("content parsed").attachments;
                    if i >= attachments.len() {
                        return Err(bad(format!("{} bytes after the last attachment", data.len())));
                    }
                    let take = (rem.min(data.len() as u64)) as usize;
                    let chunk = &data[..take];
                    data = &data[take..];
                    self.hasher.as_mut().expect("hasher of current attachment").update(chunk);
                    sink.write(i, chunk)?;
                    if let State::Attachments { remaining, .. } = &mut self.state {
                        *remaining -= take as u64;
                    }
                    if rem == take as u64 {
                        self.end_attachment(i, sink)?;
                        self.start_attachment(i + 1, sink)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn maybe_content_done(&mut self, sink: &mut dyn AttachmentSink) -> Result<()> {
        let State::Content { need, buf } = &self.state else { return Ok(()) };
        if buf.len() < *need {
            return Ok(());
        }
        let content = pb::Content::decode(&buf[..]).map_err(|e| bad(format!("malformed Content: {e}")))?;
        if content.version != 1 {
            return Err(bad(format!("unsupported Content version {}", content.version)));
        }
        if content.attachments.len() > MAX_ATTACHMENTS {
            return Err(bad(format!(
                "{} attachments listed; at most {MAX_ATTACHMENTS} allowed",
                content.attachments.len()
            )));
        }
        for (i, a) in content.attachments.iter().enumerate() {
            if a.sha256.len() != 32 {
                return Err(bad(format!("attachment {i} ({:?}) has no SHA-256", a.name)));
            }
        }
        self.content = Some(content);
        self.digests.clear();
        self.start_attachment(0, sink)
    }

    /// Starts attachment `i`, ending empty ones right away and going on to
    /// the next (a loop: a message may list many empty attachments).
    fn start_attachment(&mut self, mut i: usize, sink: &mut dyn AttachmentSink) -> Result<()> {
        loop {
            let attachments = &self.content.as_ref().expect("content parsed").attachments;
            let Some(meta) = attachments.get(i) else {
                self.state = State::Attachments { index: i, remaining: 0 };
                self.hasher = None;
                return Ok(());
            };
            sink.begin(i, meta)?;
            self.hasher = Some(digest::Context::new(&digest::SHA256));
            self.state = State::Attachments { index: i, remaining: meta.size };
            if meta.size > 0 {
                return Ok(());
            }
            self.end_attachment(i, sink)?;
            i += 1;
        }
    }

    /// Attachment `i` has all its bytes: keeps its digest, tells the sink.
    fn end_attachment(&mut self, i: usize, sink: &mut dyn AttachmentSink) -> Result<()> {
        let h = self.hasher.take().expect("hasher of current attachment").finish();
        self.digests.push(h.as_ref().try_into().expect("32 bytes"));
        sink.end(i)
    }

    /// Checks that the plaintext was complete and every attachment's SHA-256
    /// matches `Content`; returns the `Content`.
    pub fn finish(self) -> Result<pb::Content> {
        let content = match self.state {
            State::Len { .. } | State::Content { .. } => return Err(bad("plaintext ends inside Content")),
            State::Attachments { index, remaining } => {
                let content = self.content.expect("content parsed");
                if index < content.attachments.len() {
                    let a = &content.attachments[index];
                    return Err(bad(format!(
                        "plaintext ends inside attachment {:?} ({remaining} of {} bytes missing)",
                        a.name, a.size
                    )));
                }
                content
            }
        };
        for (a, d) in content.attachments.iter().zip(&self.digests) {
            if a.sha256.as_slice() != d.as_slice() {
                return Err(bad(format!(
                    "attachment {:?}: SHA-256 does not match the one in the message",
                    a.name
                )));
            }
        }
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> Vec<u8> {
        digest::digest(&digest::SHA256, data).as_ref().to_vec()
    }

    #[derive(Default)]
    struct Collect(Vec<(String, Vec<u8>)>);
    impl AttachmentSink for Collect {
        fn begin(&mut self, index: usize, meta: &pb::Attachment) -> Result<()> {
            assert_eq!(index, self.0.len());
            self.0.push((meta.name.clone(), Vec::new()));
            Ok(())
        }
        fn write(&mut self, index: usize, data: &[u8]) -> Result<()> {
            self.0[index].1.extend_from_slice(data);
            Ok(())
        }
    }

    fn message(parts: &[(&str, &[u8])]) -> (pb::Content, Vec<u8>) {
        let content = pb::Content {
            version: 1,
            subject: "s".into(),
            body: "b".into(),
            attachments: parts
                .iter()
                .map(|(n, d)| pb::Attachment {
                    name: (*n).into(),
                    size: d.len() as u64,
                    sha256: sha(d),
                    media_type: String::new(),
                })
                .collect(),
            ..Default::default()
        };
        let mut bytes = content_prefix(&content).unwrap();
        for (_, d) in parts {
            bytes.extend_from_slice(d);
        }
        (content, bytes)
    }

    #[test]
    fn splits_in_any_slicing() {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let parts: [(&str, &[u8]); 4] = [("a", b"hello"), ("empty", b""), ("big", &big), ("z", b"!")];
        let (content, bytes) = message(&parts);
        for step in [1, 3, 4, 7, 4096, 65536, bytes.len()] {
            let mut r = PlaintextReader::new();
            let mut sink = Collect::default();
            for piece in bytes.chunks(step) {
                r.push(piece, &mut sink).unwrap();
            }
            assert_eq!(r.finish().unwrap(), content);
            let got: Vec<_> = sink.0.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            assert_eq!(got, parts.to_vec(), "step {step}");
        }
    }

    #[test]
    fn refuses_truncation_trailing_data_and_wrong_digest() {
        let (_, bytes) = message(&[("a", b"hello")]);
        let mut r = PlaintextReader::new();
        r.push(&bytes[..bytes.len() - 1], &mut DiscardSink).unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("ends inside attachment \"a\""));

        let mut r = PlaintextReader::new();
        let mut more = bytes.clone();
        more.push(0);
        assert!(
            r.push(&more, &mut DiscardSink).unwrap_err().to_string().contains("after the last attachment")
        );

        let mut r = PlaintextReader::new();
        let mut wrong = bytes.clone();
        *wrong.last_mut().unwrap() ^= 1;
        r.push(&wrong, &mut DiscardSink).unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("SHA-256 does not match"));

        let mut r = PlaintextReader::new();
        r.push(&bytes[..3], &mut DiscardSink).unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("inside Content"));

        let mut r = PlaintextReader::new();
        let huge = ((MAX_CONTENT_BYTES + 1) as u32).to_be_bytes();
        assert!(r.push(&huge, &mut DiscardSink).is_err());
    }

    /// Plaintext of a `Content` listing `n` empty attachments, built by
    /// hand (`content_prefix` refuses more than [`MAX_ATTACHMENTS`]).
    fn empty_attachments(n: usize) -> Vec<u8> {
        let empty = pb::Attachment { name: "e".into(), size: 0, sha256: sha(b""), media_type: String::new() };
        let content = pb::Content { version: 1, attachments: vec![empty; n], ..Default::default() };
        let body = content.encode_to_vec();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn too_many_attachments_are_refused_by_reader_and_sender() {
        let mut sink = Collect::default();
        let e = PlaintextReader::new().push(&empty_attachments(20_000), &mut sink).unwrap_err().to_string();
        assert!(e.contains("20000 attachments listed; at most 1000 allowed"), "{e}");
        assert!(sink.0.is_empty(), "no attachment begun");

        let one = pb::Attachment { name: "a".into(), size: 0, sha256: sha(b""), media_type: String::new() };
        let content =
            pb::Content { version: 1, attachments: vec![one; MAX_ATTACHMENTS + 1], ..Default::default() };
        let e = content_prefix(&content).unwrap_err().to_string();
        assert!(e.contains("1001 attachments; a message carries at most 1000"), "{e}");
    }

    /// The reader once recursed for every empty attachment; on a 64 KiB
    /// stack it would overflow long before the limit.
    #[test]
    fn the_limit_of_empty_attachments_reads_on_a_small_stack() {
        let bytes = empty_attachments(MAX_ATTACHMENTS);
        let reading = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
            let mut r = PlaintextReader::new();
            let mut sink = Collect::default();
            r.push(&bytes, &mut sink).unwrap();
            assert_eq!(r.finish().unwrap().attachments.len(), MAX_ATTACHMENTS);
            sink.0.len()
        });
        assert_eq!(reading.unwrap().join().unwrap(), MAX_ATTACHMENTS);
    }
}
