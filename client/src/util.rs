//! Small conversions shared by the library and the CLI: clock, message ids,
//! durations (`7d`), handling codes (`H0`..`H3`), RFC 3339 times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use focal_proto::pb;

use crate::error::{ClientError, Result};

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unicode bidi controls: ALM, LRM, RLM, embeddings and overrides
/// (U+202A–U+202E), isolates (U+2066–U+2069). Text a sender controls is
/// shown or saved without them: `invoice\u{202E}fdp.exe` would display as
/// `invoiceexe.pdf`.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A message id as 32 lower-case hex characters.
pub fn msg_id_hex(id: &[u8]) -> String {
    hex::encode(id)
}

/// Parses a 32-hex-character message id.
pub fn parse_msg_id(s: &str) -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(s.trim(), &mut id)
        .map_err(|_| ClientError::invalid("message id", format!("{s:?} is not 32 hexadecimal characters")))?;
    Ok(id)
}

/// The longest duration [`parse_duration`] takes: 100 years. Longer ones
/// are refused rather than let wrap around in the arithmetic on unix
/// milliseconds (a "keep forever" retention of 999999999999d once made a
/// cutoff in the far future, and every local record was purged).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

/// `d` in milliseconds, saturating (durations from the library API are
/// not bounded by [`parse_duration`]).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix ms `d` before now, saturating.
pub fn ms_ago(d: Duration) -> i64 {
    now_ms().saturating_sub(millis(d))
}

/// Unix ms `d` after `from`, saturating.
pub fn ms_after(from: i64, d: Duration) -> i64 {
    from.saturating_add(millis(d))
}

/// Parses `90s`, `30m`, `12h`, `7d`, `2w` (at most [`MAX_DURATION`]).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        ClientError::invalid(
            "duration",
            format!("{s:?}: expected a number and a unit s, m, h, d or w (e.g. 7d)"),
        )
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(ClientError::invalid("duration", format!("{s:?} must be positive")));
    }
    match n.checked_mul(secs).map(Duration::from_secs) {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(ClientError::invalid("duration", format!("{s:?} is longer than the 100 years allowed"))),
    }
}

/// Parses `H0`..`H3` (case-insensitive).
pub fn parse_handling(s: &str) -> Result<pb::HandlingCode> {
    match s.to_ascii_uppercase().as_str() {
        "H0" => Ok(pb::HandlingCode::H0),
        "H1" => Ok(pb::HandlingCode::H1),
        "H2" => Ok(pb::HandlingCode::H2),
        "H3" => Ok(pb::HandlingCode::H3),
        _ => Err(ClientError::invalid("handling code", format!("{s:?}: expected H0, H1, H2 or H3"))),
    }
}

/// `H0`..`H3`, or `unspecified`.
pub fn handling_name(h: i32) -> &'static str {
    match pb::HandlingCode::try_from(h) {
        Ok(pb::HandlingCode::H0) => "H0",
        Ok(pb::HandlingCode::H1) => "H1",
        Ok(pb::HandlingCode::H2) => "H2",
        Ok(pb::HandlingCode::H3) => "H3",
        _ => "unspecified",
    }
}

/// `normal`, `urgent` or `unspecified`.
pub fn priority_name(p: i32) -> &'static str {
    match pb::Priority::try_from(p) {
        Ok(pb::Priority::Normal) => "normal",
        Ok(pb::Priority::Urgent) => "urgent",
        _ => "unspecified",
    }
}

/// `DELIVERED`, `READ`, `REFUSED`, `EXPIRED`, `ESCALATED` or `UNSPECIFIED`.
pub fn receipt_kind_name(k: i32) -> &'static str {
    match pb::ReceiptKind::try_from(k) {
        Ok(pb::ReceiptKind::Delivered) => "DELIVERED",
        Ok(pb::ReceiptKind::Read) => "READ",
        Ok(pb::ReceiptKind::Refused) => "REFUSED",
        Ok(pb::ReceiptKind::Expired) => "EXPIRED",
        Ok(pb::ReceiptKind::Escalated) => "ESCALATED",
        _ => "UNSPECIFIED",
    }
}

/// Unix milliseconds as RFC 3339 UTC (`2026-01-31T12:00:00.250Z`).
pub fn fmt_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().try_into().expect("32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5200w").unwrap(), Duration::from_secs(5200 * 7 * 86_400));
        for huge in ["999999999999d", "18446744073709551615s", "36700d"] {
            let e = parse_duration(huge).unwrap_err().to_string();
            assert!(e.contains("longer than the 100 years allowed"), "{huge}: {e}");
        }
        assert_eq!(ms_after(i64::MAX - 1, Duration::MAX), i64::MAX);
        assert!(ms_ago(Duration::MAX) < 0, "a cutoff before any record, not after all of them");
        for bad in ["", "d", "7", "7y", "-1d", "0d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_and_ids() {
        assert_eq!(fmt_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_time_ms(1_767_225_600_250), "2026-01-01T00:00:00.250Z");
        assert_eq!(fmt_time_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        let id = [7u8; 16];
        assert_eq!(parse_msg_id(&msg_id_hex(&id)).unwrap(), id);
        assert!(parse_msg_id("xyz").unwrap_err().to_string().contains("32 hexadecimal"));
        assert_eq!(parse_handling("h2").unwrap(), pb::HandlingCode::H2);
        assert!(parse_handling("H4").is_err());
    }
}
