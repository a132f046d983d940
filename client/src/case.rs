//! Case work on the client side, without I/O: names of message kinds, the
//! structured request fields given on the command line (`--subject-of
//! NAME[:ID,ID]`, `--deadline`, `--respond-within`), and the views built from
//! the local store: a case thread (`focal case REF`: sent and received
//! messages of one case reference in time order with their reply links) and
//! overdue requests (`focal overdue`: sent messages whose response deadline
//! has passed without a reply from any of their recipients).
//!
//! The store keeps metadata only, so a thread shows subjects, kinds, parties
//! and links, not bodies; a message appears in it once it was sent from, or
//! read (`focal read`) on, this client.

use focal_proto::pb;
use serde::Serialize;

use crate::error::{ClientError, Result};
use crate::store::{LocalStore, ReceivedRecord, SentRecord};

/// The command-line name of a kind (`general`, `asset-tracing`, ...).
pub fn kind_name(k: pb::MessageKind) -> &'static str {
    use pb::MessageKind as K;
    match k {
        K::Unspecified | K::General => "general",
        K::AssetTracingRequest => "asset-tracing",
        K::FreezingRequest => "freezing",
        K::SpontaneousDisclosure => "disclosure",
        K::PreMlaConsultation => "pre-mla",
        K::CaseCoordination => "coordination",
        K::Response => "response",
    }
}

/// A human label of a kind (for `focal read`).
pub fn kind_label(k: pb::MessageKind) -> &'static str {
    use pb::MessageKind as K;
    match k {
        K::Unspecified | K::General => "general message",
        K::AssetTracingRequest => "asset-tracing request",
        K::FreezingRequest => "freezing / seizure request",
        K::SpontaneousDisclosure => "spontaneous disclosure (UNCAC art. 56)",
        K::PreMlaConsultation => "pre-MLA consultation",
        K::CaseCoordination => "case coordination",
        K::Response => "response",
    }
}

/// Parses a kind from its command-line name.
pub fn parse_kind(s: &str) -> Result<pb::MessageKind> {
    use pb::MessageKind as K;
    Ok(match s {
        "general" => K::General,
        "asset-tracing" => K::AssetTracingRequest,
        "freezing" => K::FreezingRequest,
        "disclosure" => K::SpontaneousDisclosure,
        "pre-mla" => K::PreMlaConsultation,
        "coordination" => K::CaseCoordination,
        "response" => K::Response,
        _ => {
            return Err(ClientError::invalid(
                "kind",
                format!(
                    "{s:?}: expected general, asset-tracing, freezing, disclosure, pre-mla, coordination or response"
                ),
            ));
        }
    })
}

/// True for the kinds that ask for something (and so may carry request
/// fields and a response deadline).
pub fn is_request(k: pb::MessageKind) -> bool {
    use pb::MessageKind as K;
    matches!(k, K::AssetTracingRequest | K::FreezingRequest | K::PreMlaConsultation)
}

/// Parses `NAME[:ID,ID...]` (a subject of a request and its identifiers).
pub fn parse_subject_of(s: &str) -> Result<pb::SubjectOfRequest> {
    let (name, ids) = match s.split_once(':') {
        Some((n, ids)) => (n, ids.split(',').map(str::trim).filter(|i| !i.is_empty()).collect()),
        None => (s, Vec::new()),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(ClientError::invalid("subject-of", format!("{s:?}: the name is empty (NAME[:ID,ID])")));
    }
    Ok(pb::SubjectOfRequest {
        name: name.to_owned(),
        identifiers: ids.into_iter().map(String::from).collect(),
    })
}

/// Parses a date `YYYY-MM-DD` as the END of that day, UTC, in unix ms.
pub fn parse_deadline(s: &str) -> Result<i64> {
    let bad = || ClientError::invalid("deadline", format!("{s:?}: expected a date YYYY-MM-DD"));
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
        return Err(bad());
    }
    let y: i64 = parts[0].parse().map_err(|_| bad())?;
    let m: i64 = parts[1].parse().map_err(|_| bad())?;
    let d: i64 = parts[2].parse().map_err(|_| bad())?;
    let mdays = [
        31,
        if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > mdays[(m - 1) as usize] {
        return Err(bad());
    }
    Ok((days_from_civil(y, m, d) + 1) * 86_400_000 - 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The draft of a reply to `original`, a message read earlier on this
/// client (`focal reply` and the console's reply form): to its sender (and,
/// with `all`, its other recipients except `me`), subject `Re: …`, kind
/// response, the original's case reference and handling code.
pub fn reply_draft(
    store: &LocalStore,
    me: &focal_proto::Address,
    original: crate::client::MessageRef,
    all: bool,
    body: String,
) -> Result<crate::send::Draft> {
    let rec =
        store.received(&hex::encode(original.msg_id), &original.sender.to_string())?.ok_or_else(|| {
            ClientError::NotFound {
                what: "read message (run `focal read` before replying)",
                id: hex::encode(original.msg_id),
            }
        })?;
    let mut to = vec![original.sender.clone()];
    if all {
        for r in &rec.to {
            let addr = focal_proto::Address::parse(r)?;
            if &addr != me {
                to.push(addr);
            }
        }
    }
    let subject =
        if rec.subject.starts_with("Re: ") { rec.subject.clone() } else { format!("Re: {}", rec.subject) };
    let mut draft = crate::send::Draft::new(to, subject, body);
    draft.kind = pb::MessageKind::Response;
    draft.case_ref = rec.case_ref.clone();
    draft.reply_to = Some(original);
    draft.handling = crate::util::parse_handling(&rec.handling).unwrap_or(draft.handling);
    Ok(draft)
}

/// One message of a case thread.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ThreadEntry {
    /// `sent` or `received`.
    pub direction: &'static str,
    /// Message id (hex).
    pub msg_id: String,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Kind name.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Handling code.
    pub handling: String,
    /// Created (unix ms, sender clock).
    pub created_at_ms: i64,
    /// The message it answers (hex id), if any.
    pub reply_to_msg_id: String,
    /// Response wanted by (unix ms; 0 = none).
    pub response_deadline_ms: i64,
}

/// The thread of case `case_ref`: every sent and read message with that
/// reference, plus replies (any reference) to a message of the thread, in
/// time order (ties by message id).
pub fn thread(store: &LocalStore, me: &str, case_ref: &str) -> Result<Vec<ThreadEntry>> {
    let sent = store.all_sent()?;
    let received = store.all_received()?;
    Ok(thread_of(me, case_ref, &sent, &received))
}

/// [`thread`] over records (no I/O).
pub fn thread_of(
    me: &str,
    case_ref: &str,
    sent: &[SentRecord],
    received: &[ReceivedRecord],
) -> Vec<ThreadEntry> {
    let mut all: Vec<(String, ThreadEntry)> = Vec::new();
    for s in sent {
        all.push((
            s.case_ref.clone(),
            ThreadEntry {
                direction: "sent",
                msg_id: s.msg_id.clone(),
                from: me.to_owned(),
                to: s.to.clone(),
                kind: if s.kind.is_empty() { "general".into() } else { s.kind.clone() },
                subject: s.subject.clone(),
                handling: s.handling.clone(),
                created_at_ms: s.created_at_ms,
                reply_to_msg_id: s.reply_to_msg_id.clone(),
                response_deadline_ms: s.response_deadline_ms,
            },
        ));
    }
    for r in received {
        all.push((
            r.case_ref.clone(),
            ThreadEntry {
                direction: "received",
                msg_id: r.msg_id.clone(),
                from: r.from.clone(),
                to: r.to.clone(),
                kind: if r.kind.is_empty() { "general".into() } else { r.kind.clone() },
                subject: r.subject.clone(),
                handling: r.handling.clone(),
                created_at_ms: r.created_at_ms,
                reply_to_msg_id: r.reply_to_msg_id.clone(),
                response_deadline_ms: r.response_deadline_ms,
            },
        ));
    }
    let mut ids: std::collections::BTreeSet<String> =
        all.iter().filter(|(c, _)| c == case_ref).map(|(_, e)| e.msg_id.clone()).collect();
    // Replies without the reference (e.g. from an older client) join through their link.
    loop {
        let before = ids.len();
        for (_, e) in &all {
            if !e.reply_to_msg_id.is_empty() && ids.contains(&e.reply_to_msg_id) {
                ids.insert(e.msg_id.clone());
            }
        }
        if ids.len() == before {
            break;
        }
    }
    let mut out: Vec<ThreadEntry> = Vec::new();
    for (_, e) in all {
        if ids.contains(&e.msg_id) && !out.iter().any(|o| o.msg_id == e.msg_id && o.from == e.from) {
            out.push(e);
        }
    }
    out.sort_by(|a, b| (a.created_at_ms, &a.msg_id).cmp(&(b.created_at_ms, &b.msg_id)));
    out
}

/// A sent request whose response deadline has passed without a reply.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Overdue {
    /// The request as sent.
    pub msg_id: String,
    /// Case reference.
    pub case_ref: String,
    /// Kind name.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Recipients that have not replied (in the local store).
    pub waiting_for: Vec<String>,
    /// The deadline (unix ms).
    pub deadline_ms: i64,
    /// How late, in ms.
    pub late_by_ms: i64,
}

/// Sent messages with a response deadline before `now_ms` that no recipient
/// has answered (a read message whose reply link names it). A request to
/// several recipients stays overdue while any of them has not replied.
pub fn overdue(store: &LocalStore, now_ms: i64) -> Result<Vec<Overdue>> {
    Ok(overdue_of(&store.all_sent()?, &store.all_received()?, now_ms))
}

/// [`overdue`] over records (no I/O).
pub fn overdue_of(sent: &[SentRecord], received: &[ReceivedRecord], now_ms: i64) -> Vec<Overdue> {
    let mut out = Vec::new();
    for s in sent {
        if s.response_deadline_ms == 0 || s.response_deadline_ms >= now_ms {
            continue;
        }
        let waiting: Vec<String> =
            s.to.iter()
                .filter(|r| !received.iter().any(|m| &m.from == *r && m.reply_to_msg_id == s.msg_id))
                .cloned()
                .collect();
        if waiting.is_empty() {
            continue;
        }
        out.push(Overdue {
            msg_id: s.msg_id.clone(),
            case_ref: s.case_ref.clone(),
            kind: s.kind.clone(),
            subject: s.subject.clone(),
            waiting_for: waiting,
            deadline_ms: s.response_deadline_ms,
            late_by_ms: now_ms - s.response_deadline_ms,
        });
    }
    out.sort_by_key(|o| o.deadline_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(id: &str, case: &str, to: &[&str], at: i64, deadline: i64) -> SentRecord {
        SentRecord {
            msg_id: id.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            subject: format!("s{id}"),
            case_ref: case.into(),
            reply_to_msg_id: String::new(),
            reply_to_sender: String::new(),
            handling: "H1".into(),
            created_at_ms: at,
            expires_at_ms: at + 1000,
            accepted_at_ms: at,
            relay: "r".into(),
            payload_sha256: String::new(),
            payload_size: 1,
            attachments: vec![],
            kind: "asset-tracing".into(),
            response_deadline_ms: deadline,
            forward_of: String::new(),
        }
    }

    fn recv(id: &str, from: &str, case: &str, reply_to: &str, at: i64) -> ReceivedRecord {
        ReceivedRecord {
            msg_id: id.into(),
            from: from.into(),
            to: vec!["me@carin".into()],
            subject: format!("s{id}"),
            case_ref: case.into(),
            reply_to_msg_id: reply_to.into(),
            reply_to_sender: "me@carin".into(),
            handling: "H1".into(),
            created_at_ms: at,
            read_at_ms: at,
            payload_sha256: String::new(),
            attachments: vec![],
            acked: false,
            kind: "response".into(),
            response_deadline_ms: 0,
        }
    }

    #[test]
    fn thread_orders_and_follows_reply_links() {
        let s = vec![sent("01", "C-1", &["a@arinsa"], 10, 0), sent("02", "OTHER", &["b@gfp"], 5, 0)];
        let r = vec![recv("03", "a@arinsa", "", "01", 30), recv("04", "b@gfp", "C-1", "", 20)];
        let t = thread_of("me@carin", "C-1", &s, &r);
        let ids: Vec<&str> = t.iter().map(|e| e.msg_id.as_str()).collect();
        assert_eq!(ids, ["01", "04", "03"]);
        assert_eq!(t[2].reply_to_msg_id, "01");
        assert_eq!(t[0].direction, "sent");
    }

    #[test]
    fn overdue_until_every_recipient_replied() {
        let s = vec![
            sent("01", "C", &["a@arinsa", "b@gfp"], 0, 100),
            sent("02", "C", &["a@arinsa"], 0, 1000),
            sent("03", "C", &["a@arinsa"], 0, 0),
        ];
        let r = vec![recv("09", "a@arinsa", "C", "01", 50)];
        let o = overdue_of(&s, &r, 500);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].msg_id.as_str(), o[0].waiting_for.clone()), ("01", vec!["b@gfp".to_string()]));
        assert_eq!(o[0].late_by_ms, 400);
        let r2 = vec![r[0].clone(), recv("10", "b@gfp", "C", "01", 60)];
        assert!(overdue_of(&s, &r2, 500).is_empty());
    }

    #[test]
    fn fields_parse() {
        let s = parse_subject_of("Blue Yacht BV: NL-KVK-123, IBAN NL91").unwrap();
        assert_eq!(s.name, "Blue Yacht BV");
        assert_eq!(s.identifiers, ["NL-KVK-123", "IBAN NL91"]);
        assert!(parse_subject_of(":x").is_err());
        assert_eq!(parse_deadline("1970-01-01").unwrap(), 86_400_000 - 1);
        assert_eq!(parse_deadline("2026-12-01").unwrap(), 1_796_169_600_000 - 1);
        assert!(parse_deadline("2026-02-30").is_err());
        assert!(parse_deadline("tomorrow").is_err());
        for k in ["general", "asset-tracing", "freezing", "disclosure", "pre-mla", "coordination", "response"]
        {
            assert_eq!(kind_name(parse_kind(k).unwrap()), k);
        }
    }
}
