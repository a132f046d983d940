//! When the relay's loaded certificate material stops being usable: its own
//! certificate (and chain), every CA of the trust bundle, and the next
//! update of every configured CRL. At start, after each reload and then
//! daily, the relay logs a warning for each item expiring within
//! [`WARN_DAYS`] days (an error once past); the same list feeds the
//! `focal_certificate_expiry_days` metric and `Admin.Status`.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use focal_certs::{Credentials, TrustStore};
use tokio::sync::watch;

/// Warn about certificates that expire within this many days.
pub const WARN_DAYS: i64 = crate::check::EXPIRY_WARNING_DAYS as i64;
/// Warn about CRLs whose next update is due within this many days. Shorter
/// than for certificates: CRLs are republished often (`focal-certs crl`
/// defaults to 30 days of validity), so a 30-day window would warn about
/// every fresh CRL.
pub const CRL_WARN_DAYS: i64 = 7;

/// One dated item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiring {
    /// What it is: `relay certificate`, `CA carin`, `CRL carin (<file>)`.
    pub what: String,
    /// End of validity (certificate notAfter, CRL nextUpdate), unix seconds.
    pub not_after_unix: i64,
    /// Warn when fewer days than this are left ([`WARN_DAYS`] or [`CRL_WARN_DAYS`]).
    pub warn_days: i64,
}

impl Expiring {
    /// Whole days left at `now_unix` (negative once past).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after_unix - now_unix).div_euclid(86_400)
    }
}

fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// What `creds`, `trust` and the CRL files at `crls` contain, dated.
/// A CRL file that cannot be read or parsed is reported with time 0 (it
/// would have failed the load that preceded this call).
pub fn scan(creds: &Credentials, trust: &TrustStore, crls: &[impl AsRef<Path>]) -> Vec<Expiring> {
    let mut out = Vec::new();
    for (i, der) in creds.chain.iter().enumerate() {
        let what =
            if i == 0 { "relay certificate".to_owned() } else { format!("relay chain certificate {i}") };
        if let Some(t) = not_after(der) {
            out.push(Expiring { what, not_after_unix: t, warn_days: WARN_DAYS });
        }
    }
    for (net, cas) in &trust.bundle().networks {
        for (i, der) in cas.iter().enumerate() {
            let what = if cas.len() == 1 { format!("CA {net}") } else { format!("CA {net} #{i}") };
            if let Some(t) = not_after(der) {
                out.push(Expiring { what, not_after_unix: t, warn_days: WARN_DAYS });
            }
        }
    }
    for path in crls {
        let path = path.as_ref();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let found = std::fs::read(path).map(|pem| crls_next_update(&pem)).unwrap_or_default();
        let found = if found.is_empty() { vec![("unreadable".into(), 0)] } else { found };
        for (issuer, t) in found {
            out.push(Expiring {
                what: format!("CRL {issuer} ({name})"),
                not_after_unix: t,
                warn_days: CRL_WARN_DAYS,
            });
        }
    }
    out
}

/// (issuer common name, next update unix seconds) of each CRL in a PEM
/// file; empty if there is none or one does not parse.
fn crls_next_update(pem: &[u8]) -> Vec<(String, i64)> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(pem)
        .map(|der| der.ok().and_then(|der| crl_next_update(der.as_ref())))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// (issuer common name, next update unix seconds) of a DER CRL.
fn crl_next_update(der: &[u8]) -> Option<(String, i64)> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let issuer = crl
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| crl.issuer().to_string());
    // A CRL without nextUpdate never goes stale: report it far away.
    let next = crl.next_update().map(|t| t.timestamp()).unwrap_or(i64::MAX / 2);
    Some((issuer, next))
}

/// Logs a warning for every item expiring within its warning period (an
/// error for those already past); returns how many were logged.
pub fn warn(items: &[Expiring], now_unix: i64) -> usize {
    let mut n = 0;
    for e in items {
        let days = e.days_left(now_unix);
        if e.not_after_unix <= now_unix {
            tracing::error!(what = %e.what, not_after = e.not_after_unix, "expired: renew it now");
            n += 1;
        } else if days < e.warn_days {
            tracing::warn!(what = %e.what, days_left = days, not_after = e.not_after_unix, "expires within {} days: renew it", e.warn_days);
            n += 1;
        }
    }
    n
}

/// The current dated list, replaced on reload.
pub type Shared = Arc<RwLock<Vec<Expiring>>>;

/// Logs warnings now, then once a day, until `stop` turns true.
pub(crate) async fn daily(items: Shared, mut stop: watch::Receiver<bool>) {
    loop {
        let list = items.read().unwrap_or_else(|e| e.into_inner()).clone();
        warn(&list, unix_now());
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(86_400)) => {}
            () = stopped(&mut stop) => break,
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_and_warnings() {
        let now = 1_000 * 86_400;
        let e =
            |what: &str, t: i64, warn_days: i64| Expiring { what: what.into(), not_after_unix: t, warn_days };
        let soon = e("a", now + 5 * 86_400, WARN_DAYS);
        let later = e("b", now + 90 * 86_400, WARN_DAYS);
        let past = e("c", now - 10, WARN_DAYS);
        let crl = e("CRL", now + 20 * 86_400, CRL_WARN_DAYS);
        assert_eq!(warn(&[crl], now), 0, "a CRL due in 20 days is normal");
        assert_eq!(soon.days_left(now), 5);
        assert_eq!(past.days_left(now), -1);
        assert_eq!(warn(&[soon, later, past], now), 2);
    }
}
