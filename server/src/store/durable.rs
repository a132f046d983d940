//! What sled's flush leaves out, made durable.
//!
//! sled 0.34 (on Linux) makes a log write "stable" with
//! `sync_file_range(2)` only: the pages reach the device, but the device's
//! volatile write cache is not flushed and a grown file's size is not
//! recorded, so an OS crash or a power cut could still lose a batch that was
//! already acknowledged. It also writes pages larger than a quarter segment
//! to files under `blobs/` without syncing them or their directory.
//!
//! [`SledFiles::sync`] runs after every sled flush that acknowledges
//! something (the store writer's batches, the audit log's on-demand
//! checkpoint, the witness's state): an `fdatasync` of sled's log file `db`,
//! then an `fsync` of every blob file created since the last call and of the
//! `blobs/` directory. So ACCEPTED keeps its promise (fsynced before it is
//! answered) against power loss too, not only against a killed process.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A directory's modification time can lag the creation that changed it:
/// by a clock tick (a few ms) on ext4 or XFS, by up to a second or two on
/// filesystems with coarse timestamps (1 s, FAT's 2 s), where a file created
/// in the same second as the last listing leaves the time unchanged. A
/// directory modified this recently is listed again even if its time did
/// not move. (Blobs are rare: only sled pages above a quarter segment.)
const MTIME_GRANULARITY: Duration = Duration::from_millis(2_500);

/// The files of one sled database that need syncing beyond sled's own flush.
/// Clones share one state.
#[derive(Clone)]
pub struct SledFiles {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// sled's log file, opened read-only (Linux syncs through any descriptor).
    db: File,
    blobs: PathBuf,
    /// Blob files already synced (or present at open, synced then).
    synced: HashSet<OsString>,
    /// `blobs/`'s modification time when it was last listed.
    listed_mtime: Option<SystemTime>,
    /// Tests: the next [`SledFiles::sync`] fails (a failing disk).
    #[cfg(test)]
    fail_next_sync: bool,
}

/// What one [`SledFiles::sync`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Blob files synced by this call (their directory too, if any).
    pub blobs_synced: usize,
}

impl std::fmt::Debug for SledFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledFiles").finish_non_exhaustive()
    }
}

impl SledFiles {
    /// The files of the sled database in `sled_dir` (already opened by sled,
    /// so `db` exists). Syncs what is there now, so a store written before
    /// this check existed starts durable too.
    pub fn open(sled_dir: &Path) -> io::Result<SledFiles> {
        let db_path = sled_dir.join("db");
        let db = File::open(&db_path).map_err(|e| with_path(e, "opening", &db_path))?;
        let inner = Inner {
            db,
            blobs: sled_dir.join("blobs"),
            synced: HashSet::new(),
            listed_mtime: None,
            #[cfg(test)]
            fail_next_sync: false,
        };
        let files = SledFiles { inner: Arc::new(Mutex::new(inner)) };
        files.sync()?;
        Ok(files)
    }

    /// sled's flush of everything written to `tree`'s database so far, then
    /// [`SledFiles::sync`]; returns the bytes sled flushed.
    pub fn flush(&self, tree: &sled::Tree) -> sled::Result<usize> {
        let flushed = tree.flush()?;
        self.sync()?;
        Ok(flushed)
    }

    /// `fdatasync` of the log file, then the blob files created since the
    /// last call and their directory. Call it after `sled::Db::flush`.
    pub fn sync(&self) -> io::Result<SyncReport> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(test)]
        if std::mem::take(&mut inner.fail_next_sync) {
            return Err(io::Error::other("injected failure of the fsync"));
        }
        inner
            .db
            .sync_data()
            .map_err(|e| io::Error::new(e.kind(), format!("fdatasync of sled's log: {e}")))?;
        inner.sync_new_blobs()
    }
}

#[cfg(test)]
impl SledFiles {
    /// Makes the next [`SledFiles::sync`] fail, after sled's own flush.
    pub(crate) fn fail_next_sync(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).fail_next_sync = true;
    }
}

impl Inner {
    fn sync_new_blobs(&mut self) -> io::Result<SyncReport> {
        let mtime = match std::fs::metadata(&self.blobs) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SyncReport::default()),
            Err(e) => return Err(with_path(e, "reading", &self.blobs)),
        };
        let recent = SystemTime::now().duration_since(mtime).map_or(true, |age| age < MTIME_GRANULARITY);
        if self.listed_mtime == Some(mtime) && !recent {
            return Ok(SyncReport::default());
        }
        let mut report = SyncReport::default();
        let mut present = HashSet::new();
        let entries = std::fs::read_dir(&self.blobs).map_err(|e| with_path(e, "listing", &self.blobs))?;
        for entry in entries {
            let entry = entry.map_err(|e| with_path(e, "listing", &self.blobs))?;
            let name = entry.file_name();
            present.insert(name.clone());
            if self.synced.contains(&name) {
                continue;
            }
            let path = entry.path();
            match File::open(&path) {
                Ok(f) => f.sync_all().map_err(|e| with_path(e, "fsync of", &path))?,
                // sled removed it meanwhile (blob garbage collection).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(e, "opening", &path)),
            }
            self.synced.insert(name);
            report.blobs_synced += 1;
        }
        if report.blobs_synced > 0 {
            File::open(&self.blobs)
                .and_then(|d| d.sync_all())
                .map_err(|e| with_path(e, "fsync of", &self.blobs))?;
        }
        // Forget names sled has removed, so the set does not grow forever.
        self.synced.retain(|n| present.contains(n));
        self.listed_mtime = Some(mtime);
        Ok(report)
    }
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sled_in(dir: &Path) -> sled::Db {
        sled::Config::new().path(dir.join("sled")).open().unwrap()
    }

    #[test]
    fn syncs_the_log_and_each_new_blob_once() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled_in(tmp.path());
        let files = SledFiles::open(&tmp.path().join("sled")).unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"small", &[1u8; 100][..]).unwrap();
        db.flush().unwrap();
        assert_eq!(files.sync().unwrap(), SyncReport { blobs_synced: 0 });

        // A value over a quarter of sled's 512 KiB segment goes to a blob file.
        tree.insert(b"large", vec![7u8; 300 * 1024]).unwrap();
        db.flush().unwrap();
        let blobs = std::fs::read_dir(tmp.path().join("sled/blobs")).unwrap().count();
        assert!(blobs >= 1, "sled wrote no blob file for a 300 KiB value");
        assert_eq!(files.sync().unwrap().blobs_synced, blobs);
        // Synced once: the next call finds nothing new.
        assert_eq!(files.sync().unwrap().blobs_synced, 0);
        assert_eq!(tree.get(b"large").unwrap().unwrap().len(), 300 * 1024);
    }

    #[test]
    fn a_missing_database_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = SledFiles::open(&tmp.path().join("nowhere")).unwrap_err().to_string();
        assert!(e.contains("nowhere/db"), "{e}");
    }
}
