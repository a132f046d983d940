//! What `focal` prints on stdout: short human text, or with `--json` one
//! JSON object per line (stable field names, hex ids, unix-ms times).

use focal_certs::VerifiedEntry;
use focal_proto::Address;
use serde_json::{Value, json};

use crate::client::MessageRef;
use crate::keys::EncryptionKey;
use crate::mailbox::{InboxItem, MessageInfo, ReceiptInfo};
use crate::read::OpenedMessage;
use crate::send::Accepted;
use crate::util::{fmt_time_ms, handling_name, msg_id_hex, priority_name};

use super::term::{push_line, say, terminal_safe};

pub(crate) struct Out {
    json: bool,
}

fn line(v: Value) {
    println!("{v}");
}

fn message_json(m: &MessageInfo) -> Value {
    json!({
        "type": "message",
        "msg_id": msg_id_hex(&m.msg_id),
        "from": m.sender.to_string(),
        "to": m.recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created_at_ms": m.created_at_ms,
        "expires_at_ms": m.expires_at_ms,
        "received_at_ms": m.received_at_ms,
        "handling": handling_name(m.handling),
        "priority": priority_name(m.priority),
        "payload_size": m.payload_size,
        "payload_sha256": hex::encode(&m.payload_sha256),
        "mailbox_seq": m.mailbox_seq,
    })
}

fn receipt_json(r: &ReceiptInfo) -> Value {
    json!({
        "type": "receipt",
        "kind": r.kind(),
        "msg_id": msg_id_hex(&r.body.msg_id),
        "subject": r.body.subject,
        "original_sender": r.body.original_sender,
        "signer": r.body.signer,
        "at_ms": r.body.at_ms,
        "detail": r.body.detail,
        "payload_sha256": hex::encode(&r.body.payload_sha256),
        "verified": r.problem.is_none(),
        "problem": r.problem,
    })
}

/// One receipt line. An unverified receipt says so before any field its
/// sender controls, and the line is terminal-safe as a whole.
fn human_receipt(r: &ReceiptInfo) -> String {
    let mut s = format!(
        "receipt {}{:<9} {}  {}  by {}  at {}",
        if r.problem.is_some() { "UNVERIFIED " } else { "" },
        r.kind(),
        msg_id_hex(&r.body.msg_id),
        r.body.subject,
        r.body.signer,
        fmt_time_ms(r.body.at_ms)
    );
    if !r.body.detail.is_empty() {
        s.push_str(&format!("  ({})", r.body.detail));
    }
    if let Some(p) = &r.problem {
        s.push_str(&format!("  (not verified: {p})"));
    }
    terminal_safe(&s, false).into_owned()
}

/// The human text of an opened message: every line terminal-safe, the body
/// too but keeping its line breaks and tabs.
fn human_opened(o: &OpenedMessage) -> String {
    let c = &o.content;
    let mut out = String::new();
    let mut add = |l: String| push_line(&mut out, &l);
    add(format!(
        "Message:  {}  (signature, sender certificate and content verified)",
        msg_id_hex(&o.info.msg_id)
    ));
    add(format!("From:     {}", o.info.sender));
    add(format!(
        "To:       {}",
        o.info.recipients.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    ));
    add(format!("Date:     {}", fmt_time_ms(o.info.created_at_ms)));
    add(format!(
        "Handling: {}{}",
        handling_name(o.info.handling),
        if priority_name(o.info.priority) == "urgent" { "  URGENT" } else { "" }
    ));
    if !c.case_ref.is_empty() {
        add(format!("Case:     {}", c.case_ref));
    }
    if !c.reply_to_msg_id.is_empty() {
        add(format!("Reply to: {} from {}", hex::encode(&c.reply_to_msg_id), c.reply_to_sender));
    }
    if !c.handling_restrictions.is_empty() {
        add(format!("Restrictions: {}", c.handling_restrictions));
    }
    super::casework::opened_text(o, &mut out);
    push_line(&mut out, &format!("Subject:  {}", c.subject));
    out.push('\n');
    out.push_str(&terminal_safe(&c.body, true));
    out.push('\n');
    for a in &o.attachments {
        let l = match &a.path {
            Some(p) => format!(
                "attachment {} ({} bytes, sha256 {}) saved as {}",
                a.name,
                a.size,
                a.sha256,
                p.display()
            ),
            None => format!(
                "attachment {} ({} bytes, sha256 {}) verified, not saved (use --out DIR)",
                a.name, a.size, a.sha256
            ),
        };
        push_line(&mut out, &l);
    }
    out
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Out { json }
    }

    pub(crate) fn key_created(&self, k: &EncryptionKey) {
        if self.json {
            line(
                json!({"type": "key", "serial": k.serial, "public": hex::encode(k.public.0), "path": k.path}),
            );
        } else {
            println!("created encryption key serial {} ({})", k.serial, k.path.display());
            println!("publish it with: focal keys publish");
        }
    }

    pub(crate) fn keys(&self, keys: &[EncryptionKey]) {
        for k in keys {
            if self.json {
                line(json!({"type": "key", "serial": k.serial, "public": hex::encode(k.public.0),
                    "created_at_ms": k.created_at_ms, "path": k.path}));
            } else {
                println!(
                    "serial {:>3}  {}  created {}",
                    k.serial,
                    hex::encode(k.public.0),
                    fmt_time_ms(k.created_at_ms)
                );
            }
        }
        if keys.is_empty() && !self.json {
            println!("no keys yet: run `focal keys init`");
        }
    }

    pub(crate) fn keys_pruned(&self, removed: &[u32], kept: &[EncryptionKey]) {
        let kept: Vec<u32> = kept.iter().map(|k| k.serial).collect();
        if self.json {
            line(json!({"type": "keys_pruned", "removed": removed, "kept": kept}));
        } else if removed.is_empty() {
            println!("no key removed (kept serial(s) {kept:?})");
        } else {
            println!("removed key serial(s) {removed:?}; kept {kept:?}");
        }
    }

    pub(crate) fn entry(&self, e: &VerifiedEntry) {
        if self.json {
            line(json!({
                "type": "directory_entry",
                "address": e.address.to_string(),
                "x25519_public": hex::encode(e.x25519_public),
                "key_serial": e.body.key_serial,
                "not_before_ms": e.body.not_before_ms,
                "not_after_ms": e.body.not_after_ms,
                "law_enforcement": e.body.law_enforcement,
                "display_name": e.body.display_name,
                "verified": true,
            }));
        } else {
            println!("{}  (verified)", e.address);
            if !e.body.display_name.is_empty() {
                say!("  name:            {}", e.body.display_name);
            }
            println!("  encryption key:  {} (serial {})", hex::encode(e.x25519_public), e.body.key_serial);
            println!(
                "  valid:           {} .. {}",
                fmt_time_ms(e.body.not_before_ms),
                fmt_time_ms(e.body.not_after_ms)
            );
            println!("  law enforcement: {}", if e.body.law_enforcement { "yes" } else { "no" });
        }
    }

    pub(crate) fn published(&self, e: &VerifiedEntry) {
        if self.json {
            self.entry(e);
        } else {
            println!("published key serial {} for {}", e.body.key_serial, e.address);
        }
    }

    /// `asked`: the recipients the user named; the line lists every one it
    /// was sealed to and says which were added (escalation alternates).
    pub(crate) fn sent(&self, a: &Accepted, asked: &[Address]) {
        let asked: Vec<String> = asked.iter().map(ToString::to_string).collect();
        // A broadcast is shown as asked (its members are many); otherwise
        // every recipient, and the ones the user did not name are news.
        let broadcast = asked.iter().any(|a| Address::parse(a).is_ok_and(|a| a.is_broadcast()));
        let to = if broadcast { &asked } else { &a.to };
        let added: Vec<&String> =
            if broadcast { vec![] } else { to.iter().filter(|t| !asked.contains(t)).collect() };
        if !self.json && !added.is_empty() {
            say!(
                "also sealed to {} (escalation alternates from the directory)",
                added.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        if self.json {
            line(json!({
                "type": "accepted",
                "msg_id": msg_id_hex(&a.msg_id),
                "to": to,
                "accepted_at_ms": a.accepted_at_ms,
                "relay": a.relay,
                "audit_leaf_index": a.audit_leaf_index,
                "via_retry": a.via_retry,
            }));
        } else if a.accepted_at_ms > 0 {
            say!(
                "sent {} to {} (accepted by {} at {})",
                msg_id_hex(&a.msg_id),
                to.join(", "),
                a.relay,
                fmt_time_ms(a.accepted_at_ms)
            );
        } else {
            println!("sent {} to {} (accepted on an earlier attempt)", msg_id_hex(&a.msg_id), to.join(", "));
        }
    }

    pub(crate) fn inbox_item(&self, item: &InboxItem, follow: bool) {
        match item {
            InboxItem::Message(m) => {
                if self.json {
                    line(message_json(m));
                } else {
                    println!(
                        "{}  from {:<24} {}  {:>10} bytes  {}{}",
                        msg_id_hex(&m.msg_id),
                        m.sender.to_string(),
                        fmt_time_ms(m.created_at_ms),
                        m.payload_size,
                        handling_name(m.handling),
                        if priority_name(m.priority) == "urgent" { "  URGENT" } else { "" }
                    );
                }
            }
            InboxItem::Unreadable { mailbox_seq, reason } => {
                if self.json {
                    line(json!({"type": "unreadable", "mailbox_seq": mailbox_seq, "reason": reason}));
                } else {
                    say!("(message #{mailbox_seq} has an unreadable header: {reason})");
                }
            }
            InboxItem::Receipt(r) => {
                if self.json {
                    line(receipt_json(r));
                } else {
                    println!("{}", human_receipt(r));
                }
            }
            InboxItem::ReplayDone => {
                if follow {
                    if self.json {
                        line(json!({"type": "replay_done"}));
                    } else {
                        eprintln!("-- waiting for new messages (Ctrl-C to stop) --");
                    }
                }
            }
        }
    }

    pub(crate) fn inbox_end(&self, count: usize) {
        if !self.json && count == 0 {
            println!("no messages waiting");
        }
    }

    pub(crate) fn opened(&self, o: &OpenedMessage) {
        let c = &o.content;
        if self.json {
            let mut v = json!({
                "type": "opened",
                "msg_id": msg_id_hex(&o.info.msg_id),
                "from": o.info.sender.to_string(),
                "to": o.info.recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "created_at_ms": o.info.created_at_ms,
                "expires_at_ms": o.info.expires_at_ms,
                "handling": handling_name(o.info.handling),
                "priority": priority_name(o.info.priority),
                "subject": c.subject,
                "body": c.body,
                "case_ref": c.case_ref,
                "reply_to_msg_id": hex::encode(&c.reply_to_msg_id),
                "reply_to_sender": c.reply_to_sender,
                "handling_restrictions": c.handling_restrictions,
                "payload_sha256": hex::encode(&o.info.payload_sha256),
                "attachments": o.attachments.iter().map(|a| json!({
                    "name": a.name, "size": a.size, "sha256": a.sha256,
                    "media_type": a.media_type, "path": a.path,
                })).collect::<Vec<_>>(),
                "resumed": o.resumed,
                "verified": true,
            });
            super::casework::opened_json(o, &mut v);
            line(v);
            return;
        }
        print!("{}", human_opened(o));
    }

    pub(crate) fn acked(&self, m: &MessageRef) {
        if self.json {
            line(json!({"type": "acked", "msg_id": msg_id_hex(&m.msg_id), "from": m.sender.to_string()}));
        } else {
            println!(
                "acknowledged {} from {}: a signed delivery receipt goes back to the sender",
                msg_id_hex(&m.msg_id),
                m.sender
            );
        }
    }

    pub(crate) fn receipts(&self, rs: &[ReceiptInfo]) {
        for r in rs {
            if self.json {
                line(receipt_json(r));
            } else {
                println!("{}", human_receipt(r));
            }
        }
        if rs.is_empty() && !self.json {
            println!("no receipts");
        }
    }
}

#[cfg(test)]
mod tests {
    use focal_proto::pb;

    use super::*;
    use crate::read::SavedAttachment;

    fn opened(body: &str, attachment: &str) -> OpenedMessage {
        let sender = Address::parse("nl-fiod@carin").unwrap();
        OpenedMessage {
            info: MessageInfo {
                msg_id: [7; 16],
                sender: sender.clone(),
                recipients: vec![Address::parse("be-ocsc@carin").unwrap()],
                created_at_ms: 1_700_000_000_000,
                expires_at_ms: 0,
                handling: pb::HandlingCode::H3 as i32,
                priority: 0,
                payload_size: 1,
                payload_sha256: vec![0; 32],
                received_at_ms: 0,
                mailbox_seq: 1,
                header: pb::EnvelopeHeader::default(),
            },
            content: pb::Content {
                subject: "Zoë \x1b]0;pwned\x07".into(),
                body: body.into(),
                case_ref: "CARIN-7\u{9b}2J".into(),
                handling_restrictions: "none\x1b[8m".into(),
                request: Some(pb::RequestFields {
                    requesting_authority: "FIOD\r".into(),
                    assets_sought: vec!["yacht\u{202E}eulB".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            attachments: vec![SavedAttachment {
                name: attachment.into(),
                size: 3,
                sha256: "ab".into(),
                media_type: String::new(),
                path: None,
            }],
            resumed: 0,
        }
    }

    #[test]
    fn opened_message_prints_remote_escapes_inert() {
        let body = "Dear colleague,\n\x1b[8A\x1b[2KFrom:     director@gfp\n\tregards";
        let text = human_opened(&opened(body, "invoice\u{202E}fdp.exe"));
        let bad =
            |c: char| (c.is_control() && !matches!(c, '\n' | '\t')) || ('\u{202A}'..='\u{202E}').contains(&c);
        assert!(!text.chars().any(bad), "{text:?}");
        assert!(text.contains("From:     nl-fiod@carin\n"), "{text}");
        assert!(text.contains("\n\\x1b[8A\\x1b[2KFrom:     director@gfp\n"), "{text}");
        assert!(
            text.contains("Dear colleague,\n") && text.contains("\n\tregards\n"),
            "body breaks kept: {text}"
        );
        assert!(text.contains("Subject:  Zoë \\x1b]0;pwned\\x07\n"), "{text}");
        assert!(text.contains("Case:     CARIN-7U+009B2J\n"), "{text}");
        assert!(text.contains("H3: restrictions stated by the originator: none\\x1b[8m\n"), "{text}");
        assert!(text.contains("Requesting authority: FIOD\\r\n"), "{text}");
        assert!(text.contains("Asset sought:         yachtU+202EeulB\n"), "{text}");
        assert!(text.contains("attachment invoiceU+202Efdp.exe (3 bytes"), "{text}");
    }

    #[test]
    fn unverified_receipt_says_so_before_remote_text() {
        let r = ReceiptInfo {
            body: pb::ReceiptBody {
                msg_id: vec![7; 16],
                subject: "be-ocsc@carin".into(),
                signer: "be-ocsc@carin".into(),
                kind: pb::ReceiptKind::Delivered as i32,
                detail: "\x1b[8m".into(),
                ..Default::default()
            },
            signer: None,
            problem: Some("bad signature".into()),
            body_sha256: [0; 32],
        };
        let line = human_receipt(&r);
        assert!(line.starts_with("receipt UNVERIFIED DELIVERED "), "{line}");
        assert!(line.contains("(\\x1b[8m)  (not verified: bad signature)"), "{line}");
        assert!(!line.contains('\x1b'), "{line}");
    }
}
