//! What the demo prints: the route of each message (the hops the relays
//! wrote into its header, with times), the receipts that came back (kind,
//! signer, verified), and each relay's own view of it: its audit trail for
//! that msg id, fetched by that network's auditor through the Audit service,
//! verified against the signed checkpoint, then traced with
//! `focal_client::audit::trace` — the same code as `focal audit fetch` and
//! `focal audit trace`.
//!
//! The demo takes each log's verifier key from the relay it has just started
//! (`GetLogInfo`); a real auditor holds the key out of band.

use std::fmt::Write as _;
use std::path::PathBuf;

use focal_client::audit::{TraceEvent, fetch, trace};
use focal_proto::pb;

use super::exchange::{Leg, connect};
use super::setup::DemoFederation;
use super::{DemoError, within};

/// The audit records of the demo's messages, per relay.
pub struct AuditViews {
    /// (relay name, log directory, log size) for every relay.
    pub logs: Vec<(String, PathBuf, u64)>,
    dirs: Vec<PathBuf>,
}

/// Fetches and verifies every relay's audit log into `<dir>/audit/<net>/`.
pub async fn fetch_logs(fed: &DemoFederation) -> Result<AuditViews, DemoError> {
    let mut logs = Vec::new();
    let mut dirs = Vec::new();
    for (relay, auditor) in fed.relays.iter().zip(&fed.auditors) {
        let step = format!("fetching the audit log of {} as {}", relay.name, auditor.address);
        let client = connect(auditor).await?;
        let mut audit = client.audit();
        let dir = fed.dir.join("audit").join(relay.network.id.as_str());
        let report = within(&step, async {
            let info = audit
                .get_log_info(pb::GetCheckpointRequest { fresh: true })
                .await
                .map_err(|s| DemoError::new(&step, format!("{}: {}", s.code(), s.message())))?
                .into_inner();
            fetch(&mut audit, &dir, &info.verifier_key).await.map_err(|e| DemoError::new(&step, e))
        })
        .await?;
        logs.push((relay.name.clone(), dir.clone(), report.new_size));
        dirs.push(dir);
    }
    Ok(AuditViews { logs, dirs })
}

impl AuditViews {
    /// Every record of `msg_id`, in route order.
    pub fn trace(&self, msg_id: &[u8; 16]) -> Result<Vec<TraceEvent>, DemoError> {
        trace(&self.dirs, msg_id).map_err(|e| DemoError::new(format!("tracing {}", hex::encode(msg_id)), e))
    }
}

/// `hh:mm:ss.mmm` UTC of a unix-ms time.
pub fn clock(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (day_ms / 3_600_000, day_ms / 60_000 % 60, day_ms / 1000 % 60, day_ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

fn since(ms: i64, start: i64) -> String {
    format!("+{} ms", ms - start)
}

/// `carin -> gfp -> arinsa`: the networks of the header's hops, else of
/// the audit trace in hop order.
pub fn route_line(leg: &Leg, events: &[TraceEvent]) -> String {
    let mut nets: Vec<String> = leg.hops.iter().map(|h| h.network.clone()).collect();
    if nets.is_empty() {
        for e in events {
            let net = e.log.split('/').nth(1).unwrap_or(&e.log).to_owned();
            if nets.last() != Some(&net) {
                nets.push(net);
            }
        }
    }
    nets.join(" -> ")
}

fn kind_name(kind: i32) -> String {
    pb::AuditKind::try_from(kind)
        .map(|k| k.as_str_name().trim_start_matches("AUDIT_KIND_").to_owned())
        .unwrap_or_else(|_| format!("kind {kind}"))
}

/// The text block for one leg.
pub fn leg_report(title: &str, leg: &Leg, events: &[TraceEvent], views: &AuditViews) -> String {
    let mut out = String::new();
    let id = hex::encode(leg.msg_id);
    let _ = writeln!(out, "{title}: {} -> {}", leg.from, leg.to);
    let _ = writeln!(out, "  msg id   {id}");
    let _ = writeln!(out, "  subject  \"{}\" (sealed; read by the recipient only)", leg.subject);
    let _ = writeln!(out, "  route    {}", route_line(leg, events));
    let start = leg.started_ms;
    let _ = writeln!(out, "  hops (times by each relay's clock, from the moment of sending):");
    let _ =
        writeln!(out, "    sent      {:<22} {}  {}", leg.from.to_string(), clock(start), since(start, start));
    for (i, h) in leg.hops.iter().enumerate() {
        let _ = writeln!(
            out,
            "    hop {i}     {:<22} {}  {}",
            format!("{} ({})", h.relay, h.network),
            clock(h.at_ms),
            since(h.at_ms, start)
        );
    }
    if leg.hops.is_empty() {
        let _ = writeln!(out, "    (the relays wrote no hops into the header)");
    }
    let _ = writeln!(
        out,
        "    mailbox   {:<22} {}  {}",
        leg.to.to_string(),
        clock(leg.received_at_ms),
        since(leg.received_at_ms, start)
    );
    let _ = writeln!(
        out,
        "    opened    {:<22} {}  {}",
        leg.to.to_string(),
        clock(leg.opened_ms),
        since(leg.opened_ms, start)
    );
    let _ = writeln!(
        out,
        "    receipt   {:<22} {}  {}",
        leg.from.to_string(),
        clock(leg.receipt_ms),
        since(leg.receipt_ms, start)
    );
    let _ = writeln!(out, "  receipts:");
    for r in &leg.receipts {
        let status = match &r.problem {
            None => "signature and certificate verified".to_owned(),
            Some(p) => format!("NOT VERIFIED: {p}"),
        };
        let _ = writeln!(out, "    {:<10} signed by {}  ({status})", r.kind(), r.body.signer);
    }
    let _ = writeln!(out, "  each relay's view (its audit log, in log order, records for this msg id):");
    let mut absent = Vec::new();
    // Relays in route order: by the hop of each relay's first record.
    let mut order: Vec<&(String, PathBuf, u64)> = views.logs.iter().collect();
    order.sort_by_key(|(_, dir, _)| {
        events
            .iter()
            .filter(|e| &e.dir == dir)
            .min_by_key(|e| e.index)
            .map_or((u32::MAX, 0), |e| (e.record.hop, e.record.time_ms))
    });
    for (relay, dir, _) in order {
        let mut mine: Vec<&TraceEvent> = events.iter().filter(|e| &e.dir == dir).collect();
        if mine.is_empty() {
            absent.push(relay.as_str());
            continue;
        }
        mine.sort_by_key(|e| e.index);
        for (i, e) in mine.iter().enumerate() {
            let r = &e.record;
            let label = if i == 0 { relay.as_str() } else { "" };
            let peer = if r.peer.is_empty() { String::new() } else { format!("  peer {}", r.peer) };
            let _ = writeln!(
                out,
                "    {label:<18} #{:<4} {}  {:<10} hop {}{peer}",
                e.index,
                clock(r.time_ms),
                kind_name(r.kind),
                r.hop
            );
        }
    }
    if !absent.is_empty() {
        let _ = writeln!(out, "    not on the route (no record): {}", absent.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00.000");
        assert_eq!(clock(86_400_000 + 3_723_004), "01:02:03.004");
    }
}
