//! Length-prefixed frame codec for federation streams.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a
//! protobuf [`pb::Frame`]. The decoder is incremental (feed it whatever a
//! stream read returned) and refuses a frame whose announced length exceeds
//! its maximum before buffering any of it, so a peer cannot make a relay
//! allocate more than `max_frame` bytes per stream.

use bytes::{Buf, BytesMut};
use prost::Message;

use crate::error::{ProtoError, Result};
use crate::pb;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Default largest frame body: a 64 KiB payload chunk plus generous headroom
/// for a header with a certificate and many recipients.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Encodes one frame with its length prefix.
pub fn encode(frame: &pb::Frame, max_frame: usize) -> Result<Vec<u8>> {
    let len = frame.encoded_len();
    if len > max_frame {
        return Err(ProtoError::FrameTooLarge { len: len as u64, max: max_frame as u64 });
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    frame.encode(&mut out).expect("Vec grows as needed");
    Ok(out)
}

/// Incremental decoder of length-prefixed frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { buf: BytesMut::new(), max_frame }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Announced length of the next frame, checked against the maximum, once
    /// its prefix has arrived. Lets a reader size its next read exactly.
    pub fn next_len(&self) -> Result<Option<usize>> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..LEN_PREFIX].try_into().expect("4 bytes")) as usize;
        if len > self.max_frame {
            return Err(ProtoError::FrameTooLarge { len: len as u64, max: self.max_frame as u64 });
        }
        Ok(Some(len))
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<pb::Frame>> {
        let Some(len) = self.next_len()? else { return Ok(None) };
        if self.buf.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        self.buf.advance(LEN_PREFIX);
        let body = self.buf.split_to(len);
        pb::Frame::decode(body.freeze()).map(Some).map_err(|e| ProtoError::malformed("frame", e))
    }

    /// Call at end of stream: an error if a partial frame is left over.
    pub fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let needed = match self.next_len() {
            Ok(Some(len)) => (LEN_PREFIX + len - self.buf.len()) as u64,
            Ok(None) => (LEN_PREFIX - self.buf.len()) as u64,
            Err(e) => return Err(e),
        };
        Err(ProtoError::FrameTruncated { needed })
    }
}

/// Decodes exactly one frame from a complete buffer (no trailing bytes).
pub fn decode_exact(data: &[u8], max_frame: usize) -> Result<pb::Frame> {
    let mut d = FrameDecoder::new(max_frame);
    d.push(data);
    let frame = d.next_frame()?;
    match frame {
        Some(f) if d.buffered() == 0 => Ok(f),
        Some(_) => Err(ProtoError::malformed("frame", "trailing bytes after the frame")),
        None => {
            d.finish()?;
            Err(ProtoError::FrameTruncated { needed: LEN_PREFIX as u64 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::frame::Kind;

    fn ping(n: u64) -> pb::Frame {
        pb::Frame { kind: Some(Kind::Ping(pb::Ping { nonce: n })) }
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        for n in 0..5 {
            wire.extend(encode(&ping(n), DEFAULT_MAX_FRAME).unwrap());
        }
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        d.finish().unwrap();
        assert_eq!(got, (0..5).map(ping).collect::<Vec<_>>());
    }

    #[test]
    fn oversize_refused_before_buffering() {
        let mut d = FrameDecoder::new(16);
        d.push(&(17u32).to_be_bytes());
        assert_eq!(d.next_frame().unwrap_err(), ProtoError::FrameTooLarge { len: 17, max: 16 });
        let big = pb::Frame { kind: Some(Kind::PayloadChunk(pb::PayloadChunk { data: vec![0; 64] })) };
        assert!(matches!(encode(&big, 16), Err(ProtoError::FrameTooLarge { .. })));
    }

    #[test]
    fn truncated_is_typed() {
        let wire = encode(&ping(7), DEFAULT_MAX_FRAME).unwrap();
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        d.push(&wire[..wire.len() - 1]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.finish().unwrap_err(), ProtoError::FrameTruncated { needed: 1 });
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        d.push(&wire[..2]);
        assert_eq!(d.finish().unwrap_err(), ProtoError::FrameTruncated { needed: 2 });
        assert!(matches!(decode_exact(&wire[..3], 100), Err(ProtoError::FrameTruncated { .. })));
    }

    #[test]
    fn garbage_body_is_malformed() {
        let mut wire = 3u32.to_be_bytes().to_vec();
        wire.extend([0xff, 0xff, 0xff]);
        assert!(matches!(decode_exact(&wire, 100), Err(ProtoError::Malformed { .. })));
        let mut extra = encode(&ping(1), 100).unwrap();
        extra.push(0);
        assert!(matches!(decode_exact(&extra, 100), Err(ProtoError::Malformed { .. })));
    }
}
