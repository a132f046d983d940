//! The message context: the clear, signed part of an envelope that relays
//! route and enforce policy on, and whose SHA-256 starts every sealed
//! plaintext.
//!
//! Canonical form: the prost encoding of `pb::Context`. Because a decoded
//! context must re-encode to exactly the bytes received, there is one byte
//! string per context (no unknown fields, no duplicated or out-of-order
//! fields, no non-minimal varints), and SHA-256 of it identifies it.
//!
//! Recipients are sorted ascending by the UTF-8 bytes of `name@network` (the
//! order of the strings on the wire, so that any implementation can check it)
//! and unique. No clock policy lives here: relays apply skew and lifetime
//! rules with their own clock.

use prost::Message;

use crate::address::{Address, NetworkId};
use crate::error::{ProtoError, Result};
use crate::pb;

/// The only context version this code reads and writes.
pub const CONTEXT_VERSION: u32 = 1;

/// Most recipients one context (and one sealed payload) may name. Keeps the
/// age header an opener must buffer under [`super::MAX_HEADER_SIZE`].
pub const MAX_RECIPIENTS: usize = 2048;

/// Inputs of a context; `build_context` validates, sorts and dedups.
#[derive(Clone, Debug)]
pub struct ContextParams {
    /// 16 random bytes ([`new_msg_id`]).
    pub msg_id: [u8; 16],
    /// The sender's concrete address.
    pub sender: Address,
    /// Concrete recipient addresses, in any order, duplicates allowed.
    pub recipients: Vec<Address>,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, unix milliseconds; must be after `created_at_ms`.
    pub expires_at_ms: i64,
    /// Handling code; `Unspecified` is refused.
    pub handling: pb::HandlingCode,
    /// Priority; `Unspecified` is refused.
    pub priority: pb::Priority,
    /// Set when the message forwards another one.
    pub forward_of: Option<pb::ForwardOf>,
    /// Set when the sender addressed `*@network`.
    pub broadcast_network: Option<NetworkId>,
}

/// A structurally valid, canonically encoded context.
#[derive(Clone, Debug)]
pub struct ValidContext {
    /// The decoded message.
    pub ctx: pb::Context,
    /// The message id.
    pub msg_id: [u8; 16],
    /// The sender.
    pub sender: Address,
    /// The recipients, sorted and unique.
    pub recipients: Vec<Address>,
    /// The bytes as received/encoded (canonical).
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub hash: [u8; 32],
}

impl ValidContext {
    /// Whether `addr` is one of the recipients. A client must check this for
    /// its own address before trusting a message it opened: the payload
    /// binding proves which context the sender sealed, not that it was meant
    /// for whoever holds a matching key.
    pub fn is_recipient(&self, addr: &Address) -> bool {
        self.ctx.recipients.binary_search(&addr.to_string()).is_ok()
    }
}

/// 16 random bytes from the system RNG.
///
/// # Panics
/// If the operating system's random number generator fails (no message can
/// be sent safely then).
pub fn new_msg_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .expect("the system random number generator failed");
    id
}

/// SHA-256 of context bytes (the plaintext prefix and the signed digest).
pub fn context_hash(context_bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, context_bytes);
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// Canonical context bytes for `params`.
pub fn build_context(params: &ContextParams) -> Result<Vec<u8>> {
    if params.sender.is_broadcast() {
        return Err(invalid("sender must be a concrete address, not a broadcast address"));
    }
    let mut recipients = Vec::with_capacity(params.recipients.len());
    for r in &params.recipients {
        if r.is_broadcast() {
            return Err(invalid(format!(
                "recipient {r} is a broadcast address; expand it to the network's members and set broadcast_network"
            )));
        }
        recipients.push(r.to_string());
    }
    recipients.sort_unstable();
    recipients.dedup();
    let ctx = pb::Context {
        version: CONTEXT_VERSION,
        msg_id: params.msg_id.to_vec(),
        sender: params.sender.to_string(),
        recipients,
        created_at_ms: params.created_at_ms,
        expires_at_ms: params.expires_at_ms,
        handling: params.handling as i32,
        priority: params.priority as i32,
        forward_of: params.forward_of.clone(),
        broadcast_network: params.broadcast_network.as_ref().map(|n| n.to_string()).unwrap_or_default(),
        escalations: Vec::new(),
    };
    check(&ctx)?;
    Ok(ctx.encode_to_vec())
}

/// Decodes and checks a context (canonical encoding, version, 16-byte id,
/// addresses, sorted unique recipients, created < expires). No clock policy.
pub fn parse_context(bytes: &[u8]) -> Result<ValidContext> {
    let ctx = pb::Context::decode(bytes).map_err(|e| ProtoError::malformed("context", e))?;
    if ctx.encode_to_vec() != bytes {
        return Err(ProtoError::NonCanonicalContext);
    }
    let Checked { msg_id, sender, recipients } = check(&ctx)?;
    Ok(ValidContext { ctx, msg_id, sender, recipients, bytes: bytes.to_vec(), hash: context_hash(bytes) })
}

struct Checked {
    msg_id: [u8; 16],
    sender: Address,
    recipients: Vec<Address>,
}

fn invalid(msg: impl Into<String>) -> ProtoError {
    ProtoError::InvalidContext(msg.into())
}

/// Every structural rule, shared by `build_context` and `parse_context`.
fn check(ctx: &pb::Context) -> Result<Checked> {
    if ctx.version != CONTEXT_VERSION {
        return Err(invalid(format!("unsupported version {} (expected {CONTEXT_VERSION})", ctx.version)));
    }
    let msg_id: [u8; 16] = ctx
        .msg_id
        .as_slice()
        .try_into()
        .map_err(|_| invalid(format!("msg_id is {} bytes, expected 16", ctx.msg_id.len())))?;
    let sender = Address::parse_member(&ctx.sender).map_err(|e| invalid(format!("sender: {e}")))?;
    if ctx.recipients.is_empty() {
        return Err(invalid("no recipients"));
    }
    if ctx.recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(format!(
            "{} recipients, at most {MAX_RECIPIENTS} allowed",
            ctx.recipients.len()
        )));
    }
    let mut recipients = Vec::with_capacity(ctx.recipients.len());
    for (i, r) in ctx.recipients.iter().enumerate() {
        if i > 0 && ctx.recipients[i - 1].as_bytes() >= r.as_bytes() {
            return Err(invalid("recipients are not sorted ascending and unique"));
        }
        recipients.push(Address::parse_member(r).map_err(|e| invalid(format!("recipient: {e}")))?);
    }
    if ctx.created_at_ms >= ctx.expires_at_ms {
        return Err(invalid(format!(
            "created_at_ms {} is not before expires_at_ms {}",
            ctx.created_at_ms, ctx.expires_at_ms
        )));
    }
    check_handling("handling", ctx.handling)?;
    match pb::Priority::try_from(ctx.priority) {
        Ok(pb::Priority::Unspecified) => return Err(invalid("priority is unspecified")),
        Ok(_) => {}
        Err(_) => return Err(invalid(format!("unknown priority {}", ctx.priority))),
    }
    if !ctx.broadcast_network.is_empty() {
        NetworkId::new(&ctx.broadcast_network).map_err(|e| invalid(format!("broadcast_network: {e}")))?;
    }
    if let Some(f) = &ctx.forward_of {
        if f.original_msg_id.len() != 16 {
            return Err(invalid(format!(
                "forward_of.original_msg_id is {} bytes, expected 16",
                f.original_msg_id.len()
            )));
        }
        Address::parse_member(&f.original_sender)
            .map_err(|e| invalid(format!("forward_of.original_sender: {e}")))?;
        check_handling("forward_of.original_handling", f.original_handling)?;
    }
    Ok(Checked { msg_id, sender, recipients })
}

fn check_handling(field: &str, value: i32) -> Result<()> {
    match pb::HandlingCode::try_from(value) {
        Ok(pb::HandlingCode::Unspecified) => Err(invalid(format!("{field} is unspecified"))),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(format!("unknown {field} {value}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn params() -> ContextParams {
        ContextParams {
            msg_id: [7; 16],
            sender: addr("nl-fiod@carin"),
            recipients: vec![addr("za-afu@arinsa"), addr("a-b@gfp"), addr("a@gfp"), addr("za-afu@arinsa")],
            created_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_000_600_000,
            handling: pb::HandlingCode::H1,
            priority: pb::Priority::Normal,
            forward_of: None,
            broadcast_network: None,
        }
    }

    #[test]
    fn builds_sorted_unique_and_parses_back() {
        let bytes = build_context(&params()).unwrap();
        let v = parse_context(&bytes).unwrap();
        // Byte order of the strings: '-' (0x2d) sorts before '@' (0x40).
        assert_eq!(v.ctx.recipients, ["a-b@gfp", "a@gfp", "za-afu@arinsa"]);
        assert_eq!(v.recipients.len(), 3);
        assert_eq!(v.msg_id, [7; 16]);
        assert_eq!(v.sender, addr("nl-fiod@carin"));
        assert_eq!(v.hash, context_hash(&bytes));
        assert_eq!(v.bytes, bytes);
    }

    #[test]
    fn build_refuses_bad_params() {
        type Edit = Box<dyn Fn(&mut ContextParams)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p.sender = addr("*@carin")), "sender must be a concrete"),
            (Box::new(|p| p.recipients = vec![addr("*@carin")]), "broadcast address"),
            (Box::new(|p| p.recipients.clear()), "no recipients"),
            (Box::new(|p| p.expires_at_ms = p.created_at_ms), "not before"),
            (Box::new(|p| p.handling = pb::HandlingCode::Unspecified), "handling is unspecified"),
            (Box::new(|p| p.priority = pb::Priority::Unspecified), "priority is unspecified"),
            (
                Box::new(|p| {
                    p.forward_of = Some(pb::ForwardOf {
                        original_msg_id: vec![1; 15],
                        original_sender: "x@gfp".into(),
                        original_handling: 3,
                        release: None,
                    })
                }),
                "original_msg_id is 15 bytes",
            ),
            (
                Box::new(|p| {
                    p.recipients =
                        (0..=MAX_RECIPIENTS).map(|i| addr(&format!("m{i}@gfp"))).collect::<Vec<_>>()
                }),
                "at most 2048",
            ),
        ];
        for (edit, want) in cases {
            let mut p = params();
            edit(&mut p);
            let err = build_context(&p).unwrap_err();
            assert!(matches!(err, ProtoError::InvalidContext(_)), "{err:?}");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }

    fn reencode(edit: impl FnOnce(&mut pb::Context)) -> Vec<u8> {
        let mut ctx = pb::Context::decode(build_context(&params()).unwrap().as_slice()).unwrap();
        edit(&mut ctx);
        ctx.encode_to_vec()
    }

    #[test]
    fn parse_refuses_edited_contexts() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (reencode(|c| c.version = 2), "unsupported version 2"),
            (reencode(|c| c.msg_id.truncate(15)), "msg_id is 15 bytes"),
            (reencode(|c| c.sender = "NL@carin".into()), "upper case"),
            (reencode(|c| c.sender = "*@carin".into()), "broadcast"),
            (reencode(|c| c.recipients.swap(0, 1)), "not sorted"),
            (reencode(|c| c.recipients.push("za-afu@arinsa".into())), "not sorted"),
            (reencode(|c| c.recipients.insert(0, "*@zz".into())), "broadcast"),
            (reencode(|c| c.recipients.clear()), "no recipients"),
            (reencode(|c| c.created_at_ms = c.expires_at_ms + 1), "not before"),
            (reencode(|c| c.handling = 99), "unknown handling 99"),
            (reencode(|c| c.priority = 0), "priority is unspecified"),
            (reencode(|c| c.broadcast_network = "Carin".into()), "broadcast_network"),
        ];
        for (bytes, want) in cases {
            let err = parse_context(&bytes).unwrap_err();
            assert!(matches!(err, ProtoError::InvalidContext(_)), "{want}: {err:?}");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn parse_refuses_non_canonical_and_garbage() {
        let good = build_context(&params()).unwrap();
        // An unknown field appended (field 15, varint 1).
        let mut unknown = good.clone();
        unknown.extend_from_slice(&[0x78, 0x01]);
        assert_eq!(parse_context(&unknown).unwrap_err(), ProtoError::NonCanonicalContext);
        // The version field repeated (last one wins in protobuf).
        let mut dup = good.clone();
        dup.extend_from_slice(&[0x08, 0x01]);
        assert_eq!(parse_context(&dup).unwrap_err(), ProtoError::NonCanonicalContext);
        // A non-minimal varint for version (0x81 0x00 == 1).
        let mut long = vec![0x08, 0x81, 0x00];
        long.extend_from_slice(&good[2..]);
        assert_eq!(parse_context(&long).unwrap_err(), ProtoError::NonCanonicalContext);
        // Not protobuf at all.
        assert!(matches!(parse_context(&[0xff, 0xff, 0xff]).unwrap_err(), ProtoError::Malformed { .. }));
        assert!(matches!(parse_context(&[]).unwrap_err(), ProtoError::InvalidContext(_)));
    }
}
