//! Output and helpers of the case-work commands: the kind, request fields
//! and handling notes of an opened message (`focal read`), a case thread
//! (`focal case`), overdue requests (`focal overdue`), and the structured
//! request fields given to `focal send`.

use focal_proto::{envelope, pb};
use serde_json::{Value, json};

use super::args::RequestArgs;
use super::term::{push_line, say};
use crate::case::{Overdue, ThreadEntry, kind_label, kind_name};
use crate::read::OpenedMessage;
use crate::util::{fmt_time_ms, handling_name, now_ms};

/// The request fields and response deadline given on the command line
/// (None when no field was given).
pub(crate) fn request_fields(a: &RequestArgs) -> (Option<pb::RequestFields>, i64) {
    let deadline = match (a.deadline, a.respond_within) {
        (Some(d), _) => d,
        (None, Some(w)) => crate::util::ms_after(now_ms(), w),
        (None, None) => 0,
    };
    let r = pb::RequestFields {
        requesting_authority: a.authority.clone(),
        legal_basis: a.legal_basis.clone(),
        subjects: a.subjects.clone(),
        assets_sought: a.assets.clone(),
        jurisdictions: a.jurisdictions.clone(),
        deadline_ms: deadline,
    };
    let empty = r == pb::RequestFields::default();
    ((!empty).then_some(r), deadline)
}

fn request_json(r: &pb::RequestFields) -> Value {
    json!({
        "requesting_authority": r.requesting_authority,
        "legal_basis": r.legal_basis,
        "subjects": r.subjects.iter().map(|s| json!({"name": s.name, "identifiers": s.identifiers})).collect::<Vec<_>>(),
        "assets_sought": r.assets_sought,
        "jurisdictions": r.jurisdictions,
        "deadline_ms": r.deadline_ms,
    })
}

/// What the handling code asks of the recipient, in words.
pub(crate) fn handling_note(h: i32, restrictions: &str) -> Option<String> {
    match pb::HandlingCode::try_from(h).ok()? {
        pb::HandlingCode::H0 => Some("H0: for law-enforcement members only".into()),
        pb::HandlingCode::H1 => Some("H1: not to be used as evidence without the originator's permission".into()),
        pb::HandlingCode::H2 => Some(
            "H2: no onward sending outside your network without a release signed by the originator (relays enforce this)"
                .into(),
        ),
        pb::HandlingCode::H3 => Some(format!(
            "H3: restrictions stated by the originator: {}",
            if restrictions.is_empty() { "(none stated)" } else { restrictions }
        )),
        pb::HandlingCode::Unspecified => None,
    }
}

/// Extra JSON fields of an opened message (kind, request, deadline, forward, broadcast).
pub(crate) fn opened_json(o: &OpenedMessage, v: &mut Value) {
    let c = &o.content;
    let ctx = envelope::parse_context(&o.info.header.context).ok();
    let fwd = ctx.as_ref().and_then(|c| c.ctx.forward_of.clone());
    let obj = v.as_object_mut().expect("object");
    obj.insert("kind".into(), json!(kind_name(c.kind())));
    obj.insert("request".into(), c.request.as_ref().map_or(Value::Null, request_json));
    obj.insert("response_deadline_ms".into(), json!(c.response_deadline_ms));
    obj.insert("handling_note".into(), json!(handling_note(o.info.handling, &c.handling_restrictions)));
    obj.insert(
        "forward_of".into(),
        fwd.map_or(Value::Null, |f| {
            json!({"original_msg_id": hex::encode(&f.original_msg_id), "original_sender": f.original_sender,
                   "original_handling": handling_name(f.original_handling), "released": f.release.is_some()})
        }),
    );
    obj.insert("broadcast_network".into(), json!(ctx.map(|c| c.ctx.broadcast_network).unwrap_or_default()));
}

/// Extra human lines of an opened message (before the subject), appended
/// to `out` terminal-safe.
pub(crate) fn opened_text(o: &OpenedMessage, out: &mut String) {
    let c = &o.content;
    let mut add = |l: String| push_line(out, &l);
    add(format!("Kind:     {}", kind_label(c.kind())));
    if let Some(note) = handling_note(o.info.handling, &c.handling_restrictions) {
        add(format!("Note:     {note}"));
    }
    if let Ok(ctx) = envelope::parse_context(&o.info.header.context) {
        if let Some(f) = &ctx.ctx.forward_of {
            add(format!(
                "Forwards: {} from {} ({}{})",
                hex::encode(&f.original_msg_id),
                f.original_sender,
                handling_name(f.original_handling),
                if f.release.is_some() { ", released by the originator" } else { "" }
            ));
        }
        if !ctx.ctx.broadcast_network.is_empty() {
            add(format!("Broadcast to every member of {}", ctx.ctx.broadcast_network));
        }
    }
    if let Some(r) = &c.request {
        if !r.requesting_authority.is_empty() {
            add(format!("Requesting authority: {}", r.requesting_authority));
        }
        if !r.legal_basis.is_empty() {
            add(format!("Legal basis:          {}", r.legal_basis));
        }
        for s in &r.subjects {
            if s.identifiers.is_empty() {
                add(format!("Subject of request:   {}", s.name));
            } else {
                add(format!("Subject of request:   {} ({})", s.name, s.identifiers.join(", ")));
            }
        }
        for a in &r.assets_sought {
            add(format!("Asset sought:         {a}"));
        }
        if !r.jurisdictions.is_empty() {
            add(format!("Jurisdictions:        {}", r.jurisdictions.join(", ")));
        }
    }
    if c.response_deadline_ms != 0 {
        let late = if c.response_deadline_ms < now_ms() { "  (PASSED)" } else { "" };
        add(format!("Respond by: {}{late}", fmt_time_ms(c.response_deadline_ms)));
    }
}

/// `focal case REF`.
pub(crate) fn thread(json_out: bool, case_ref: &str, t: &[ThreadEntry]) {
    if json_out {
        for e in t {
            let mut v = serde_json::to_value(e).expect("serialises");
            v.as_object_mut().expect("object").insert("type".into(), json!("thread_entry"));
            v.as_object_mut().expect("object").insert("case_ref".into(), json!(case_ref));
            println!("{v}");
        }
        return;
    }
    if t.is_empty() {
        say!("no messages of case {case_ref} in the local store");
        return;
    }
    say!("Case {case_ref}: {} message(s)", t.len());
    for e in t {
        let arrow = if e.direction == "sent" { "->" } else { "<-" };
        say!(
            "{}  {}  {} {} {}  [{} {}]  {}",
            fmt_time_ms(e.created_at_ms),
            e.msg_id,
            e.from,
            arrow,
            e.to.join(", "),
            e.kind,
            e.handling,
            e.subject
        );
        if !e.reply_to_msg_id.is_empty() {
            println!("    in reply to {}", e.reply_to_msg_id);
        }
        if e.response_deadline_ms != 0 {
            println!("    respond by {}", fmt_time_ms(e.response_deadline_ms));
        }
    }
}

/// `focal overdue`.
pub(crate) fn overdue(json_out: bool, o: &[Overdue]) {
    if json_out {
        for e in o {
            let mut v = serde_json::to_value(e).expect("serialises");
            v.as_object_mut().expect("object").insert("type".into(), json!("overdue"));
            println!("{v}");
        }
        return;
    }
    if o.is_empty() {
        println!("no overdue requests");
        return;
    }
    for e in o {
        say!(
            "OVERDUE {}  case {}  [{}]  {}  due {}  ({} h late)  waiting for {}",
            e.msg_id,
            if e.case_ref.is_empty() { "-" } else { &e.case_ref },
            e.kind,
            e.subject,
            fmt_time_ms(e.deadline_ms),
            e.late_by_ms / 3_600_000,
            e.waiting_for.join(", ")
        );
    }
}
