//! Live inbox notifications: after each commit the store's writer publishes
//! new mailbox entries and receipts per address; `Inbox` streams subscribe.
//! Each address has a bounded broadcast channel: a subscriber that falls more
//! than `limits.inbox_live_buffer` events behind loses its stream (it replays
//! from the store on reconnect) instead of making the relay buffer for it.

use std::collections::HashMap;
use std::sync::Mutex;

use focal_proto::pb;
use tokio::sync::broadcast;

/// One live event for a mailbox owner.
#[derive(Clone, Debug)]
pub enum HubEvent {
    /// A message was put into the mailbox.
    Message(pb::MessageSummary),
    /// A receipt addressed to the owner was stored.
    Receipt(pb::Receipt),
}

/// Per-address broadcast channels, created on first subscription and
/// dropped when their last subscriber is gone.
#[derive(Debug)]
pub struct Hub {
    capacity: usize,
    channels: Mutex<HashMap<String, broadcast::Sender<HubEvent>>>,
}

impl Hub {
    /// A hub whose per-address channels hold `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Hub { capacity: capacity.max(1), channels: Mutex::new(HashMap::new()) }
    }

    /// Subscribes to `address`'s events from now on.
    pub fn subscribe(&self, address: &str) -> broadcast::Receiver<HubEvent> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(address.to_owned()).or_insert_with(|| broadcast::channel(self.capacity).0).subscribe()
    }

    /// Delivers `event` to `address`'s current subscribers, if any.
    pub fn publish(&self, address: &str, event: HubEvent) {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(address)
            && tx.send(event).is_err()
        {
            // No subscriber left.
            map.remove(address);
        }
    }

    /// Addresses with a channel (tests).
    pub fn channels(&self) -> usize {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
