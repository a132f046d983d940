//! Reading a fetched log for people: `trace` (every event of one message,
//! across several networks' logs), `export` (JSON lines or CSV) and `stats`
//! (records per kind, messages per peer, refusals by reason, per day).
//! These read the accepted entries as stored (up to the checkpoint in
//! `state.json`, nothing a fetch left beyond it); run `verify` first to
//! trust them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use focal_proto::ProtoError;
use focal_proto::audit::{decode_record, kind_name};
use focal_proto::pb;

use super::AuditError;
use super::dir;

/// Calls `f` with every accepted record of the log in `dir`, in order: the
/// entries up to the checkpoint recorded in `state.json`, never the bytes a
/// fetch left beyond it ([`super::left_over_bytes`]).
fn for_each_record(
    dir: &Path,
    mut f: impl FnMut(u64, pb::AuditRecord) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    dir::for_each_accepted(dir, |e| {
        let rec = decode_record(&e.leaf)
            .map_err(|err| ProtoError::AuditLeafMalformed { index: e.index, detail: err.to_string() })?;
        f(e.index, rec)
    })
}

/// Parses a message id given as 32 hex digits.
pub fn parse_msg_id(s: &str) -> Result<[u8; 16], AuditError> {
    let b =
        hex::decode(s.trim()).map_err(|e| AuditError::Invalid(format!("msg id {s:?} is not hex: {e}")))?;
    b.try_into()
        .map_err(|b: Vec<u8>| AuditError::Invalid(format!("msg id {s:?} has {} bytes, expected 16", b.len())))
}

/// `YYYY-MM-DD` and `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in milliseconds (UTC).
fn utc(ms: i64) -> (String, String) {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let day = format!("{y:04}-{m:02}-{d:02}");
    let time =
        format!("{day}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000));
    (day, time)
}

fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase().replace('_', "-")
}

fn handling(code: i32) -> String {
    pb::HandlingCode::try_from(code)
        .map_or_else(|_| code.to_string(), |h| enum_name(h.as_str_name(), "HANDLING_CODE_").to_uppercase())
}

fn reason(code: i32) -> String {
    pb::RefusalReason::try_from(code)
        .map_or_else(|_| code.to_string(), |r| enum_name(r.as_str_name(), "REFUSAL_REASON_"))
}

fn priority(code: i32) -> String {
    pb::Priority::try_from(code)
        .map_or_else(|_| code.to_string(), |p| enum_name(p.as_str_name(), "PRIORITY_"))
}

/// One event of a traced message.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    /// Origin of the log holding it (names the network's relay).
    pub log: String,
    /// Directory it was read from.
    pub dir: PathBuf,
    /// Leaf index in that log.
    pub index: u64,
    /// The record.
    pub record: pb::AuditRecord,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        write!(f, "{}  {}#{}  {} hop {}", utc(r.time_ms).1, self.log, self.index, kind_name(r.kind), r.hop)?;
        if !r.peer.is_empty() {
            write!(f, "  peer {}", r.peer)?;
        }
        if !r.sender.is_empty() {
            write!(f, "  {} -> {}", r.sender, r.recipients.join(","))?;
        }
        if r.reason != 0 {
            write!(f, "  reason {}", reason(r.reason))?;
        }
        if !r.detail.is_empty() {
            write!(f, "  ({})", r.detail)?;
        }
        Ok(())
    }
}

/// Every record of message `msg_id` in each of the logs in `dirs`, ordered
/// by hop, then time, then life-cycle step, log and index: the message's
/// route across networks. This relies on the record convention that `hop`
/// is the number of relays the message passed before the one logging it
/// (0 for every record at the sender's relay, 1 at the next, …).
pub fn trace(dirs: &[PathBuf], msg_id: &[u8; 16]) -> Result<Vec<TraceEvent>, AuditError> {
    let mut out = Vec::new();
    for d in dirs {
        let log = dir::origin(d)?;
        for_each_record(d, |index, record| {
            if record.msg_id == msg_id {
                out.push(TraceEvent { log: log.clone(), dir: d.clone(), index, record });
            }
            Ok(())
        })?;
    }
    // Hop first: relays' clocks differ, but each hop happens after the one before.
    let key = |e: &TraceEvent| {
        (e.record.hop, e.record.time_ms, lifecycle_rank(e.record.kind), e.log.clone(), e.index)
    };
    out.sort_by_key(key);
    Ok(out)
}

/// Order of kinds within one hop when times tie.
fn lifecycle_rank(kind: i32) -> u8 {
    use pb::AuditKind as K;
    match K::try_from(kind).unwrap_or(K::Unspecified) {
        K::Received => 0,
        K::Accepted => 1,
        K::Refused | K::Escalated => 2,
        K::Forwarded => 3,
        K::Delivered => 4,
        K::Acked => 5,
        _ => 6,
    }
}

/// Output format of [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
}

const COLUMNS: [&str; 15] = [
    "index",
    "time",
    "time_ms",
    "kind",
    "msg_id",
    "sender",
    "recipients",
    "peer",
    "payload_sha256",
    "size",
    "handling",
    "hop",
    "reason",
    "detail",
    "priority",
];

fn row(index: u64, r: &pb::AuditRecord) -> [String; 15] {
    [
        index.to_string(),
        utc(r.time_ms).1,
        r.time_ms.to_string(),
        kind_name(r.kind).to_owned(),
        hex::encode(&r.msg_id),
        r.sender.clone(),
        r.recipients.join(";"),
        r.peer.clone(),
        hex::encode(&r.payload_sha256),
        r.size.to_string(),
        if r.handling == 0 { String::new() } else { handling(r.handling) },
        r.hop.to_string(),
        if r.reason == 0 { String::new() } else { reason(r.reason) },
        r.detail.clone(),
        if r.priority == 0 { String::new() } else { priority(r.priority) },
    ]
}

/// One CSV field: RFC 4180 quoting, and a leading `'` on a field a
/// spreadsheet would run as a formula (names and details come from remote
/// parties: `=HYPERLINK(…)` must stay text).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// Writes every record of the log in `dir` to `out`.
pub fn export(dir: &Path, format: ExportFormat, out: &mut dyn Write) -> Result<u64, AuditError> {
    let io = |e: std::io::Error| AuditError::Io { path: PathBuf::from("<output>"), source: e };
    let mut n = 0;
    if format == ExportFormat::Csv {
        writeln!(out, "{}", COLUMNS.join(",")).map_err(io)?;
    }
    for_each_record(dir, |index, r| {
        let fields = row(index, &r);
        match format {
            ExportFormat::Csv => {
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", line.join(",")).map_err(io)?;
            }
            ExportFormat::Jsonl => {
                let mut obj = serde_json::Map::new();
                for (c, v) in COLUMNS.iter().zip(fields) {
                    // Numbers from the record itself: exact over the whole u64 / i64 range.
                    let value = match *c {
                        "index" => serde_json::Value::from(index),
                        "time_ms" => serde_json::Value::from(r.time_ms),
                        "size" => serde_json::Value::from(r.size),
                        "hop" => serde_json::Value::from(r.hop),
                        "recipients" => serde_json::Value::from(r.recipients.clone()),
                        _ => serde_json::Value::from(v),
                    };
                    obj.insert((*c).to_owned(), value);
                }
                writeln!(out, "{}", serde_json::Value::Object(obj)).map_err(io)?;
            }
        }
        n += 1;
        Ok(())
    })?;
    out.flush().map_err(io)?;
    Ok(n)
}

/// One day's numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayStats {
    /// Records.
    pub records: u64,
    /// Distinct messages accepted or received that day.
    pub messages: u64,
    /// Refusals (message, peer and certificate refusals).
    pub refusals: u64,
}

/// Summary of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Records in the log.
    pub records: u64,
    /// Records per kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Distinct messages exchanged with each peer (relay or client).
    pub messages_per_peer: BTreeMap<String, u64>,
    /// Refused messages per reason.
    pub refusals_by_reason: BTreeMap<String, u64>,
    /// Per UTC day (`YYYY-MM-DD`).
    pub per_day: BTreeMap<String, DayStats>,
}

/// Computes [`Stats`] over the log in `dir`.
pub fn stats(dir: &Path) -> Result<Stats, AuditError> {
    use pb::AuditKind as K;
    let mut s = Stats::default();
    let mut per_peer: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
    let mut per_day: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
    for_each_record(dir, |_, r| {
        s.records += 1;
        *s.by_kind.entry(kind_name(r.kind).to_owned()).or_default() += 1;
        let (day, _) = utc(r.time_ms);
        let d = s.per_day.entry(day.clone()).or_default();
        d.records += 1;
        let kind = K::try_from(r.kind).unwrap_or(K::Unspecified);
        if matches!(kind, K::Refused | K::PeerRefused | K::CertificateRefused) {
            d.refusals += 1;
        }
        if kind == K::Refused {
            *s.refusals_by_reason.entry(reason(r.reason)).or_default() += 1;
        }
        if !r.msg_id.is_empty() {
            if !r.peer.is_empty() {
                per_peer.entry(r.peer.clone()).or_default().insert(r.msg_id.clone());
            }
            if matches!(kind, K::Accepted | K::Received) {
                per_day.entry(day).or_default().insert(r.msg_id);
            }
        }
        Ok(())
    })?;
    s.messages_per_peer = per_peer.into_iter().map(|(p, ids)| (p, ids.len() as u64)).collect();
    for (day, ids) in per_day {
        s.per_day.entry(day).or_default().messages = ids.len() as u64;
    }
    Ok(s)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "records: {}", self.records)?;
        let section = |f: &mut fmt::Formatter<'_>, title: &str, m: &BTreeMap<String, u64>| -> fmt::Result {
            writeln!(f, "{title}:")?;
            for (k, v) in m {
                writeln!(f, "  {k:<32} {v:>10}")?;
            }
            Ok(())
        };
        section(f, "records by kind", &self.by_kind)?;
        section(f, "messages per peer", &self.messages_per_peer)?;
        section(f, "refusals by reason", &self.refusals_by_reason)?;
        writeln!(f, "per day:                         records   messages   refusals")?;
        for (day, d) in &self.per_day {
            writeln!(f, "  {day:<28} {:>10} {:>10} {:>10}", d.records, d.messages, d.refusals)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), ("1970-01-01".into(), "1970-01-01T00:00:00.000Z".into()));
        assert_eq!(utc(951_782_400_000).0, "2000-02-29");
        assert_eq!(utc(1_700_000_000_123).1, "2023-11-14T22:13:20.123Z");
        assert_eq!(utc(-1).1, "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn csv_formulas_are_neutralised() {
        assert_eq!(csv_field("=1+2"), "'=1+2");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("\r=x"), "\"'\r=x\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn msg_ids() {
        assert_eq!(parse_msg_id("000102030405060708090a0b0c0d0e0f").unwrap()[15], 15);
        assert!(parse_msg_id("0001").is_err());
        assert!(parse_msg_id("zz").is_err());
    }
}
