//! Saving the attachments of a message being read ([`crate::read`]).
//!
//! A `FileSink` writes each attachment to its own file in a hidden
//! staging directory `.focal-partial-*` inside the output directory, and
//! closes that file (flushed and synced) as soon as the attachment is
//! complete: a read keeps one attachment file open, however many there are.
//! Once the message is verified, `FileSink::commit` moves the files to
//! their final names, unique among the message's attachments (ignoring
//! case), all checked before the first move. Dropping the sink removes the
//! staging directory and whatever is left in it.
//!
//! A reader that is killed cannot remove its staging directory, which holds
//! decrypted data. So a sink keeps the directory's `.lock` file locked while
//! it lives, and a new sink first removes every staging directory of the
//! output directory whose lock it can take (its reader is gone), leaving
//! those of readers still running alone.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use focal_proto::pb;

use crate::error::{ClientError, Result};
use crate::plaintext::AttachmentSink;

/// Name prefix of the staging directories in an output directory.
const STAGING_PREFIX: &str = ".focal-partial-";
/// The file a live sink keeps locked in its staging directory.
const LOCK_FILE: &str = ".lock";

/// Writes attachments to a staging directory in the output directory.
/// Fields drop in order: the files are closed before the directory goes.
pub(crate) struct FileSink {
    dir: PathBuf,
    /// The attachment being written.
    current: Option<(pb::Attachment, BufWriter<File>, tempfile::TempPath)>,
    /// Complete attachments, their files closed.
    done: Vec<(pb::Attachment, tempfile::TempPath)>,
    _lock: File,
    staging: tempfile::TempDir,
}

impl FileSink {
    /// A sink saving into `dir` (created if missing), once the staging
    /// directories of killed readers there are removed.
    pub(crate) fn new(dir: &Path) -> Result<FileSink> {
        std::fs::create_dir_all(dir).map_err(|e| ClientError::io("cannot create", dir, e))?;
        remove_stale(dir);
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(dir)
            .map_err(|e| ClientError::io("cannot create temporary directory in", dir, e))?;
        // Locked before it gets its name: no other reader can take the lock
        // of a live sink.
        let new = staging.path().join(".lock-new");
        let lock = File::create_new(&new).map_err(|e| ClientError::io("cannot create", &new, e))?;
        if let Err(e) = lock.try_lock() {
            // No locks on this file system: other readers cannot take this
            // one either, so they leave the directory alone.
            tracing::debug!(error = %e, "cannot lock {}", new.display());
        }
        let path = staging.path().join(LOCK_FILE);
        std::fs::rename(&new, &path).map_err(|e| ClientError::io("cannot create", &path, e))?;
        Ok(FileSink { dir: dir.to_owned(), current: None, done: Vec::new(), _lock: lock, staging })
    }

    /// Moves every saved attachment to its final name (see
    /// [`unique_names`]); all names are checked before the first move.
    pub(crate) fn commit(self, overwrite: bool) -> Result<Vec<PathBuf>> {
        debug_assert!(self.current.is_none(), "every attachment ended");
        let names = unique_names(self.done.iter().map(|(meta, _)| meta.name.as_str()));
        let targets: Vec<PathBuf> = names.iter().map(|n| self.dir.join(n)).collect();
        if let Some(t) = targets.iter().find(|t| !overwrite && t.exists()) {
            return Err(ClientError::invalid(
                "output",
                format!("{} exists already (use --overwrite to replace it)", t.display()),
            ));
        }
        for ((_, tmp), target) in self.done.into_iter().zip(&targets) {
            let res = if overwrite { tmp.persist(target) } else { tmp.persist_noclobber(target) };
            res.map_err(|e| ClientError::io("cannot save attachment as", target, e.error))?;
        }
        Ok(targets)
    }
}

impl AttachmentSink for FileSink {
    fn begin(&mut self, index: usize, meta: &pb::Attachment) -> Result<()> {
        debug_assert!(self.current.is_none() && index == self.done.len());
        let dir = self.staging.path();
        let (file, path) = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| ClientError::io("cannot create temporary file in", dir, e))?
            .into_parts();
        self.current = Some((meta.clone(), BufWriter::new(file), path));
        Ok(())
    }

    fn write(&mut self, _: usize, data: &[u8]) -> Result<()> {
        let (_, w, path) = self.current.as_mut().expect("an attachment begun");
        w.write_all(data).map_err(|e| ClientError::io("cannot write", &**path, e))
    }

    fn end(&mut self, _: usize) -> Result<()> {
        let (meta, w, path) = self.current.take().expect("an attachment begun");
        let file = w.into_inner().map_err(|e| ClientError::io("cannot write", &*path, e.into_error()))?;
        file.sync_all().map_err(|e| ClientError::io("cannot write", &*path, e))?;
        self.done.push((meta, path));
        Ok(())
    }
}

/// Removes the staging directories in `dir` whose lock can be taken: their
/// readers are gone. Failures are logged only; they do not stop this read.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let staging = entry.file_name().to_str().is_some_and(|n| n.starts_with(STAGING_PREFIX));
        if !staging || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(lock) = File::open(path.join(LOCK_FILE)) else { continue };
        if lock.try_lock().is_ok() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!("removed {}, left by a reader that was stopped", path.display()),
                Err(e) => tracing::warn!(error = %e, "cannot remove {}", path.display()),
            }
        }
    }
}

/// A safe file name for an attachment: the last path component, without
/// control characters; `attachment-<n>` if nothing usable is left.
pub fn safe_file_name(name: &str, index: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String =
        last.chars().filter(|&c| !c.is_control() && !crate::util::is_bidi_control(c)).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() { format!("attachment-{}", index + 1) } else { cleaned }
}

/// The file names of attachments named `names`: [`safe_file_name`] of
/// each, or `<n>-` and that name if an earlier attachment has it (ignoring
/// case, as the file systems of Windows and macOS do), with `n` the first
/// free number from the attachment's own (1-based).
fn unique_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut taken = HashSet::new();
    let mut out = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let base = safe_file_name(name, i);
        let mut name = base.clone();
        let mut n = i + 1;
        while !taken.insert(name.to_lowercase()) {
            name = format!("{n}-{base}");
            n += 1;
        }
        out.push(name);
    }
    out
}

/// True if `p` is inside `dir` (for tests of the file-name sanitiser).
pub fn is_inside(dir: &Path, p: &Path) -> bool {
    p.parent() == Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plaintext::{PlaintextReader, content_prefix};

    /// The plaintext of a message with these attachments.
    fn plaintext(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let attachments = parts
            .iter()
            .map(|(name, data)| pb::Attachment {
                name: (*name).into(),
                size: data.len() as u64,
                sha256: crate::util::sha256(data).to_vec(),
                media_type: String::new(),
            })
            .collect();
        let mut out = content_prefix(&pb::Content { version: 1, attachments, ..Default::default() }).unwrap();
        for (_, data) in parts {
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn each_attachment_file_is_closed_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let parts: [(&str, &[u8]); 3] = [("a", b"first"), ("b", b""), ("c", b"third")];
        let bytes = plaintext(&parts);
        let mut sink = FileSink::new(dir.path()).unwrap();
        let mut reader = PlaintextReader::new();
        reader.push(&bytes[..bytes.len() - 2], &mut sink).unwrap();
        assert_eq!(sink.done.len(), 2, "a and b closed");
        assert!(sink.current.is_some(), "c open");
        reader.push(&bytes[bytes.len() - 2..], &mut sink).unwrap();
        assert_eq!(sink.done.len(), 3);
        assert!(sink.current.is_none(), "no file left open");
        reader.finish().unwrap();
        let paths = sink.commit(false).unwrap();
        for (path, (name, data)) in paths.iter().zip(parts) {
            assert_eq!(path, &dir.path().join(name));
            assert_eq!(std::fs::read(path).unwrap(), data);
        }
    }

    #[test]
    fn attachment_names_stay_in_the_output_directory() {
        for (name, want) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("/abs/x.txt", "x.txt"),
            ("..", "attachment-1"),
            (".hidden", "hidden"),
            ("a\\b\\c.doc", "c.doc"),
            ("", "attachment-1"),
            ("bad\u{7}name", "badname"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("\u{2067}report\u{2069}.pdf", "report.pdf"),
        ] {
            let got = safe_file_name(name, 0);
            assert_eq!(got, want, "{name:?}");
            assert!(is_inside(Path::new("/out"), &Path::new("/out").join(&got)));
        }
    }

    /// Two attachments named `x` and one `3-x` once gave `x`, `3-x`, `3-x`:
    /// the third replaced the second (`--overwrite`) or the read failed.
    #[test]
    fn attachments_of_the_same_name_get_distinct_files() {
        let parts: [(&str, &[u8]); 5] =
            [("x", b"one"), ("3-x", b"two"), ("x", b"three"), ("R.pdf", b"four"), ("dir/r.PDF", b"five")];
        for overwrite in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut sink = FileSink::new(dir.path()).unwrap();
            let mut reader = PlaintextReader::new();
            reader.push(&plaintext(&parts), &mut sink).unwrap();
            reader.finish().unwrap();
            let paths = sink.commit(overwrite).unwrap();
            let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
            assert_eq!(names, ["x", "3-x", "4-x", "R.pdf", "5-r.PDF"]);
            for (path, (_, data)) in paths.iter().zip(parts) {
                assert_eq!(std::fs::read(path).unwrap(), data, "{}", path.display());
            }
        }
        assert_eq!(unique_names(["a", "a", "2-a", "a"]), ["a", "2-a", "3-2-a", "4-a"]);
    }

    /// A killed reader leaves its staging directory (decrypted data)
    /// behind: the next sink on that output directory removes it, and
    /// leaves alone those of live readers and what is not a sink's.
    #[test]
    fn staging_directories_of_killed_readers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".focal-partial-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dead.join(".tmp1234"), b"decrypted").unwrap();
        let unlocked = dir.path().join(".focal-partial-nolock");
        std::fs::create_dir(&unlocked).unwrap();
        let file = dir.path().join(".focal-partial-file");
        std::fs::write(&file, b"").unwrap();

        let bytes = plaintext(&[("a", b"live data")]);
        let (head, tail) = bytes.split_at(bytes.len() - 1);
        let mut live = FileSink::new(dir.path()).unwrap();
        assert!(!dead.exists(), "the killed reader's directory is removed");
        let mut reader = PlaintextReader::new();
        reader.push(head, &mut live).unwrap();

        let other = FileSink::new(dir.path()).unwrap();
        let other_staging = other.staging.path().to_owned();
        assert!(live.staging.path().exists(), "a live reader's directory stays");
        assert!(unlocked.exists() && file.exists(), "only staging directories with a lock file go");
        drop(other);
        assert!(!other_staging.exists(), "a sink dropped removes its directory");

        reader.push(tail, &mut live).unwrap();
        reader.finish().unwrap();
        let staging = live.staging.path().to_owned();
        let saved = live.commit(false).unwrap();
        assert_eq!(std::fs::read(&saved[0]).unwrap(), b"live data");
        assert!(!staging.exists());
    }
}
