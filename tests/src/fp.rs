//! A focal point of a test federation: its certificate, its profile file,
//! and ways to drive it through the library ([`FocalPoint::client`]) or as a
//! user would through the CLI ([`FocalPoint::cli`]).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use focal_client::{Client, Profile, ProfileFile, PublishOptions};
use focal_proto::Address;

use crate::Bins;
use crate::pki::CertFiles;

/// One focal point.
#[derive(Clone, Debug)]
pub struct FocalPoint {
    /// Its address.
    pub address: Address,
    /// Its own directory (profile, keys, store).
    pub dir: PathBuf,
    /// The profile file.
    pub profile_path: PathBuf,
    /// Certificate and key files.
    pub cert: CertFiles,
}

impl FocalPoint {
    /// Writes the profile of `address` for the relay at `relay`.
    pub fn create(
        address: Address,
        dir: PathBuf,
        cert: CertFiles,
        relay: std::net::SocketAddr,
        relay_name: &str,
        trust_bundle: PathBuf,
        crls: Vec<PathBuf>,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let profile = ProfileFile {
            relay: relay.to_string(),
            relay_network: address.network().to_string(),
            relay_name: Some(relay_name.to_owned()),
            relay_server_name: None,
            cert: cert.cert.clone(),
            key: cert.key.clone(),
            trust_bundle,
            crls,
            key_dir: PathBuf::from("keys"),
            store_dir: PathBuf::from("store"),
            retention: None,
        };
        let profile_path = dir.join("profile.toml");
        std::fs::write(&profile_path, profile.to_toml())?;
        Ok(FocalPoint { address, dir, profile_path, cert })
    }

    /// The loaded profile.
    pub fn profile(&self) -> Result<Profile> {
        Ok(Profile::load(&self.profile_path)?)
    }

    /// A connected library client.
    pub async fn client(&self) -> Result<Client> {
        Client::connect(self.profile()?).await.with_context(|| format!("connecting {}", self.address))
    }

    /// `keys init` (unless a key exists) and `keys publish` via the library.
    pub async fn enrol(&self) -> Result<Client> {
        let client = self.client().await?;
        if client.keys().all()?.is_empty() {
            client.keys().generate(false, focal_client::util::now_ms())?;
        }
        client
            .publish_key(&PublishOptions::default())
            .await
            .with_context(|| format!("publishing {}", self.address))?;
        Ok(client)
    }

    /// `focal --profile <this profile>` as a child-process command.
    pub fn cli(&self, bins: &Bins) -> Command {
        let mut cmd = Command::new(&bins.focal);
        cmd.arg("--profile").arg(&self.profile_path).env_remove("FOCAL_PROFILE").env("NO_COLOR", "1");
        cmd
    }
}
