//! The local client store: plain JSON files under the profile's store
//! directory that remember what this focal point sent and received (metadata
//! only: subject, case reference, reply links, attachment names and digests;
//! never bodies or attachment data), and the receipts it collected. Case
//! threads are later built from these records.
//!
//! ```text
//! <store_dir>/sent/<msgid>.json
//! <store_dir>/received/<msgid>-<sender>.json
//! <store_dir>/receipts/<sha256 of receipt body>.json
//! <store_dir>/tmp/            sealed payloads waiting to be sent, partial downloads
//! ```
//!
//! Each record is written to a temporary file, fsynced and renamed into
//! place, and the directory is fsynced, so a crash (of the process or of the
//! machine) leaves either the old or the new record. A record that does not
//! parse all the same (a damaged disk, an editor) is renamed to
//! `<name>.json.unreadable` with a warning naming it, and the store works
//! on without it.
//!
//! Retention: [`LocalStore::purge_older_than`] deletes records whose last
//! activity is older than a cutoff (a sent message: accepted, else created;
//! a read message: read; a receipt: signed). The profile's `retention` (or
//! `focal --retention`) applies it each time `focal` opens the store
//! ([`LocalStore::open_with_retention`]); `focal purge --older-than` does it
//! on demand. Case threads and overdue lists are built from what remains.
//! Attachments saved with `focal read --out` are the user's files and are
//! never touched. Temporary files older
//! than a day (from a client killed mid-send or mid-write) are removed when
//! the store opens.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{ClientError, Result};

/// A message this focal point sent (and the relay accepted).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SentRecord {
    /// Message id (hex).
    pub msg_id: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Case reference, if any.
    #[serde(default)]
    pub case_ref: String,
    /// The message this replies to (hex id), if any.
    #[serde(default)]
    pub reply_to_msg_id: String,
    /// Sender of the message this replies to.
    #[serde(default)]
    pub reply_to_sender: String,
    /// Handling code (`H0`..`H3`).
    pub handling: String,
    /// Created (unix ms, sender clock).
    pub created_at_ms: i64,
    /// Expires (unix ms).
    pub expires_at_ms: i64,
    /// Accepted by the relay (relay clock), 0 if unknown.
    pub accepted_at_ms: i64,
    /// The relay that accepted it.
    pub relay: String,
    /// Ciphertext digest (hex).
    pub payload_sha256: String,
    /// Ciphertext size.
    pub payload_size: u64,
    /// Attachment names.
    pub attachments: Vec<String>,
    /// Kind (`general`, `asset-tracing`, ...; see [`crate::case::kind_name`]).
    #[serde(default)]
    pub kind: String,
    /// Response wanted by (unix ms; 0 = none).
    #[serde(default)]
    pub response_deadline_ms: i64,
    /// The message this forwards (hex id), if any.
    #[serde(default)]
    pub forward_of: String,
}

/// A message this focal point read (opened and verified).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceivedRecord {
    /// Message id (hex).
    pub msg_id: String,
    /// Sender.
    pub from: String,
    /// All recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Case reference.
    #[serde(default)]
    pub case_ref: String,
    /// The message it replies to (hex id), if any.
    #[serde(default)]
    pub reply_to_msg_id: String,
    /// Sender of that message.
    #[serde(default)]
    pub reply_to_sender: String,
    /// Handling code.
    pub handling: String,
    /// Created (unix ms, sender clock).
    pub created_at_ms: i64,
    /// When this focal point opened it (unix ms).
    pub read_at_ms: i64,
    /// Ciphertext digest (hex): what a delivery receipt binds.
    pub payload_sha256: String,
    /// Attachment names.
    pub attachments: Vec<String>,
    /// Whether the relay confirmed our acknowledgement.
    #[serde(default)]
    pub acked: bool,
    /// Kind (`general`, `asset-tracing`, ...).
    #[serde(default)]
    pub kind: String,
    /// Response wanted by (unix ms; 0 = none).
    #[serde(default)]
    pub response_deadline_ms: i64,
}

/// A verified receipt kept for the sender's records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// Message id (hex).
    pub msg_id: String,
    /// `DELIVERED`, `READ`, `REFUSED`, `EXPIRED`, `ESCALATED`.
    pub kind: String,
    /// The recipient the receipt is about.
    pub subject: String,
    /// Who signed it.
    pub signer: String,
    /// When (signer clock, unix ms).
    pub at_ms: i64,
    /// Refusal reason or detail.
    #[serde(default)]
    pub detail: String,
}

/// What a purge removed (or, for a dry run, would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Sent-message records.
    pub sent: usize,
    /// Read-message records.
    pub received: usize,
    /// Receipt records.
    pub receipts: usize,
}

impl PurgeReport {
    /// Records removed in all.
    pub fn total(&self) -> usize {
        self.sent + self.received + self.receipts
    }
}

/// The store directory.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        for sub in ["sent", "received", "receipts", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| ClientError::io("cannot create store directory", &p, e))?;
        }
        let store = LocalStore { dir };
        store.remove_stale_tmp(std::time::Duration::from_secs(24 * 3600));
        Ok(store)
    }

    /// Opens the store and, if `retention` is set, purges records older
    /// than `retention` (see the module docs).
    pub fn open_with_retention(
        dir: impl Into<PathBuf>,
        retention: Option<std::time::Duration>,
    ) -> Result<(Self, PurgeReport)> {
        let store = LocalStore::open(dir)?;
        let report = match retention {
            Some(r) => store.purge_older_than(crate::util::ms_ago(r), false)?,
            None => PurgeReport::default(),
        };
        Ok((store, report))
    }

    /// Deletes the records whose last activity is at or before `cutoff_ms`
    /// (unix ms); with `dry_run` only counts them.
    pub fn purge_older_than(&self, cutoff_ms: i64, dry_run: bool) -> Result<PurgeReport> {
        let sent = self.purge_in::<SentRecord>("sent", cutoff_ms, dry_run, |r| {
            if r.accepted_at_ms > 0 { r.accepted_at_ms } else { r.created_at_ms }
        })?;
        let received = self.purge_in::<ReceivedRecord>("received", cutoff_ms, dry_run, |r| {
            r.read_at_ms.max(r.created_at_ms)
        })?;
        let receipts = self.purge_in::<ReceiptRecord>("receipts", cutoff_ms, dry_run, |r| r.at_ms)?;
        Ok(PurgeReport { sent, received, receipts })
    }

    fn purge_in<T: DeserializeOwned>(
        &self,
        sub: &str,
        cutoff_ms: i64,
        dry_run: bool,
        last_activity: impl Fn(&T) -> i64,
    ) -> Result<usize> {
        let dir = self.dir.join(sub);
        let mut n = 0;
        let rd = fs::read_dir(&dir).map_err(|e| ClientError::io("cannot read", &dir, e))?;
        for entry in rd {
            let path = entry.map_err(|e| ClientError::io("cannot read", &dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(record) = self.read::<T>(&path)? else { continue };
            if last_activity(&record) > cutoff_ms {
                continue;
            }
            if !dry_run {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ClientError::io("cannot remove", &path, e)),
                }
            }
            n += 1;
        }
        Ok(n)
    }

    /// Removes temporary files older than `age`: everything in `tmp/` (left
    /// by a client that was killed mid-send) and a record write's `.tmp*`
    /// file in the record directories. Best effort: errors are ignored.
    fn remove_stale_tmp(&self, age: std::time::Duration) {
        let now = std::time::SystemTime::now();
        for (sub, only_tmp) in [("tmp", false), ("sent", true), ("received", true), ("receipts", true)] {
            let Ok(rd) = fs::read_dir(self.dir.join(sub)) else { continue };
            for entry in rd.flatten() {
                if only_tmp && !entry.file_name().to_string_lossy().starts_with(".tmp") {
                    continue;
                }
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > age);
                if old {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory for temporary files (sealed payloads, partial downloads).
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Records a sent message.
    pub fn put_sent(&self, r: &SentRecord) -> Result<()> {
        self.write(&self.dir.join("sent").join(format!("{}.json", r.msg_id)), r)
    }

    /// A sent message by id.
    pub fn sent(&self, msg_id: &str) -> Result<Option<SentRecord>> {
        self.read(&self.dir.join("sent").join(format!("{msg_id}.json")))
    }

    /// All sent messages, oldest first.
    pub fn all_sent(&self) -> Result<Vec<SentRecord>> {
        let mut v: Vec<SentRecord> = self.list("sent")?;
        v.sort_by_key(|r| r.created_at_ms);
        Ok(v)
    }

    /// Records a received message.
    pub fn put_received(&self, r: &ReceivedRecord) -> Result<()> {
        self.write(&self.received_path(&r.msg_id, &r.from), r)
    }

    /// A received message by id and sender.
    pub fn received(&self, msg_id: &str, from: &str) -> Result<Option<ReceivedRecord>> {
        self.read(&self.received_path(msg_id, from))
    }

    /// All received (read) messages, oldest first.
    pub fn all_received(&self) -> Result<Vec<ReceivedRecord>> {
        let mut v: Vec<ReceivedRecord> = self.list("received")?;
        v.sort_by_key(|r| r.created_at_ms);
        Ok(v)
    }

    /// Received messages with this id (any sender).
    pub fn received_by_id(&self, msg_id: &str) -> Result<Vec<ReceivedRecord>> {
        Ok(self.list::<ReceivedRecord>("received")?.into_iter().filter(|r| r.msg_id == msg_id).collect())
    }

    /// Marks a received message acknowledged.
    pub fn mark_acked(&self, msg_id: &str, from: &str) -> Result<()> {
        if let Some(mut r) = self.received(msg_id, from)? {
            r.acked = true;
            self.put_received(&r)?;
        }
        Ok(())
    }

    /// Records a verified receipt (idempotent: keyed by the receipt body digest).
    pub fn put_receipt(&self, body_sha256_hex: &str, r: &ReceiptRecord) -> Result<()> {
        self.write(&self.dir.join("receipts").join(format!("{body_sha256_hex}.json")), r)
    }

    /// All receipts kept, oldest first.
    pub fn all_receipts(&self) -> Result<Vec<ReceiptRecord>> {
        let mut v: Vec<ReceiptRecord> = self.list("receipts")?;
        v.sort_by_key(|r| r.at_ms);
        Ok(v)
    }

    fn received_path(&self, msg_id: &str, from: &str) -> PathBuf {
        self.dir.join("received").join(format!("{msg_id}-{from}.json"))
    }

    fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let json = serde_json::to_vec_pretty(value).expect("records serialise");
        let dir = path.parent().expect("record paths have a parent");
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| ClientError::io("cannot create", dir, e))?;
        tmp.write_all(&json).map_err(|e| ClientError::io("cannot write", tmp.path().to_owned(), e))?;
        tmp.as_file().sync_all().map_err(|e| ClientError::io("cannot sync", tmp.path().to_owned(), e))?;
        tmp.persist(path).map_err(|e| ClientError::io("cannot write", path, e.error))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ClientError::io("cannot sync", dir, e))
    }

    /// The record at `path` (`None` if there is none). A record that does
    /// not parse is set aside (see the module docs) and also gives `None`.
    fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClientError::io("cannot read", path, e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(".unreadable");
                let aside = PathBuf::from(aside);
                fs::rename(path, &aside).map_err(|e| ClientError::io("cannot set aside", path, e))?;
                tracing::warn!(record = %path.display(), set_aside_as = %aside.display(), error = %e, "a local record does not parse; set aside");
                Ok(None)
            }
        }
    }

    fn list<T: DeserializeOwned>(&self, sub: &str) -> Result<Vec<T>> {
        let dir = self.dir.join(sub);
        let mut out = Vec::new();
        let rd = fs::read_dir(&dir).map_err(|e| ClientError::io("cannot read", &dir, e))?;
        for entry in rd {
            let path = entry.map_err(|e| ClientError::io("cannot read", &dir, e))?.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Some(v) = self.read(&path)?
            {
                out.push(v);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sent record of message `id` to b@carin.
    pub(crate) fn sent(id: &str, created: i64, accepted: i64) -> SentRecord {
        SentRecord {
            msg_id: id.into(),
            to: vec!["b@carin".into()],
            subject: "s".into(),
            case_ref: "C-1".into(),
            reply_to_msg_id: String::new(),
            reply_to_sender: String::new(),
            handling: "H1".into(),
            created_at_ms: created,
            expires_at_ms: created + 1_000,
            accepted_at_ms: accepted,
            relay: "focal://carin/relay/r".into(),
            payload_sha256: "ab".into(),
            payload_size: 1,
            attachments: vec![],
            kind: "general".into(),
            response_deadline_ms: 0,
            forward_of: String::new(),
        }
    }

    fn received(id: &str, created: i64, read: i64) -> ReceivedRecord {
        ReceivedRecord {
            msg_id: id.into(),
            from: "a@carin".into(),
            to: vec!["b@carin".into()],
            subject: "s".into(),
            case_ref: "C-1".into(),
            reply_to_msg_id: String::new(),
            reply_to_sender: String::new(),
            handling: "H1".into(),
            created_at_ms: created,
            read_at_ms: read,
            payload_sha256: "ab".into(),
            attachments: vec![],
            acked: true,
            kind: "general".into(),
            response_deadline_ms: 0,
        }
    }

    fn receipt(id: &str, at: i64) -> ReceiptRecord {
        ReceiptRecord {
            msg_id: id.into(),
            kind: "DELIVERED".into(),
            subject: "b@carin".into(),
            signer: "b@carin".into(),
            at_ms: at,
            detail: String::new(),
        }
    }

    #[test]
    fn a_record_that_does_not_parse_is_set_aside_and_the_store_works_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        s.put_sent(&sent("01", 100, 150)).unwrap();
        s.put_sent(&sent("02", 100, 150)).unwrap();
        // A power cut before the data reached the disk, or a slip in an editor.
        let damaged = dir.path().join("sent/02.json");
        std::fs::write(&damaged, b"").unwrap();
        let ids: Vec<String> = s.all_sent().unwrap().into_iter().map(|r| r.msg_id).collect();
        assert_eq!(ids, ["01"]);
        assert!(!damaged.exists());
        assert!(dir.path().join("sent/02.json.unreadable").exists(), "kept for inspection");
        assert_eq!(s.sent("02").unwrap(), None);
        assert_eq!(s.purge_older_than(1_000, false).unwrap().sent, 1);

        // A single read sets a damaged record aside too.
        s.put_sent(&sent("03", 100, 150)).unwrap();
        std::fs::write(dir.path().join("sent/03.json"), b"{\"msg_id\": 3").unwrap();
        assert_eq!(s.sent("03").unwrap(), None);
        assert!(dir.path().join("sent/03.json.unreadable").exists());
    }

    #[test]
    fn a_stale_temporary_record_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        LocalStore::open(dir.path()).unwrap();
        let stale = dir.path().join("receipts/.tmpAbC123");
        let fresh = dir.path().join("receipts/.tmpXyZ789");
        std::fs::write(&stale, b"{").unwrap();
        std::fs::write(&fresh, b"{").unwrap();
        let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_days_ago).unwrap();
        LocalStore::open(dir.path()).unwrap();
        assert!(!stale.exists(), "left by a write killed a while ago");
        assert!(fresh.exists(), "another client may be writing it now");
    }

    #[test]
    fn purge_removes_only_records_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        s.put_sent(&sent("01", 100, 150)).unwrap();
        s.put_sent(&sent("02", 100, 0)).unwrap(); // never confirmed: created counts
        s.put_sent(&sent("03", 900, 950)).unwrap();
        s.put_received(&received("04", 100, 200)).unwrap();
        s.put_received(&received("05", 100, 600)).unwrap(); // old message, read recently
        s.put_receipt("aa", &receipt("01", 300)).unwrap();
        s.put_receipt("bb", &receipt("03", 1_000)).unwrap();

        let dry = s.purge_older_than(500, true).unwrap();
        assert_eq!(dry, PurgeReport { sent: 2, received: 1, receipts: 1 });
        assert_eq!(s.all_sent().unwrap().len(), 3, "a dry run removes nothing");

        assert_eq!(s.purge_older_than(500, false).unwrap(), dry);
        let ids = |v: Vec<String>| v;
        assert_eq!(ids(s.all_sent().unwrap().into_iter().map(|r| r.msg_id).collect()), ["03"]);
        assert_eq!(ids(s.all_received().unwrap().into_iter().map(|r| r.msg_id).collect()), ["05"]);
        assert_eq!(s.all_receipts().unwrap(), [receipt("03", 1_000)]);
        assert_eq!(s.purge_older_than(500, false).unwrap().total(), 0, "idempotent");
        // The boundary is inclusive: a record exactly at the cutoff goes.
        assert_eq!(s.purge_older_than(950, false).unwrap().sent, 1);
    }

    #[test]
    fn open_with_retention_purges_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::util::now_ms();
        {
            let s = LocalStore::open(dir.path()).unwrap();
            s.put_sent(&sent("01", now - 10 * 86_400_000, now - 10 * 86_400_000)).unwrap();
            s.put_sent(&sent("02", now - 3_600_000, now - 3_600_000)).unwrap();
        }
        let (s, r) = LocalStore::open_with_retention(dir.path(), None).unwrap();
        assert_eq!((r.total(), s.all_sent().unwrap().len()), (0, 2), "no retention: nothing purged");
        let week = std::time::Duration::from_secs(7 * 86_400);
        let (s, r) = LocalStore::open_with_retention(dir.path(), Some(week)).unwrap();
        assert_eq!(r, PurgeReport { sent: 1, ..Default::default() });
        assert_eq!(s.all_sent().unwrap()[0].msg_id, "02");
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        let r = ReceivedRecord {
            msg_id: "00ff".into(),
            from: "a@carin".into(),
            to: vec!["b@carin".into()],
            subject: "s".into(),
            case_ref: "C-1".into(),
            reply_to_msg_id: String::new(),
            reply_to_sender: String::new(),
            handling: "H1".into(),
            created_at_ms: 1,
            read_at_ms: 2,
            payload_sha256: "ab".into(),
            attachments: vec![],
            acked: false,
            kind: "general".into(),
            response_deadline_ms: 0,
        };
        s.put_received(&r).unwrap();
        s.mark_acked("00ff", "a@carin").unwrap();
        let got = s.received("00ff", "a@carin").unwrap().unwrap();
        assert!(got.acked);
        assert_eq!(s.received_by_id("00ff").unwrap().len(), 1);
        assert!(s.received("00ff", "x@carin").unwrap().is_none());
        assert!(s.sent("00ff").unwrap().is_none());
    }
}
