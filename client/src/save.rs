//! Saving the attachments of a message being read ([`crate::read`]): a
//! [`FileSink`] writes them to hidden temporary files in the output
//! directory and, once the message is verified, moves them to their final
//! names.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use focal_proto::pb;

use crate::error::{ClientError, Result};
use crate::plaintext::AttachmentSink;

/// Writes attachments to hidden temporary files in the output directory.
pub(crate) struct FileSink {
    pub(crate) dir: PathBuf,
    pub(crate) files: Vec<(pb::Attachment, tempfile::NamedTempFile, Option<BufWriter<File>>)>,
}

impl AttachmentSink for FileSink {
    fn begin(&mut self, index: usize, meta: &pb::Attachment) -> Result<()> {
        debug_assert_eq!(index, self.files.len());
        let tmp = tempfile::Builder::new()
            .prefix(".focal-partial-")
            .tempfile_in(&self.dir)
            .map_err(|e| ClientError::io("cannot create temporary file in", &self.dir, e))?;
        let w = BufWriter::new(tmp.reopen().map_err(|e| ClientError::io("cannot open", tmp.path(), e))?);
        self.files.push((meta.clone(), tmp, Some(w)));
        Ok(())
    }

    fn write(&mut self, index: usize, data: &[u8]) -> Result<()> {
        let (_, tmp, w) = &mut self.files[index];
        w.as_mut()
            .expect("open writer")
            .write_all(data)
            .map_err(|e| ClientError::io("cannot write", tmp.path(), e))
    }
}

/// A safe file name for an attachment: the last path component, without
/// control characters; `attachment-<n>` if nothing usable is left.
pub fn safe_file_name(name: &str, index: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() { format!("attachment-{}", index + 1) } else { cleaned }
}

impl FileSink {
    /// Moves every temporary file to its final name (all names are checked
    /// before the first move).
    pub(crate) fn commit(self, overwrite: bool) -> Result<Vec<PathBuf>> {
        let mut targets: Vec<PathBuf> = Vec::new();
        for (i, (meta, _, _)) in self.files.iter().enumerate() {
            let mut name = safe_file_name(&meta.name, i);
            if targets.iter().any(|t| t.file_name().is_some_and(|n| n == name.as_str())) {
                name = format!("{}-{name}", i + 1);
            }
            let target = self.dir.join(&name);
            if !overwrite && target.exists() {
                return Err(ClientError::invalid(
                    "output",
                    format!("{} exists already (use --overwrite to replace it)", target.display()),
                ));
            }
            targets.push(target);
        }
        for ((_, tmp, w), target) in self.files.into_iter().zip(&targets) {
            let path = tmp.path().to_owned();
            if let Some(mut w) = w {
                w.flush().map_err(|e| ClientError::io("cannot write", &path, e))?;
            }
            let file = tmp.as_file();
            file.sync_all().map_err(|e| ClientError::io("cannot write", &path, e))?;
            let res = if overwrite { tmp.persist(target) } else { tmp.persist_noclobber(target) };
            res.map_err(|e| ClientError::io("cannot save attachment as", target, e.error))?;
        }
        Ok(targets)
    }
}

/// True if `p` is inside `dir` (for tests of the file-name sanitiser).
pub fn is_inside(dir: &Path, p: &Path) -> bool {
    p.parent() == Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            let got = safe_file_name(name, 0);
            assert_eq!(got, want, "{name:?}");
            assert!(is_inside(Path::new("/out"), &Path::new("/out").join(&got)));
        }
    }
}
