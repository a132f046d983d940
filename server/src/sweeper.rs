//! The expiry sweeper: once a second (and again at once while a pass hits
//! its limit) asks the store's writer to expire what is due. Expired
//! messages leave their mailboxes, their senders get EXPIRED receipts
//! signed by the relay, and each expiry is audited — all in the writer's
//! batch.

use std::time::Duration;

use tokio::sync::watch;

use crate::RelayError;
use crate::store::Store;

/// Index entries handled per pass.
const PASS: usize = 256;

/// Runs until `stop` turns true.
pub(crate) async fn run(store: Store, mut stop: watch::Receiver<bool>, interval: Duration) {
    loop {
        let mut more = false;
        match store.expire_due(crate::rpc::now_ms(), PASS).await {
            Ok(r) => {
                if r.expired > 0 {
                    tracing::info!(expired = r.expired, "expired undelivered messages");
                }
                more = r.scanned == PASS;
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
