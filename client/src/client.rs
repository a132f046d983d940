//! [`Client`]: a connected focal point. It holds the profile, the identity
//! (certificate and Ed25519 signing key), the trust store, the gRPC channel,
//! the encryption keys and the local store; the operations live in
//! `send.rs`, `read.rs` and `mailbox.rs` as further `impl Client` blocks.

use std::sync::Arc;
use std::time::SystemTime;

use focal_certs::{Credentials, SharedTrust, VerifiedEntry};
use focal_proto::{Address, pb};
use ring::signature::Ed25519KeyPair;
use tonic::transport::Channel;

use crate::connect;
use crate::error::{ClientError, Result};
use crate::keys::KeyStore;
use crate::profile::Profile;
use crate::store::LocalStore;
use crate::util::now_ms;

/// Largest gRPC message the client decodes (a header with many recipients,
/// a payload chunk, a receipt list).
pub const MAX_DECODE_BYTES: usize = 16 * 1024 * 1024;

/// Which message: msg ids are unique per sender.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageRef {
    /// The 16-byte message id.
    pub msg_id: [u8; 16],
    /// The original sender.
    pub sender: Address,
}

/// How often an interrupted transfer is retried, and how long to wait.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts after the first one, counted without progress in between.
    pub retries: u32,
    /// First wait; doubles on each failure.
    pub initial_backoff: std::time::Duration,
    /// Largest wait.
    pub max_backoff: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 6,
            initial_backoff: std::time::Duration::from_millis(200),
            max_backoff: std::time::Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn backoff(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u32 << attempt.min(16);
        (self.initial_backoff * factor).min(self.max_backoff)
    }
}

/// A focal point connected to its relay.
pub struct Client {
    pub(crate) profile: Profile,
    pub(crate) creds: Arc<Credentials>,
    pub(crate) signing: Arc<Ed25519KeyPair>,
    pub(crate) trust: SharedTrust,
    pub(crate) me: Address,
    pub(crate) channel: Channel,
    pub(crate) store: LocalStore,
    pub(crate) keys: KeyStore,
    pub(crate) retry: RetryPolicy,
}

impl Client {
    /// Loads the profile's identity and trust, opens the local store and
    /// connects to the relay.
    pub async fn connect(profile: Profile) -> Result<Client> {
        let (creds, trust) = connect::load_identity(&profile)?;
        let signing = Arc::new(creds.signing_key()?);
        let me = creds.identity.address();
        let store = LocalStore::open(&profile.store_dir)?;
        let keys = KeyStore::new(&profile.key_dir);
        let channel = connect::connect(&profile, &creds, trust.clone()).await?;
        Ok(Client { profile, creds, signing, trust, me, channel, store, keys, retry: RetryPolicy::default() })
    }

    /// This focal point's address (from its certificate).
    pub fn address(&self) -> &Address {
        &self.me
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The gRPC channel (for raw calls, e.g. in tests).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The local store.
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    /// The encryption key directory.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The credentials (certificate chain, identity).
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The Ed25519 identity key.
    pub fn signing_key(&self) -> &Ed25519KeyPair {
        &self.signing
    }

    /// The trust store in use.
    pub fn trust(&self) -> &SharedTrust {
        &self.trust
    }

    /// Changes how interrupted sends and fetches are retried.
    pub fn set_retry_policy(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// A client of the relay service.
    pub fn relay(&self) -> pb::relay_client::RelayClient<Channel> {
        pb::relay_client::RelayClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE_BYTES)
    }

    /// A client of the directory service.
    pub fn directory(&self) -> pb::directory_client::DirectoryClient<Channel> {
        pb::directory_client::DirectoryClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODE_BYTES)
    }

    /// A client of the audit service (auditors of this network only).
    pub fn audit(&self) -> pb::audit_client::AuditClient<Channel> {
        pb::audit_client::AuditClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODE_BYTES)
    }

    /// Looks up `addr` in the directory and verifies the entry (signature,
    /// signer certificate chain and CRL, address binding, validity).
    pub async fn lookup(&self, addr: &Address) -> Result<VerifiedEntry> {
        let op = format!("directory lookup of {addr}");
        let entry = self
            .directory()
            .lookup(pb::LookupRequest { address: addr.to_string() })
            .await
            .map_err(|s| ClientError::rpc(op.clone(), s))?
            .into_inner();
        let verified = focal_certs::verify_directory_entry(&self.trust.current(), &entry, SystemTime::now())
            .map_err(|e| ClientError::verify(format!("directory entry of {addr}"), e))?;
        if &verified.address != addr {
            return Err(ClientError::verify(
                format!("directory entry of {addr}"),
                format!("the relay answered with the entry of {}", verified.address),
            ));
        }
        Ok(verified)
    }

    /// Signs a directory entry for the newest encryption key and publishes it.
    /// The entry is valid from now for `validity`, but never beyond the
    /// certificate's own expiry.
    pub async fn publish_key(&self, opts: &PublishOptions) -> Result<pb::DirectoryEntry> {
        let key = self.keys.current()?;
        let own =
            focal_certs::verify_peer(&self.trust.current(), self.creds.cert_der(), &[], SystemTime::now())
                .map_err(|e| ClientError::verify("own certificate", e))?;
        let now = now_ms();
        let cert_end =
            own.not_after.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let not_after = crate::util::ms_after(now, opts.validity).min(cert_end);
        let entry = focal_certs::make_directory_entry(
            &self.creds,
            key.public.0,
            key.serial,
            now - 60_000,
            not_after,
            opts.law_enforcement,
            &opts.display_name,
        )?;
        self.directory()
            .publish(entry.clone())
            .await
            .map_err(|s| ClientError::rpc("directory publish", s))?;
        Ok(entry)
    }
}

/// Options of [`Client::publish_key`].
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Member category (H0 handling: law-enforcement members only).
    pub law_enforcement: bool,
    /// Organisational label shown to others (optional).
    pub display_name: String,
    /// How long the entry is valid.
    pub validity: std::time::Duration,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            law_enforcement: true,
            display_name: String::new(),
            validity: std::time::Duration::from_secs(365 * 86_400),
        }
    }
}
