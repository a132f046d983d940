//! Inbox rows for messages not opened yet. The console holds the focal
//! point's keys, so it opens each waiting message with
//! [`Client::peek`](crate::Client::peek): fetched, every signature and
//! digest verified, decrypted in memory, attachments hashed and discarded,
//! and nothing recorded. The message stays unread (no record in the local
//! store, which is where `focal read` and the message view keep what was
//! opened) and no receipt goes back to the sender.
//!
//! What a preview found is kept in memory for the console's lifetime, keyed
//! by sender, message id and ciphertext digest, so a refreshed inbox does
//! not download a payload again. Payloads above [`PREVIEW_MAX_BYTES`] are
//! not downloaded: their row shows the size only, until the user opens the
//! message; one page downloads at most [`PAGE_BUDGET_BYTES`] for previews
//! (the rest follow on the next refresh). Verification failures are kept and shown as `cannot open:
//! <reason>`; transient failures (relay unreachable) are retried next time.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::ClientError;
use crate::mailbox::MessageInfo;
use crate::util::msg_id_hex;

use super::State;

/// Largest payload (ciphertext, attachments included) the inbox opens
/// without being asked.
pub(crate) const PREVIEW_MAX_BYTES: u64 = 8 << 20;

/// Most payload bytes one inbox page downloads for previews; messages
/// beyond it stay sealed on that page and are previewed on a later one.
pub(crate) const PAGE_BUDGET_BYTES: u64 = 32 << 20;

/// Most previews kept (the oldest half is dropped beyond it).
const CACHE_MAX: usize = 2048;

/// The sealed fields the inbox shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Subject.
    pub(crate) subject: String,
    /// Kind (`asset-tracing`, …).
    pub(crate) kind: String,
    /// Case reference.
    pub(crate) case_ref: String,
    /// Response deadline (unix ms; 0 = none).
    pub(crate) deadline_ms: i64,
    /// Attachments: name and size.
    pub(crate) attachments: Vec<(String, u64)>,
}

/// What the inbox knows of a waiting message it has not recorded as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Preview {
    /// Opened and verified in memory.
    Opened(Summary),
    /// Larger than [`PREVIEW_MAX_BYTES`]: not downloaded.
    TooLarge,
    /// Not downloaded for this page ([`PAGE_BUDGET_BYTES`] spent): later.
    Deferred,
    /// It cannot be opened (why).
    Failed(String),
}

type Key = (String, String, Vec<u8>);

/// The cache of previews.
#[derive(Debug, Default)]
pub(crate) struct Previews {
    map: Mutex<HashMap<Key, (u64, Preview)>>,
    next: Mutex<u64>,
}

impl Previews {
    fn get(&self, k: &Key) -> Option<Preview> {
        self.map.lock().expect("preview cache").get(k).map(|(_, p)| p.clone())
    }

    fn put(&self, k: Key, p: Preview) {
        let n = {
            let mut next = self.next.lock().expect("preview cache");
            *next += 1;
            *next
        };
        let mut map = self.map.lock().expect("preview cache");
        if map.len() >= CACHE_MAX {
            let mut ages: Vec<u64> = map.values().map(|(n, _)| *n).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.retain(|_, (n, _)| *n > cut);
        }
        map.insert(k, (n, p));
    }
}

/// Whether a failure to open says something about the message itself
/// (kept) rather than about the connection or this machine (retried).
fn lasting(e: &ClientError) -> bool {
    matches!(e, ClientError::Verify { .. } | ClientError::Proto(_) | ClientError::Protocol { .. })
}

/// The preview of waiting message `m`, from the cache or by opening it;
/// a download is taken from `budget` (bytes this page may still fetch).
pub(crate) async fn preview(st: &State, m: &MessageInfo, budget: &mut u64) -> Preview {
    if m.payload_size > PREVIEW_MAX_BYTES {
        return Preview::TooLarge;
    }
    let key = (m.sender.to_string(), msg_id_hex(&m.msg_id), m.payload_sha256.clone());
    if let Some(p) = st.previews.get(&key) {
        return p;
    }
    if m.payload_size > *budget {
        return Preview::Deferred;
    }
    *budget -= m.payload_size;
    match st.client.peek(&m.reference()).await {
        Ok(o) => {
            let c = &o.content;
            let p = Preview::Opened(Summary {
                subject: c.subject.clone(),
                kind: crate::case::kind_name(c.kind()).to_owned(),
                case_ref: c.case_ref.clone(),
                deadline_ms: c.response_deadline_ms,
                attachments: o.attachments.iter().map(|a| (a.name.clone(), a.size)).collect(),
            });
            st.previews.put(key, p.clone());
            p
        }
        Err(e) => {
            let p = Preview::Failed(e.to_string());
            if lasting(&e) {
                st.previews.put(key, p.clone());
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_newest_half_when_full() {
        let c = Previews::default();
        for i in 0..CACHE_MAX + 1 {
            c.put((format!("s{i}"), "id".into(), vec![]), Preview::TooLarge);
        }
        let len = c.map.lock().unwrap().len();
        assert!(len <= CACHE_MAX / 2 + 1, "{len}");
        assert!(c.get(&(format!("s{CACHE_MAX}"), "id".into(), vec![])).is_some());
        assert!(c.get(&("s0".into(), "id".into(), vec![])).is_none());
    }
}
