//! Payload ciphertext storage. Payloads of at most [`INLINE_MAX`] bytes go
//! into the sled batch (`p/<msgkey>`); larger ones are streamed to a file
//! under `<data_dir>/payloads/` while they arrive, and file and directory are
//! fsynced before the batch that references them is written. A file no
//! envelope references (a send that failed or a crash between the two) is
//! removed when the store opens.
//!
//! Nothing here holds a whole large payload in memory: a [`PayloadSink`]
//! writes chunk by chunk, a [`PayloadSource`] reads chunk by chunk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::RelayError;

/// Largest payload kept inline in sled.
pub const INLINE_MAX: u64 = 64 * 1024;

/// The payload directory and the bytes its files hold.
#[derive(Debug)]
pub(crate) struct PayloadDir {
    pub(crate) path: PathBuf,
    pub(crate) bytes: AtomicU64,
    /// Bytes announced by payloads still being received (see [`Reservation`]).
    pub(crate) reserved: AtomicU64,
}

/// Room held in the store for a payload being received, from its header's
/// size until it is finished or dropped: uploads running side by side each
/// count against `limits.max_store_bytes` before their bytes reach the disk.
#[derive(Debug)]
pub(crate) struct Reservation {
    dir: Arc<PayloadDir>,
    size: u64,
}

impl Reservation {
    pub(crate) fn new(dir: &Arc<PayloadDir>, size: u64) -> Reservation {
        dir.reserved.fetch_add(size, Ordering::Relaxed);
        Reservation { dir: dir.clone(), size }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.dir.reserved.fetch_sub(self.size, Ordering::Relaxed);
    }
}

impl PayloadDir {
    pub(crate) fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Removes a committed file whose envelope is gone.
    pub(crate) fn remove(&self, name: &str, size: u64) {
        match std::fs::remove_file(self.file_path(name)) {
            Ok(()) => {
                self.bytes.fetch_sub(size.min(self.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %self.file_path(name).display(), error = %e, "cannot remove payload file")
            }
        }
    }

    /// Removes every file not in `referenced` (and stray partial files);
    /// counts the bytes of those kept.
    pub(crate) fn sweep_orphans(
        &self,
        referenced: &std::collections::HashSet<String>,
    ) -> Result<usize, RelayError> {
        let mut removed = 0;
        let mut kept = 0u64;
        for entry in std::fs::read_dir(&self.path).map_err(RelayError::io(&self.path))? {
            let entry = entry.map_err(RelayError::io(&self.path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if referenced.contains(&name) {
                kept += entry.metadata().map_err(RelayError::io(entry.path()))?.len();
            } else {
                std::fs::remove_file(entry.path()).map_err(RelayError::io(entry.path()))?;
                removed += 1;
            }
        }
        self.bytes.store(kept, Ordering::Relaxed);
        Ok(removed)
    }
}

/// Why a received payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// More bytes arrived than the header announced.
    #[error("payload is longer than the header's payload_size of {expected} bytes")]
    TooLong {
        /// payload_size of the header.
        expected: u64,
    },
    /// The stream ended with another size than announced.
    #[error("payload size mismatch: header says {expected} bytes, received {received}")]
    SizeMismatch {
        /// payload_size of the header.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// SHA-256 of what arrived differs from payload_sha256.
    #[error("payload digest mismatch")]
    DigestMismatch,
    /// Writing the payload file failed.
    #[error(transparent)]
    Store(#[from] RelayError),
}

enum Sink {
    Inline(Vec<u8>),
    File(tokio::fs::File),
}

/// Receives one payload, chunk by chunk, computing SHA-256 and size.
pub struct PayloadSink {
    sink: Sink,
    expected: u64,
    received: u64,
    digest: ring::digest::Context,
    /// The file being written (removed on drop unless committed).
    file: Option<PayloadFile>,
    /// The room this payload holds until it is finished.
    _room: Reservation,
}

impl PayloadSink {
    pub(crate) async fn new(
        dir: &Arc<PayloadDir>,
        expected: u64,
        room: Reservation,
    ) -> Result<Self, RelayError> {
        let (sink, file) = if expected <= INLINE_MAX {
            (Sink::Inline(Vec::with_capacity(expected as usize)), None)
        } else {
            let name = format!("{}.payload", random_hex(12));
            let path = dir.file_path(&name);
            let f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
                .map_err(RelayError::io(&path))?;
            (Sink::File(f), Some(PayloadFile { dir: dir.clone(), name, size: 0, keep: false }))
        };
        Ok(PayloadSink {
            sink,
            expected,
            received: 0,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            file,
            _room: room,
        })
    }

    /// Appends a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), PayloadError> {
        let total = self.received + chunk.len() as u64;
        if total > self.expected {
            return Err(PayloadError::TooLong { expected: self.expected });
        }
        self.digest.update(chunk);
        match &mut self.sink {
            Sink::Inline(buf) => buf.extend_from_slice(chunk),
            Sink::File(f) => {
                let path = self.file.as_ref().map(|p| p.path()).unwrap_or_default();
                f.write_all(chunk).await.map_err(RelayError::io(path))?;
            }
        }
        self.received = total;
        Ok(())
    }

    /// Checks size and digest; for a file, fsyncs it and its directory.
    pub async fn finish(self, expected_sha256: &[u8]) -> Result<ReceivedPayload, PayloadError> {
        if self.received != self.expected {
            return Err(PayloadError::SizeMismatch { expected: self.expected, received: self.received });
        }
        if self.digest.finish().as_ref() != expected_sha256 {
            return Err(PayloadError::DigestMismatch);
        }
        match self.sink {
            Sink::Inline(buf) => Ok(ReceivedPayload::Inline(buf)),
            Sink::File(mut f) => {
                let mut file = self.file.expect("file sink has a file");
                let path = file.path();
                f.flush().await.map_err(RelayError::io(&path))?;
                f.sync_all().await.map_err(RelayError::io(&path))?;
                drop(f);
                let dir =
                    tokio::fs::File::open(&file.dir.path).await.map_err(RelayError::io(&file.dir.path))?;
                dir.sync_all().await.map_err(RelayError::io(&file.dir.path))?;
                file.size = self.received;
                file.dir.bytes.fetch_add(self.received, Ordering::Relaxed);
                Ok(ReceivedPayload::File(file))
            }
        }
    }
}

/// A complete, verified payload waiting to be committed.
#[derive(Debug)]
pub enum ReceivedPayload {
    /// At most [`INLINE_MAX`] bytes, to go into the batch.
    Inline(Vec<u8>),
    /// A fsynced file.
    File(PayloadFile),
}

/// A payload file not yet referenced by a committed envelope: removed when
/// dropped, unless the writer kept it after the commit.
#[derive(Debug)]
pub struct PayloadFile {
    dir: Arc<PayloadDir>,
    pub(crate) name: String,
    pub(crate) size: u64,
    keep: bool,
}

impl PayloadFile {
    fn path(&self) -> PathBuf {
        self.dir.file_path(&self.name)
    }
    /// The envelope referencing this file is committed.
    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for PayloadFile {
    fn drop(&mut self) {
        if !self.keep {
            // `size` is 0 until `finish` counted the file, so nothing is
            // subtracted for a file that never was.
            self.dir.remove(&self.name, self.size);
        }
    }
}

/// Reads a stored payload chunk by chunk from an offset.
pub enum PayloadSource {
    /// Inline bytes from sled.
    Inline {
        /// The value.
        bytes: sled::IVec,
        /// Next position.
        pos: usize,
    },
    /// A payload file, positioned at the next byte.
    File(tokio::fs::File, PathBuf),
}

impl PayloadSource {
    /// Inline bytes held outside the tree (an outbox record holding its message whole).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        PayloadSource::Inline { bytes: sled::IVec::from(bytes), pos: 0 }
    }

    pub(crate) async fn open_file(path: &Path, offset: u64) -> Result<Self, RelayError> {
        let mut f = tokio::fs::File::open(path).await.map_err(RelayError::io(path))?;
        f.seek(std::io::SeekFrom::Start(offset)).await.map_err(RelayError::io(path))?;
        Ok(PayloadSource::File(f, path.to_owned()))
    }

    /// The next chunk of at most `max` bytes, or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Vec<u8>>, RelayError> {
        match self {
            PayloadSource::Inline { bytes, pos } => {
                if *pos >= bytes.len() {
                    return Ok(None);
                }
                let end = (*pos + max).min(bytes.len());
                let chunk = bytes[*pos..end].to_vec();
                *pos = end;
                Ok(Some(chunk))
            }
            PayloadSource::File(f, path) => {
                let mut buf = vec![0u8; max];
                let mut filled = 0;
                while filled < max {
                    let n = f.read(&mut buf[filled..]).await.map_err(RelayError::io(&*path))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(None);
                }
                buf.truncate(filled);
                Ok(Some(buf))
            }
        }
    }
}

/// `n` random bytes, hex-encoded.
pub(crate) fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut b).expect("system RNG");
    hex::encode(b)
}
