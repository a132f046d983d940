//! Getting this relay's audit-log checkpoints cosigned by its peers
//! (C2SP tlog-witness over the federation link; the peer side is
//! [`crate::audit::witness::Witness`], answered in [`super::inbound`]).
//!
//! One task per peer link. It wakes every [`INTERVAL`] and whenever the
//! link's status changes (so a fresh connection is used at once); if the
//! link is up, the peer announced a witness key in its Hello (named after
//! the origin of its certificate identity; a Hello claiming another
//! relay's origin gets no request), and our
//! latest checkpoint is larger than the last one that peer cosigned, it
//! sends a `CosignRequest` with a consistency proof from that size. A
//! `conflict` answer (the witness remembers another size, e.g. after our
//! cosignature store lost a line) is retried once with the size it names.
//! The cosignature is verified against the peer's announced key and stored
//! with the checkpoint ([`accept_cosignature`]), so auditors get it from
//! `GetLogInfo`. Failures are logged (once per distinct message) and tried
//! again on the next tick; nothing here blocks message traffic.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Relaying;
use crate::audit::witness::{accept_cosignature, conflict_size, cosign_request, peer_witness_key};
use crate::federation::{LinkHandle, RemotePeer};

/// How often a link's task looks for a grown checkpoint.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// The cosigning task of one peer link; ends when `stop` turns true.
pub(super) async fn run(r: Arc<Relaying>, link: LinkHandle, mut stop: watch::Receiver<bool>) {
    let mut status = link.watch();
    let mut watching = true;
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            changed = status.changed(), if watching => watching = changed.is_ok(),
            _ = stop.wait_for(|s| *s) => break,
        }
        let Some(remote) = link.remote() else { continue };
        match round(&r, &link, &remote).await {
            Ok(Some(size)) => {
                tracing::debug!(peer = remote.name(), size, "checkpoint cosigned");
                last_error = None;
            }
            Ok(None) => {}
            Err(e) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(peer = remote.name(), error = %e, "checkpoint not cosigned");
                }
                last_error = Some(e);
            }
        }
    }
}

/// One attempt: the size cosigned, or `None` if there was nothing to do.
async fn round(r: &Relaying, link: &LinkHandle, remote: &RemotePeer) -> Result<Option<u64>, String> {
    let Some(wkey) = peer_witness_key(&remote.identity, &remote.hello).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let reader = r.store.audit_log();
    let Some(cp) = reader.latest_checkpoint() else { return Ok(None) };
    let old = reader.last_cosigned(wkey.witness_name()).map_err(|e| e.to_string())?;
    if old.is_some_and(|s| s >= cp.size) {
        return Ok(None);
    }
    let request = |old: u64| cosign_request(reader, &cp, old).map_err(|e| e.to_string());
    let send = |req| async { link.request_cosign(req).await.map_err(|e| format!("cosign request: {e}")) };
    let mut resp = send(request(old.unwrap_or(0))?).await?;
    if let Some(size) = conflict_size(&resp).filter(|&s| s <= cp.size) {
        resp = send(request(size)?).await?;
    }
    accept_cosignature(reader, &cp.note, &resp, &wkey).map_err(|e| e.to_string())?;
    Ok(Some(cp.size))
}
