//! The on-disk layout of an auditor's log directory (see the module docs of
//! `audit`): the entries file reader/writer, checkpoint files and the state
//! file, all written so that an interrupted fetch can resume.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use focal_proto::ProtoError;
use focal_proto::audit::{CheckpointBody, Hash, MAX_LEAF_BYTES, TreeHead, hash_from_bytes};

use super::AuditError;

pub(crate) const ENTRIES: &str = "entries.bin";
pub(crate) const CHECKPOINTS: &str = "checkpoints";
pub(crate) const STATE: &str = "state.json";

/// One stored entry.
pub(crate) struct Entry {
    pub(crate) index: u64,
    pub(crate) leaf: Vec<u8>,
}

/// Reads `entries.bin` sequentially, checking framing and index order.
pub(crate) struct EntryReader {
    path: PathBuf,
    r: BufReader<File>,
    /// Position (expected index) of the next entry.
    pub(crate) position: u64,
    /// Byte offset of the next entry.
    pub(crate) offset: u64,
    /// Length of the file when opened.
    pub(crate) len: u64,
}

impl EntryReader {
    /// Opens the entries file at byte `offset`, whose next entry is `position`.
    /// A missing file reads as empty.
    pub(crate) fn open(dir: &Path, offset: u64, position: u64) -> Result<Option<Self>, AuditError> {
        let path = dir.join(ENTRIES);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound && offset == 0 => return Ok(None),
            Err(e) => return Err(AuditError::Io { path, source: e }),
        };
        let len = f.metadata().map_err(AuditError::io(&path))?.len();
        f.seek(SeekFrom::Start(offset)).map_err(AuditError::io(&path))?;
        Ok(Some(EntryReader { r: BufReader::with_capacity(1 << 20, f), path, position, offset, len }))
    }

    fn bad(&self, detail: String) -> AuditError {
        AuditError::Entries { path: self.path.clone(), detail }
    }

    /// Reads up to `buf.len()` bytes; returns how many (less only at end of file).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, AuditError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(AuditError::Io { path: self.path.clone(), source: e }),
            }
        }
        Ok(got)
    }

    /// The next entry; `Ok(None)` at a clean end. With `lenient`, a partial
    /// entry at the end (an interrupted fetch) also reads as the end.
    pub(crate) fn next_entry(&mut self, lenient: bool) -> Result<Option<Entry>, AuditError> {
        let pos = self.position;
        let mut head = [0u8; 12];
        let got = self.fill(&mut head)?;
        if got == 0 {
            return Ok(None);
        }
        if got < head.len() {
            return if lenient {
                Ok(None)
            } else {
                Err(self
                    .bad(format!("the file ends inside the header of entry {pos} (byte {})", self.offset)))
            };
        }
        let index = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(head[8..].try_into().unwrap_or_default()) as usize;
        if len > MAX_LEAF_BYTES {
            return Err(self.bad(format!(
                "entry {pos} (byte {}) announces a leaf of {len} bytes, more than {MAX_LEAF_BYTES}: the file is damaged",
                self.offset
            )));
        }
        let mut leaf = vec![0u8; len];
        let got = self.fill(&mut leaf)?;
        if got < len {
            return if lenient {
                Ok(None)
            } else {
                Err(self.bad(format!(
                    "the file ends inside entry {pos}: {} of its {len} bytes are missing",
                    len - got
                )))
            };
        }
        if index != pos {
            return Err(self.bad(format!(
                "entry at position {pos} carries index {index}: entries were deleted, inserted or reordered"
            )));
        }
        self.position += 1;
        self.offset += 12 + len as u64;
        Ok(Some(Entry { index, leaf }))
    }
}

/// Appends entries to `entries.bin`, after truncating it to `offset`.
pub(crate) struct EntryWriter {
    path: PathBuf,
    w: BufWriter<File>,
    pub(crate) offset: u64,
}

impl EntryWriter {
    pub(crate) fn open(dir: &Path, offset: u64) -> Result<Self, AuditError> {
        let path = dir.join(ENTRIES);
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(AuditError::io(&path))?;
        f.set_len(offset).map_err(AuditError::io(&path))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.seek(SeekFrom::Start(offset)).map_err(AuditError::io(&path))?;
        Ok(EntryWriter { path, w, offset })
    }

    pub(crate) fn append(&mut self, index: u64, leaf: &[u8]) -> Result<(), AuditError> {
        let len =
            u32::try_from(leaf.len()).map_err(|_| AuditError::Relay(format!("leaf {index} is too large")))?;
        let io = AuditError::io(&self.path);
        self.w
            .write_all(&index.to_be_bytes())
            .and_then(|_| self.w.write_all(&len.to_be_bytes()))
            .map_err(io)?;
        self.w.write_all(leaf).map_err(AuditError::io(&self.path))?;
        self.offset += 12 + leaf.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs; returns the file's length.
    pub(crate) fn sync(mut self) -> Result<u64, AuditError> {
        self.w.flush().map_err(AuditError::io(&self.path))?;
        self.w.get_ref().sync_all().map_err(AuditError::io(&self.path))?;
        Ok(self.offset)
    }
}

/// Cuts `entries.bin` back to `offset` bytes (dropping unverified entries).
pub(crate) fn truncate_entries(dir: &Path, offset: u64) -> Result<(), AuditError> {
    let path = dir.join(ENTRIES);
    match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f.set_len(offset).map_err(AuditError::io(&path)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AuditError::Io { path, source: e }),
    }
}

/// The checkpoint notes stored in the directory, by size ascending.
pub(crate) fn checkpoints(dir: &Path) -> Result<Vec<(PathBuf, String)>, AuditError> {
    let cdir = dir.join(CHECKPOINTS);
    let rd = match std::fs::read_dir(&cdir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::Io { path: cdir, source: e }),
    };
    let mut out = Vec::new();
    for e in rd {
        let path = e.map_err(AuditError::io(&cdir))?.path();
        if path.extension().is_some_and(|x| x == "note") {
            let note = std::fs::read_to_string(&path).map_err(AuditError::io(&path))?;
            out.push((path, note));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn checkpoint_path(dir: &Path, size: u64) -> PathBuf {
    dir.join(CHECKPOINTS).join(format!("{size:020}.note"))
}

/// Writes a file atomically (temporary file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AuditError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(AuditError::io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(AuditError::io(&tmp))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(AuditError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(AuditError::io(path))
}

/// The last checkpoint this auditor accepted, and where the entries file
/// stood at that size.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct State {
    pub(crate) origin: String,
    pub(crate) verifier_key: String,
    pub(crate) size: u64,
    pub(crate) root: String,
    pub(crate) frontier: Vec<String>,
    pub(crate) entries_bytes: u64,
}

impl State {
    pub(crate) fn load(dir: &Path) -> Result<Option<State>, AuditError> {
        let path = dir.join(STATE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AuditError::Io { path, source: e }),
        };
        let st: State = serde_json::from_slice(&text)
            .map_err(|e| AuditError::State { path: path.clone(), detail: e.to_string() })?;
        st.head().map_err(|detail| AuditError::State { path: path.clone(), detail })?;
        st.frontier_hashes().map_err(|detail| AuditError::State { path, detail })?;
        Ok(Some(st))
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), AuditError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| AuditError::Invalid(e.to_string()))?;
        write_atomic(&dir.join(STATE), &text)
    }

    pub(crate) fn head(&self) -> Result<TreeHead, String> {
        Ok(TreeHead { size: self.size, root: parse_hash(&self.root)? })
    }

    pub(crate) fn frontier_hashes(&self) -> Result<Vec<Hash>, String> {
        self.frontier.iter().map(|h| parse_hash(h)).collect()
    }
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    let b = B64.decode(s).map_err(|e| format!("hash {s:?}: {e}"))?;
    hash_from_bytes(&b, "hash").map_err(|e| e.to_string())
}

pub(crate) fn hash_b64(h: &Hash) -> String {
    B64.encode(h.0)
}

/// The origin of the log kept in `dir` (from its state or latest checkpoint).
pub(crate) fn origin(dir: &Path) -> Result<String, AuditError> {
    if let Some(st) = State::load(dir)? {
        return Ok(st.origin);
    }
    let cps = checkpoints(dir)?;
    let (path, note) = cps.last().ok_or_else(|| AuditError::NoCheckpoint(dir.to_owned()))?;
    let text = note.split_once("\n\n").map_or(note.as_str(), |(t, _)| t);
    let body = CheckpointBody::parse(format!("{text}\n").as_bytes())
        .map_err(|e| AuditError::At { what: path.display().to_string(), source: e })?;
    Ok(body.origin)
}

/// Calls `f` with each accepted entry of `dir`: the first `size` entries of
/// the state file, which must end at its `entries_bytes`. Bytes beyond are
/// never read (see [`left_over_bytes`]).
pub(crate) fn for_each_accepted(
    dir: &Path,
    mut f: impl FnMut(Entry) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let st = State::load(dir)?.ok_or_else(|| AuditError::NotAccepted(dir.to_owned()))?;
    let truncated = |found| AuditError::Entries {
        path: dir.join(ENTRIES),
        detail: format!("{}", ProtoError::LogTruncated { expected: st.size, found }),
    };
    let Some(mut r) = EntryReader::open(dir, 0, 0)? else {
        return if st.size == 0 { Ok(()) } else { Err(truncated(0)) };
    };
    while r.position < st.size {
        match r.next_entry(false)? {
            Some(e) => f(e)?,
            None => return Err(truncated(r.position)),
        }
    }
    if r.offset != st.entries_bytes {
        return Err(AuditError::State {
            path: dir.join(STATE),
            detail: format!(
                "its {} accepted entries end at byte {} of {ENTRIES}, not at byte {} as it records",
                st.size, r.offset, st.entries_bytes
            ),
        });
    }
    Ok(())
}

/// Bytes of `entries.bin` beyond the accepted entries (all of it when there is
/// no state file): entries a fetch downloaded but never matched to a signed
/// checkpoint, kept for the next fetch to resume with.
pub fn left_over_bytes(dir: &Path) -> Result<u64, AuditError> {
    let path = dir.join(ENTRIES);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(AuditError::Io { path, source: e }),
    };
    Ok(len.saturating_sub(State::load(dir)?.map_or(0, |st| st.entries_bytes)))
}
