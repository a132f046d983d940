//! `Relay.Inbox`: replays what waits in the caller's mailbox (headers only,
//! in mailbox order, a page at a time), sends `replay_done`, then pushes new
//! arrivals (and, if asked, receipts) as the writer commits them.
//!
//! A replayed page is sent only once everything it holds is durable (see
//! `Store::durable_barrier`). The stream subscribes to live events before
//! replaying, and skips live
//! messages whose sequence was already replayed, so nothing committed during
//! the replay is lost or sent twice. A subscriber that falls more than
//! `limits.inbox_live_buffer` events behind gets RESOURCE_EXHAUSTED and
//! replays on reconnect; at shutdown live streams end with UNAVAILABLE.
//! Stored receipts are listed by `Receipts`; this stream carries only live
//! ones.

use std::collections::VecDeque;
use std::sync::Arc;

use focal_proto::{Address, pb};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tonic::{Request, Status};

use super::{BoxStream, Shared, require_fp};
use crate::hub::HubEvent;

const PAGE: usize = 64;

enum Phase {
    Replay,
    Live,
    Done,
}

struct State {
    shared: Arc<Shared>,
    owner: Address,
    last_seq: u64,
    rx: broadcast::Receiver<HubEvent>,
    shutdown: watch::Receiver<bool>,
    include_receipts: bool,
    replay_only: bool,
    phase: Phase,
    queued: VecDeque<pb::InboxEvent>,
}

fn event(e: pb::inbox_event::Event) -> pb::InboxEvent {
    pb::InboxEvent { event: Some(e) }
}

pub(super) fn inbox(
    shared: Arc<Shared>,
    req: Request<pb::InboxRequest>,
) -> Result<BoxStream<pb::InboxEvent>, Status> {
    let caller = require_fp(&req, "read a mailbox")?;
    let owner = caller.address();
    let r = req.into_inner();
    let rx = shared.hub.subscribe(&owner.to_string());
    tracing::debug!(%owner, "inbox stream opened");
    let state = State {
        shutdown: shared.shutdown.clone(),
        shared,
        owner,
        last_seq: 0,
        rx,
        include_receipts: r.include_receipts,
        replay_only: r.replay_only,
        phase: Phase::Replay,
        queued: VecDeque::new(),
    };
    Ok(Box::pin(futures::stream::unfold(state, next)))
}

async fn next(mut st: State) -> Option<(Result<pb::InboxEvent, Status>, State)> {
    use pb::inbox_event::Event;
    loop {
        if let Some(e) = st.queued.pop_front() {
            return Some((Ok(e), st));
        }
        match st.phase {
            Phase::Done => return None,
            Phase::Replay => match st.shared.store.mailbox_page(&st.owner, st.last_seq, PAGE) {
                Err(e) => {
                    st.phase = Phase::Done;
                    return Some((Err(e.into()), st));
                }
                Ok(page) if page.is_empty() => {
                    st.queued.push_back(event(Event::ReplayDone(true)));
                    st.phase = if st.replay_only { Phase::Done } else { Phase::Live };
                }
                Ok(page) => {
                    // Read first, then wait: a message whose batch is applied
                    // but not yet fsynced (a crash could still lose it) is
                    // shown only once it is durable. Live events are
                    // published after the fsync already.
                    if let Err(e) = st.shared.store.durable_barrier().await {
                        st.phase = Phase::Done;
                        return Some((Err(e.into()), st));
                    }
                    for m in page {
                        st.last_seq = m.mailbox_seq;
                        st.queued.push_back(event(Event::Message(m)));
                    }
                }
            },
            Phase::Live => {
                if *st.shutdown.borrow() {
                    st.phase = Phase::Done;
                    return Some((Err(Status::unavailable("relay shutting down; reconnect later")), st));
                }
                tokio::select! {
                    r = st.rx.recv() => match r {
                        Ok(HubEvent::Message(m)) if m.mailbox_seq > st.last_seq => {
                            st.last_seq = m.mailbox_seq;
                            return Some((Ok(event(Event::Message(m))), st));
                        }
                        Ok(HubEvent::Message(_)) => {} // already replayed
                        Ok(HubEvent::Receipt(r)) if st.include_receipts => {
                            return Some((Ok(event(Event::Receipt(r))), st));
                        }
                        Ok(HubEvent::Receipt(_)) => {}
                        Err(RecvError::Lagged(n)) => {
                            st.phase = Phase::Done;
                            tracing::info!(owner = %st.owner, missed = n, "slow inbox subscriber dropped");
                            let s = Status::resource_exhausted(format!(
                                "inbox stream fell {n} events behind; reconnect to replay the mailbox"
                            ));
                            return Some((Err(s), st));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    r = st.shutdown.changed() => {
                        if r.is_err() {
                            // The relay is gone: end the stream.
                            st.phase = Phase::Done;
                        }
                    }
                }
            }
        }
    }
}
