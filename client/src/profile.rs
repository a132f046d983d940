//! The client profile: one TOML file that says which relay to talk to, how to
//! recognise it, and where this focal point's certificate, keys and local
//! store live.
//!
//! ```toml
//! relay = "relay.carin.example:7443"   # host:port of the relay's gRPC listener
//! relay_network = "carin"               # the relay's certificate must chain to this network's CA
//! relay_name = "relay"                  # optional: focal://carin/relay/<relay_name> required
//! relay_server_name = "relay.carin.example"  # optional TLS name; default: host of `relay`
//! cert = "nl-fiod.crt"                  # this focal point's certificate (PEM)
//! key = "nl-fiod.key"                   # its Ed25519 private key (PKCS#8 PEM)
//! trust_bundle = "trust.toml"           # network id -> CA certificates
//! crls = ["carin.crl"]                  # optional CRL files (PEM)
//! key_dir = "keys"                      # X25519 encryption keys (created by `focal keys init`)
//! store_dir = "store"                   # local record of sent/received messages, temp files
//! retention = "365d"                    # optional: local records older than this are purged
//! ```
//!
//! Relative paths are resolved against the directory holding the profile.
//! Every error names the profile file and the offending key (or line).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use focal_proto::NetworkId;
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// The profile as written in TOML (paths as written, not yet resolved).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// `host:port` of the relay's gRPC listener.
    pub relay: String,
    /// Network whose CA must have issued the relay's certificate.
    pub relay_network: String,
    /// If set, the relay certificate must name exactly this relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_name: Option<String>,
    /// TLS server name to verify (DNS name or IP); default: host of `relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_server_name: Option<String>,
    /// This focal point's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Trust bundle (TOML, network id -> CA certificates).
    pub trust_bundle: PathBuf,
    /// CRL files (PEM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<PathBuf>,
    /// Directory of X25519 encryption keys.
    pub key_dir: PathBuf,
    /// Directory of the local client store.
    pub store_dir: PathBuf,
    /// Local store retention (`"365d"`, `"12w"`, ...): records of sent and
    /// read messages and receipts older than this are purged when `focal`
    /// opens the store. Absent: kept until `focal purge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

impl ProfileFile {
    /// The TOML text of this profile.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a profile always serialises")
    }
}

/// A validated profile with absolute paths.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The file it was loaded from (for messages).
    pub path: PathBuf,
    /// `host:port` of the relay.
    pub relay: String,
    /// Host part of `relay`.
    pub relay_host: String,
    /// Port part of `relay`.
    pub relay_port: u16,
    /// Network of the relay's CA.
    pub relay_network: NetworkId,
    /// Required relay name, if any.
    pub relay_name: Option<String>,
    /// TLS server name to verify.
    pub server_name: String,
    /// Certificate file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Trust bundle file.
    pub trust_bundle: PathBuf,
    /// CRL files.
    pub crls: Vec<PathBuf>,
    /// Encryption key directory.
    pub key_dir: PathBuf,
    /// Local store directory.
    pub store_dir: PathBuf,
    /// Local store retention (see [`ProfileFile::retention`]).
    pub retention: Option<std::time::Duration>,
}

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|e| ClientError::Profile {
            path: path.to_owned(),
            reason: format!("cannot read: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Profile::parse(&text, path, &base)
    }

    /// Parses profile text; `path` is used in messages, `base` resolves
    /// relative paths.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Profile> {
        let err = |reason: String| ClientError::Profile { path: path.to_owned(), reason };
        let file: ProfileFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(l) => err(format!("line {l}: {msg}")),
                None => err(msg),
            }
        })?;
        Profile::from_file(file, path, base)
    }

    /// Validates an already-deserialised profile.
    pub fn from_file(file: ProfileFile, path: &Path, base: &Path) -> Result<Profile> {
        let err = |key: &str, reason: String| ClientError::Profile {
            path: path.to_owned(),
            reason: format!("key `{key}`: {reason}"),
        };
        let (host, port) = split_host_port(&file.relay).map_err(|r| err("relay", r))?;
        let relay_network =
            NetworkId::new(&file.relay_network).map_err(|e| err("relay_network", e.to_string()))?;
        if let Some(name) = &file.relay_name {
            focal_proto::address::validate_name(name).map_err(|e| err("relay_name", e.to_string()))?;
        }
        let server_name = match &file.relay_server_name {
            Some(s) if s.trim().is_empty() => return Err(err("relay_server_name", "empty".into())),
            Some(s) => s.clone(),
            None => host.clone(),
        };
        if rustls_pki_types::ServerName::try_from(server_name.clone()).is_err() {
            let key = if file.relay_server_name.is_some() { "relay_server_name" } else { "relay" };
            return Err(err(key, format!("{server_name:?} is not a valid DNS name or IP address")));
        }
        let resolve = |key: &str, p: &Path| -> Result<PathBuf> {
            if p.as_os_str().is_empty() {
                return Err(err(key, "empty path".into()));
            }
            Ok(if p.is_absolute() { p.to_owned() } else { base.join(p) })
        };
        let crls = file.crls.iter().map(|p| resolve("crls", p)).collect::<Result<Vec<_>>>()?;
        let retention = match &file.retention {
            Some(r) => Some(crate::util::parse_duration(r).map_err(|e| err("retention", e.to_string()))?),
            None => None,
        };
        Ok(Profile {
            path: path.to_owned(),
            relay: file.relay.clone(),
            relay_host: host,
            relay_port: port,
            relay_network,
            relay_name: file.relay_name.clone(),
            server_name,
            cert: resolve("cert", &file.cert)?,
            key: resolve("key", &file.key)?,
            trust_bundle: resolve("trust_bundle", &file.trust_bundle)?,
            crls,
            key_dir: resolve("key_dir", &file.key_dir)?,
            store_dir: resolve("store_dir", &file.store_dir)?,
            retention,
        })
    }

    /// The default profile location: `$FOCAL_PROFILE`, else
    /// `$XDG_CONFIG_HOME/focal/profile.toml`, else `~/.config/focal/profile.toml`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("FOCAL_PROFILE") {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| {
            std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".config")
        });
        base.join("focal").join("profile.toml")
    }
}

/// Splits `host:port` (IPv6 as `[::1]:7443`).
fn split_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let bad = || format!("{s:?} is not host:port");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        h.parse::<IpAddr>().map_err(|_| format!("{h:?} is not an IPv6 address"))?;
        (h.to_owned(), p)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.contains(':') {
            return Err(bad());
        }
        (h.to_owned(), p)
    };
    let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err("port 0 is not allowed".into());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
relay = "127.0.0.1:7443"
relay_network = "carin"
cert = "a.crt"
key = "a.key"
trust_bundle = "/etc/focal/trust.toml"
crls = ["carin.crl"]
key_dir = "keys"
store_dir = "store"
"#;

    fn parse(text: &str) -> Result<Profile> {
        Profile::parse(text, Path::new("/p/profile.toml"), Path::new("/p"))
    }

    #[test]
    fn parses_and_resolves_paths() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.relay_host, "127.0.0.1");
        assert_eq!(p.relay_port, 7443);
        assert_eq!(p.server_name, "127.0.0.1");
        assert_eq!(p.cert, Path::new("/p/a.crt"));
        assert_eq!(p.trust_bundle, Path::new("/etc/focal/trust.toml"));
        assert_eq!(p.crls, vec![PathBuf::from("/p/carin.crl")]);
        assert_eq!(p.relay_network.as_str(), "carin");
        assert_eq!(p.retention, None);
    }

    #[test]
    fn retention_parses_or_names_the_key() {
        let p = parse(&format!("{GOOD}retention = \"12w\"\n")).unwrap();
        assert_eq!(p.retention, Some(std::time::Duration::from_secs(12 * 7 * 86_400)));
        let e = parse(&format!("{GOOD}retention = \"forever\"\n")).unwrap_err().to_string();
        assert!(e.contains("`retention`") && e.contains("forever"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (GOOD.replace("127.0.0.1:7443", "localhost"), "key `relay`"),
            (GOOD.replace("127.0.0.1:7443", "h:99999"), "key `relay`"),
            (GOOD.replace("\"carin\"", "\"CARIN\""), "key `relay_network`"),
            (GOOD.replace("key_dir", "keydir"), "unknown field `keydir`"),
            (GOOD.replace("store_dir = \"store\"", ""), "missing field `store_dir`"),
            (GOOD.replace("cert = \"a.crt\"", "cert = 5"), "line 4"),
            (format!("{GOOD}relay_server_name = \"not a name\"\n"), "key `relay_server_name`"),
            (format!("{GOOD}relay_name = \"Relay\"\n"), "key `relay_name`"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.starts_with("profile /p/profile.toml: "), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let file: ProfileFile = toml::from_str(GOOD).unwrap();
        let again: ProfileFile = toml::from_str(&file.to_toml()).unwrap();
        assert_eq!(file, again);
    }
}
