//! The expiry sweeper: once a second (and again at once while a pass hits
//! its limit) asks the store's writer to expire what is due. Expired
//! messages leave their mailboxes, their senders get EXPIRED receipts
//! signed by the relay, and each expiry is audited — all in the writer's
//! batch.
//!
//! The same task applies the network's `[retention]`
//! ([`crate::store::retention`]) every
//! [`RetentionPolicy::pass_interval`]: undelivered messages waiting past
//! `retention.undelivered` leave like expired ones (EXPIRED receipt,
//! RETENTION_PURGED audit record), receipts older than
//! `retention.delivered` are removed.

use std::time::Duration;

use tokio::sync::watch;

use crate::RelayError;
use crate::config::retention::RetentionPolicy;
use crate::store::Store;

/// Index entries handled per pass.
const PASS: usize = 256;

/// Runs until `stop` turns true.
pub(crate) async fn run(
    store: Store,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
    retention: RetentionPolicy,
) {
    let mut next_retention = tokio::time::Instant::now();
    loop {
        let mut more = false;
        if retention.is_active() && tokio::time::Instant::now() >= next_retention {
            match store.apply_retention(retention, crate::rpc::now_ms(), PASS).await {
                Ok(r) => {
                    if r.mailbox + r.outbox + r.receipts + r.held > 0 {
                        tracing::info!(
                            mailbox = r.mailbox,
                            outbox = r.outbox,
                            receipts = r.receipts,
                            held = r.held,
                            "retention purged"
                        );
                    }
                    more |= r.more;
                    if !r.more {
                        next_retention = tokio::time::Instant::now() + retention.pass_interval();
                    }
                }
                Err(RelayError::StoreClosed) => break,
                Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying"),
            }
        }
        match store.expire_due(crate::rpc::now_ms(), PASS).await {
            Ok(r) => {
                if r.expired > 0 {
                    tracing::info!(expired = r.expired, "expired undelivered messages");
                }
                more |= r.scanned == PASS;
            }
            Err(RelayError::StoreClosed) => break,
            Err(e) => tracing::warn!(error = %e, "expiry pass failed; retrying"),
        }
        if more {
            tokio::task::yield_now().await;
            if *stop.borrow() {
                break;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}
