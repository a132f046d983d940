//! Directory lookups of other networks: a `DirectoryQuery` to the next hop
//! for that network (direct peer, else the default route; a hub passes it
//! on), every returned entry verified here with
//! `focal_certs::verify_directory_entry` (signature, fp certificate chained
//! to ITS network's CA, address), then cached with an expiry in a bounded
//! cache (oldest entry evicted when full).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use focal_proto::{Address, pb};

use super::Relaying;
use crate::core::routing::NextHop;
use crate::federation::FederationError;

/// How long a lookup waits for the next hop's link to (re)connect before it
/// reports the peer unreachable.
const LINK_WAIT: Duration = Duration::from_secs(10);

/// Bounded cache of verified remote directory answers.
#[derive(Debug)]
pub struct DirectoryCache {
    entries: Mutex<HashMap<String, (Instant, Vec<pb::DirectoryEntry>)>>,
    capacity: usize,
    ttl: Duration,
}

impl DirectoryCache {
    /// At most `capacity` addresses, each kept `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        DirectoryCache { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1), ttl }
    }

    fn get(&self, key: &str) -> Option<Vec<pb::DirectoryEntry>> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: String, v: Vec<pb::DirectoryEntry>) {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.capacity && !m.contains_key(&key) {
            m.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if m.len() >= self.capacity
                && let Some(oldest) = m.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(key, (Instant::now(), v));
    }

    /// Entries of `address` (a member, or `*@net` for all members) of
    /// another network, verified. `not_via`: the peer that asked us (a hub
    /// never sends a query back where it came from). Errors are
    /// human-readable; "no federation route to <net>" when there is none.
    pub async fn remote(
        &self,
        r: &Relaying,
        address: &Address,
        not_via: Option<&str>,
    ) -> Result<Vec<pb::DirectoryEntry>, String> {
        let key = address.to_string();
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let peer = match r.core().table().next_hop(address.network()) {
            NextHop::Peer { name, .. } => name.to_owned(),
            _ => return Err(format!("no federation route to {}", address.network())),
        };
        if not_via == Some(peer.as_str()) {
            return Err(format!("no federation route to {} (it would go back)", address.network()));
        }
        let link = r.link(&peer).ok_or_else(|| format!("federation link to {peer} is not running"))?;
        // A link that is coming up, or swapping a duplicate connection for
        // the surviving one, is waited for briefly, and a query cut by such
        // a swap is asked once more, so a lookup does not fail for a
        // reconnect that takes milliseconds.
        let mut asked = 0;
        let answer = loop {
            let _ = tokio::time::timeout(LINK_WAIT, link.wait_connected()).await;
            let query_id = u64::from_be_bytes(rand8());
            match link.query_directory(pb::DirectoryQuery { query_id, address: key.clone() }).await {
                Ok(a) => break a,
                Err(FederationError::NotConnected { .. } | FederationError::LinkLost { .. })
                    if asked == 0 =>
                {
                    asked += 1
                }
                Err(e) => return Err(format!("directory query via {peer}: {e}")),
            }
        };
        if !answer.error.is_empty() && answer.entries.is_empty() {
            return Err(answer.error);
        }
        let trust = r.trust.current();
        let now = SystemTime::now();
        let mut out = Vec::new();
        for e in answer.entries {
            match focal_certs::verify_directory_entry(&trust, &e, now) {
                Ok(v)
                    if v.address == *address
                        || (address.is_broadcast() && v.address.network() == address.network()) =>
                {
                    out.push(e)
                }
                Ok(v) => {
                    tracing::warn!(asked = %address, got = %v.address, "directory answer for another address dropped")
                }
                Err(err) => {
                    tracing::warn!(asked = %address, error = %err, "directory entry failed verification; dropped")
                }
            }
        }
        if out.is_empty() {
            return Err("not found".into());
        }
        self.put(key, out.clone());
        Ok(out)
    }
}

fn rand8() -> [u8; 8] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}
