//! The focal point's X25519 encryption keys (age recipients), one file per
//! key in the profile's key directory.
//!
//! Each rotation adds a key with the next serial; older keys stay so that
//! messages sealed to a previously published key still open during the
//! overlap period, which [`KeyStore::prune`] (`focal keys prune`) ends by
//! removing keys superseded longer ago than the overlap. Files are
//! created with mode 0600 (directory 0700) and never overwritten. A new key
//! is written to a hidden temporary file, fsynced and linked into place,
//! and a pruned key is first renamed to a hidden name, so a client killed at
//! any instant never leaves a half-written `x25519-*.key` that would stop
//! every read; hidden leftovers are zeroed and removed by the next
//! `generate` or `prune`. A key file is a tiny TOML document:
//!
//! ```toml
//! serial = 2
//! created_at_ms = 1767225600000
//! public = "<64 hex>"
//! secret = "<64 hex>"
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use focal_proto::envelope::{RecipientPublicKey, RecipientSecretKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};

/// One encryption key with its serial.
pub struct EncryptionKey {
    /// Increases by one on each rotation; published in the directory entry.
    pub serial: u32,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// The secret key.
    pub secret: RecipientSecretKey,
    /// Its public key.
    pub public: RecipientPublicKey,
    /// The file holding it.
    pub path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    serial: u32,
    created_at_ms: i64,
    public: String,
    secret: String,
}

/// The key directory.
#[derive(Clone, Debug)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// A key store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All keys, newest (highest serial) first. Empty if the directory does
    /// not exist yet.
    pub fn all(&self) -> Result<Vec<EncryptionKey>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ClientError::io("cannot read key directory", &self.dir, e)),
        };
        let mut keys = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| ClientError::io("cannot read key directory", &self.dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("x25519-") && name.ends_with(".key") {
                keys.push(read_key(&path)?);
            }
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.serial));
        Ok(keys)
    }

    /// The newest key, or `NoKey`.
    pub fn current(&self) -> Result<EncryptionKey> {
        self.all()?.into_iter().next().ok_or_else(|| ClientError::NoKey { dir: self.dir.clone() })
    }

    /// Creates a key. Without `rotate` this refuses if a key exists already;
    /// with it, the new key gets the next serial and older keys are kept.
    pub fn generate(&self, rotate: bool, now_ms: i64) -> Result<EncryptionKey> {
        let existing = self.all()?;
        if let Some(newest) = existing.first()
            && !rotate
        {
            return Err(ClientError::invalid(
                "keys init",
                format!(
                    "{} already holds key serial {}; use `focal keys init --rotate` to add a new one",
                    self.dir.display(),
                    newest.serial
                ),
            ));
        }
        let serial = existing.first().map_or(1, |k| k.serial + 1);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| ClientError::io("cannot create key directory", &self.dir, e))?;
        self.remove_leftovers()?;
        let secret = RecipientSecretKey::generate();
        let public = secret.public_key();
        let file = KeyFile {
            serial,
            created_at_ms: now_ms,
            public: hex::encode(public.0),
            secret: hex::encode(*secret.to_bytes()),
        };
        let text = Zeroizing::new(toml::to_string(&file).expect("key file serialises"));
        let path = self.dir.join(format!("x25519-{serial:06}.key"));
        let tmp = self.dir.join(format!("{LEFTOVER}{serial:06}.key.new"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ClientError::io("cannot create key file", &tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| ClientError::io("cannot write key file", &tmp, e))?;
        // A link, unlike a rename, never replaces a key of the same serial
        // (written meanwhile by another client).
        fs::hard_link(&tmp, &path).map_err(|e| ClientError::io("cannot create key file", &path, e))?;
        fs::remove_file(&tmp).map_err(|e| ClientError::io("cannot remove", &tmp, e))?;
        self.sync_dir()?;
        Ok(EncryptionKey { serial, created_at_ms: now_ms, secret, public, path })
    }

    /// Zeroes and removes hidden key files left by a client killed while it
    /// wrote or pruned a key.
    fn remove_leftovers(&self) -> Result<()> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Ok(()) };
        for entry in rd.flatten() {
            if entry.file_name().to_string_lossy().starts_with(LEFTOVER) {
                destroy(&entry.path())?;
            }
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ClientError::io("cannot sync key directory", &self.dir, e))
    }

    /// Ends the overlap of a rotation: removes every key superseded more
    /// than `overlap` ago, i.e. each key for which the next newer key was
    /// created at or before `now_ms - overlap`. The newest key is always
    /// kept. Messages sealed to a removed key can no longer be opened, so
    /// the overlap must outlast the time senders may still seal to the old
    /// key: messages already queued (until their expiry) and directory
    /// entries cached by relays of other networks (5 minutes). Key files
    /// are overwritten with zeros before they are removed. Returns the
    /// serials removed, oldest first.
    pub fn prune(&self, overlap: std::time::Duration, now_ms: i64) -> Result<Vec<u32>> {
        let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
        self.remove_leftovers()?;
        let keys = self.all()?;
        let mut removed = Vec::new();
        for pair in keys.windows(2) {
            let (newer, older) = (&pair[0], &pair[1]);
            if newer.created_at_ms.saturating_add(overlap_ms) > now_ms {
                continue;
            }
            // Out of `all`'s sight first: a kill while zeroing must not
            // leave a key file that does not parse.
            let hidden = self.dir.join(format!("{LEFTOVER}{:06}.key.pruned", older.serial));
            fs::rename(&older.path, &hidden)
                .map_err(|e| ClientError::io("cannot remove key file", &older.path, e))?;
            self.sync_dir()?;
            destroy(&hidden)?;
            removed.push(older.serial);
        }
        if !removed.is_empty() {
            self.sync_dir()?;
        }
        removed.reverse();
        Ok(removed)
    }
}

/// Hidden key files (being written or pruned) start with this.
const LEFTOVER: &str = ".x25519-";

/// Overwrites a key file with zeros, syncs and removes it.
fn destroy(path: &Path) -> Result<()> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(&vec![0u8; len as usize]).and_then(|()| f.sync_all()))
        .and_then(|()| fs::remove_file(path))
        .map_err(|e| ClientError::io("cannot remove key file", path, e))
}

fn read_key(path: &Path) -> Result<EncryptionKey> {
    let text = Zeroizing::new(
        fs::read_to_string(path).map_err(|e| ClientError::io("cannot read key file", path, e))?,
    );
    let bad = |reason: String| ClientError::invalid(format!("key file {}", path.display()), reason);
    let file: KeyFile = toml::from_str(&text).map_err(|e| bad(e.message().replace('\n', " ")))?;
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(&file.secret, &mut secret[..]).map_err(|e| bad(format!("secret: {e}")))?;
    let secret = RecipientSecretKey::from_bytes(*secret);
    let public = secret.public_key();
    if hex::encode(public.0) != file.public {
        return Err(bad("public key does not match the secret key".into()));
    }
    Ok(EncryptionKey {
        serial: file.serial,
        created_at_ms: file.created_at_ms,
        secret,
        public,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_rotate_and_keep_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path().join("keys"));
        assert!(matches!(ks.current(), Err(ClientError::NoKey { .. })));
        let k1 = ks.generate(false, 1).unwrap();
        assert_eq!(k1.serial, 1);
        let mode = fs::metadata(&k1.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(ks.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let e = ks.generate(false, 2).err().unwrap().to_string();
        assert!(e.contains("--rotate"), "{e}");
        let k2 = ks.generate(true, 3).unwrap();
        assert_eq!(k2.serial, 2);
        let all = ks.all().unwrap();
        assert_eq!(all.iter().map(|k| k.serial).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(all[1].public, k1.public);
        assert_eq!(ks.current().unwrap().public, k2.public);
    }

    #[test]
    fn hidden_leftovers_of_a_killed_write_or_prune_are_ignored_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path().join("keys"));
        ks.generate(false, 1).unwrap();
        // What a kill mid-write or mid-prune leaves: not a key to `all`.
        let half_written = ks.dir().join(".x25519-000002.key.new");
        let half_pruned = ks.dir().join(".x25519-000000.key.pruned");
        fs::write(&half_written, b"serial = 2\ncreated_at_").unwrap();
        fs::write(&half_pruned, [0u8; 40]).unwrap();
        assert_eq!(ks.all().unwrap().len(), 1, "reads still work");
        let k2 = ks.generate(true, 2).unwrap();
        assert_eq!(k2.serial, 2);
        assert!(!half_written.exists() && !half_pruned.exists());
        let names: Vec<String> = fs::read_dir(ks.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn prune_removes_keys_only_after_the_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path().join("keys"));
        let day = 86_400_000;
        let overlap = std::time::Duration::from_millis(10 * day as u64);
        ks.generate(false, 0).unwrap();
        assert!(ks.prune(overlap, 100 * day).unwrap().is_empty(), "a single key is never removed");
        ks.generate(true, 20 * day).unwrap();
        let k3 = ks.generate(true, 25 * day).unwrap();
        assert!(ks.prune(overlap, 29 * day).unwrap().is_empty(), "still in the overlap");
        assert_eq!(ks.prune(overlap, 30 * day).unwrap(), vec![1]);
        assert_eq!(ks.all().unwrap().iter().map(|k| k.serial).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(ks.prune(overlap, 35 * day).unwrap(), vec![2]);
        assert_eq!(ks.current().unwrap().public, k3.public);
        assert_eq!(ks.all().unwrap().len(), 1);
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path());
        let k = ks.generate(false, 1).unwrap();
        let text = fs::read_to_string(&k.path).unwrap();
        let other = hex::encode(RecipientSecretKey::generate().public_key().0);
        let bad = text.replace(&hex::encode(k.public.0), &other);
        fs::write(&k.path, bad).unwrap();
        let e = ks.all().err().unwrap().to_string();
        assert!(e.contains("does not match"), "{e}");
    }
}
