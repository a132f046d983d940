//! Files of a secretariat's PKI directory, as the `focal-certs` tool keeps them:
//!
//! ```text
//! D/<net>/ca.pem  ca.key           the network CA (key 0600)
//! D/<net>/<role>-<name>.pem .key   issued certificates (keys 0600)
//! D/<net>/issued.toml              every serial issued, with its identity
//! D/<net>/revoked.toml             revoked serials + the last CRL number
//! D/<net>/crl.pem                  the current CRL
//! D/<net>/.lock                    held while a command rewrites the state
//! D/<net>/ca.replaced-<unix>[-n].* a CA replaced by `init-network --force`
//! D/<net>/crl.replaced-<unix>[-n].pem  the CRL signed by that CA (`crl`)
//! ```
//!
//! Private keys are created with mode 0600 from the start (never chmod-ed
//! afterwards); network directories are created 0700. Without `force`, an
//! existing file is never overwritten. Replacing files (state, CRL, `--force`,
//! renew) writes a new file next to the old one and renames it over, so a
//! reader sees either the old or the new contents, and a forced key keeps 0600.
//!
//! [`replace`] is also the workspace's durable file write (file fsynced
//! before the rename, directory fsynced after it): the relay writes its
//! audit-log and witness keys with it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use focal_proto::{NetworkId, Role};

use crate::error::{CertsError, Result};

/// Permission class of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 0600: private keys.
    Secret,
    /// 0644: certificates, CRLs, bundles, state.
    Public,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Secret => 0o600,
            Mode::Public => 0o644,
        }
    }
}

fn open_new(path: &Path, mode: Mode) -> std::io::Result<std::fs::File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode.bits());
    }
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)
}

/// Writes a new file durably; refuses to overwrite unless `force` (then
/// replaces it). The contents go to a temporary file beside it, fsynced,
/// then linked to `path` (a link, unlike a rename, fails if `path` exists),
/// then the directory is fsynced: a crash never leaves a truncated key or
/// certificate under the final name.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: Mode, force: bool) -> Result<()> {
    if force {
        return replace(path, contents, mode);
    }
    install(path, contents, mode, |from, to| std::fs::hard_link(from, to)).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CertsError::Exists { path: path.to_owned() },
        _ => CertsError::io(path, e),
    })
}

/// Holds a network directory's lock (`.lock`) until dropped: each command
/// that reads and rewrites `issued.toml` or `revoked.toml` takes it, so two
/// runs at once cannot lose each other's serial or revocation.
pub(crate) struct DirLock(#[allow(dead_code)] std::fs::File);

/// Locks `dir` (waiting for another run of the tool to finish).
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CertsError::io(&path, e))?;
    file.lock().map_err(|e| CertsError::io(&path, e))?;
    remove_leftover_temporaries(dir);
    Ok(DirLock(file))
}

/// Every write in a network directory happens under its lock, so with the
/// lock held a temporary file of [`install`] (`.<name>.tmp-<pid>`) is what
/// a run killed mid-write left: possibly a private key's copy. Overwritten
/// with zeros and removed; failures are only logged (the command goes on).
fn remove_leftover_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let leftover = name.starts_with('.')
            && name
                .rsplit_once(".tmp-")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if !leftover {
            continue;
        }
        let path = entry.path();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let removed = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&vec![0u8; len as usize]).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::remove_file(&path));
        if let Err(e) = removed {
            eprintln!("focal-certs: warning: cannot remove the leftover {}: {e}", path.display());
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Refuses early if any of `paths` exists (so a multi-file command writes
/// nothing rather than half its files).
pub(crate) fn refuse_existing(paths: &[&Path], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CertsError::Exists { path: p.to_path_buf() }),
        None => Ok(()),
    }
}

/// Atomically and durably replaces (or creates) `path` with `contents`: a
/// temporary file beside it, created with `mode` and fsynced, is renamed
/// over `path`, then the directory is fsynced so that the rename itself
/// survives a power loss (without it the new name can vanish, and the old
/// contents or no file come back). The error names `path`; the temporary
/// file does not outlive a failure.
pub fn replace(path: &Path, contents: &[u8], mode: Mode) -> Result<()> {
    install(path, contents, mode, |from, to| std::fs::rename(from, to)).map_err(|e| CertsError::io(path, e))
}

/// Writes `contents` to a temporary file beside `path` (created with
/// `mode`, fsynced), puts it in place with `put` (a rename replaces, a hard
/// link refuses an existing `path`), then fsyncs the directory. The
/// temporary file does not outlive the call.
fn install(
    path: &Path,
    contents: &[u8],
    mode: Mode,
    put: fn(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = open_new(&tmp, mode)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        put(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    // The new name is durable only once its directory is.
    sync_dir(dir)
}

/// fsyncs directory `dir`, making the names created or renamed in it
/// durable. Unix only: elsewhere a directory cannot be opened as a file.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let failed = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("fsync of directory {}: {e}", dir.display()))
    };
    #[cfg(test)]
    if tests::FAIL_DIR_SYNC.with(|f| f.take()) {
        return Err(failed(std::io::Error::other("injected failure")));
    }
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
    #[cfg(not(unix))]
    let _ = (dir, failed);
    Ok(())
}

/// Reads a UTF-8 file, naming it on error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CertsError::io(path, e))
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| CertsError::io(dir, e))
}

/// The files of one network under a PKI directory.
#[derive(Clone, Debug)]
pub(crate) struct NetDir {
    pub(crate) dir: PathBuf,
}

impl NetDir {
    pub(crate) fn new(root: &Path, network: &NetworkId) -> Self {
        NetDir { dir: root.join(network.as_str()) }
    }
    pub(crate) fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub(crate) fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub(crate) fn leaf_cert(&self, role: Role, name: &str) -> PathBuf {
        self.dir.join(format!("{role}-{name}.pem"))
    }
    pub(crate) fn leaf_key(&self, role: Role, name: &str) -> PathBuf {
        self.dir.join(format!("{role}-{name}.key"))
    }
    pub(crate) fn issued(&self) -> PathBuf {
        self.dir.join("issued.toml")
    }
    pub(crate) fn revoked(&self) -> PathBuf {
        self.dir.join("revoked.toml")
    }
    pub(crate) fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
}

/// `issued.toml`: every certificate the tool issued for a network.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuedFile {
    #[serde(default, rename = "cert")]
    pub(crate) certs: Vec<IssuedRecord>,
}

/// One issued certificate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuedRecord {
    pub(crate) serial_hex: String,
    pub(crate) role: Role,
    pub(crate) name: String,
    pub(crate) issued_at: u64,
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
}

/// `revoked.toml`: revoked serials and the last CRL number used.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokedFile {
    #[serde(default)]
    pub(crate) last_crl_number: u64,
    #[serde(default, rename = "revoked")]
    pub(crate) entries: Vec<RevokedRecord>,
}

/// One revoked certificate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokedRecord {
    pub(crate) serial_hex: String,
    pub(crate) revoked_at: u64,
    pub(crate) role: Role,
    pub(crate) name: String,
}

/// Loads a TOML state file; a missing file is the empty state.
pub(crate) fn load_state<T: Default + serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| CertsError::State { path: path.to_owned(), reason: e.message().trim().to_owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(CertsError::io(path, e)),
    }
}

/// Writes a TOML state file atomically.
pub(crate) fn save_state<T: serde::Serialize>(path: &Path, state: &T, header: &str) -> Result<()> {
    let body = toml::to_string(state)
        .map_err(|e| CertsError::State { path: path.to_owned(), reason: e.to_string() })?;
    replace(path, format!("{header}\n{body}").as_bytes(), Mode::Public)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// The next directory fsync of this thread fails (a failing disk).
        pub(super) static FAIL_DIR_SYNC: Cell<bool> = const { Cell::new(false) };
    }

    #[test]
    fn replace_writes_durably_and_reports_a_failed_directory_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.key");
        replace(&path, b"one", Mode::Secret).unwrap();
        replace(&path, b"two", Mode::Secret).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }

        // The rename happened but may not survive a power loss: an error,
        // naming the file and the directory, and no temporary file left.
        FAIL_DIR_SYNC.with(|f| f.set(true));
        let e = replace(&path, b"three", Mode::Secret).unwrap_err().to_string();
        assert!(e.contains("log.key") && e.contains("fsync of directory"), "{e}");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("log.key")]);
    }

    #[test]
    fn write_new_syncs_the_directory_and_reports_a_failure() {
        let tmp = tempfile::tempdir().unwrap();
        write_new(&tmp.path().join("ca.key"), b"key", Mode::Secret, false).unwrap();
        let e = write_new(&tmp.path().join("ca.key"), b"again", Mode::Secret, false).unwrap_err();
        assert!(matches!(e, CertsError::Exists { .. }), "{e}");
        FAIL_DIR_SYNC.with(|f| f.set(true));
        let e =
            write_new(&tmp.path().join("other.key"), b"key", Mode::Secret, false).unwrap_err().to_string();
        assert!(e.contains("other.key") && e.contains("fsync of directory"), "{e}");
    }
}
