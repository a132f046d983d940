//! Live pages: `GET /events`, a stream of server-sent events behind the
//! same session cookie as every page, and `/static/live.js`, the console's
//! only script, served from the binary (same origin, so the strict CSP
//! `default-src 'self'` allows it and nothing inline is needed).
//!
//! Pages that want to stay fresh (inbox, sent, secretariat) load the script;
//! on each `change` event it fetches the same URL again and swaps the
//! `<main>` element if its content differs (no reload: scroll position and
//! the rest of the page stay). It also refetches once when the event stream
//! (re)connects, so a change between page load and connection is not
//! missed. Without JavaScript those pages keep a `<meta>` refresh (in
//! `<noscript>`, so scripted pages do not reload under the user).
//!
//! What raises an event ([`watch`], one task per console):
//! - focal point: the relay's live inbox stream ([`Client::inbox`] with
//!   `follow`): a new message or a receipt, and each reconnection;
//! - secretariat: the relay's status polled every [`ADMIN_POLL`] while a
//!   page listens; an event when a link's state or queue depth changes, and
//!   on the first poll after pages started listening.
//!
//! The broadcast channel is bounded; a listener that lags just gets one
//! more `change`. Every stream ends when the console shuts down, so the
//! graceful shutdown is not held open by a browser tab.
//!
//! [`Client::inbox`]: crate::Client::inbox

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use focal_proto::Role;
use focal_proto::pb::{self, admin_client::AdminClient};
use futures::stream::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;

use super::Shared;
use crate::mailbox::InboxItem;

/// How often the secretariat's view polls the relay status while watched.
pub(crate) const ADMIN_POLL: Duration = Duration::from_secs(2);

/// Pending events per listener before it counts as lagging.
const CHANNEL: usize = 16;

/// The event channel and the shutdown flag.
#[derive(Debug)]
pub(crate) struct Live {
    tx: broadcast::Sender<&'static str>,
    stop_tx: watch::Sender<bool>,
}

impl Live {
    pub(crate) fn new() -> Live {
        Live { tx: broadcast::channel(CHANNEL).0, stop_tx: watch::channel(false).0 }
    }

    /// Tells every listener that `what` changed.
    fn notify(&self, what: &'static str) {
        let _ = self.tx.send(what);
    }

    /// Ends every event stream and watcher.
    pub(crate) fn stop(&self) {
        self.stop_tx.send_replace(true);
    }

    /// Completes when the console shuts down.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut rx = self.stop_tx.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// `GET /events`.
pub(crate) async fn events(
    AxState(st): AxState<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.live.tx.subscribe();
    let stream = BroadcastStream::new(rx)
        .map(|ev| {
            // A lagging listener missed some events: one change covers them.
            let what = ev.unwrap_or("lagged");
            Ok(Event::default().event("change").data(what))
        })
        .take_until(st.live.stopped());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /static/live.js`.
pub(crate) async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

/// Watches the relay for what the role's live pages show, until shutdown.
pub(crate) async fn watch(st: Shared) {
    let stopped = st.live.stopped();
    tokio::select! {
        _ = stopped => {}
        _ = async {
            match st.role {
                Role::Fp => watch_inbox(&st).await,
                Role::Admin => watch_links(&st).await,
                _ => std::future::pending().await,
            }
        } => {}
    }
}

/// Focal point: follows the relay's inbox stream; reconnects with backoff.
async fn watch_inbox(st: &Shared) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match st.client.inbox(true).await {
            Ok(mut stream) => {
                let mut live = false;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(InboxItem::ReplayDone) => {
                            live = true;
                            backoff = Duration::from_secs(1);
                            // Anything may have changed while we were away.
                            st.live.notify("connected");
                        }
                        Ok(InboxItem::Message(_) | InboxItem::Unreadable { .. }) if live => {
                            st.live.notify("message")
                        }
                        Ok(InboxItem::Receipt(_)) if live => st.live.notify("receipt"),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "console: inbox stream ended");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "console: inbox stream refused"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// What of the relay status the secretariat page shows as link state.
fn link_fingerprint(s: &pb::StatusResponse) -> Vec<(String, String, u64)> {
    s.peers.iter().map(|p| (p.name.clone(), p.state.clone(), p.queue_depth)).collect()
}

/// Secretariat: polls the relay status while a page listens.
async fn watch_links(st: &Shared) {
    let mut last = None;
    let mut tick = tokio::time::interval(ADMIN_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if st.live.tx.receiver_count() == 0 {
            last = None;
            continue;
        }
        let mut admin = AdminClient::new(st.client.channel());
        let Ok(status) = admin.status(pb::StatusRequest {}).await else { continue };
        let now = link_fingerprint(status.get_ref());
        // The first look after a page started listening counts as a change
        // too: the page may have been rendered before what we see now.
        if last.as_ref() != Some(&now) {
            st.live.notify("links");
        }
        last = Some(now);
    }
}

/// The script: listens to `/events` and swaps `<main>` with a fresh copy.
/// `data-live` on `<html>` says whether it is connected (`connected`,
/// `reconnecting`), `data-live-updates` how many swaps it made.
const SCRIPT: &str = r#"// Focal console: live page updates (see client/src/console/live.rs).
(function () {
  'use strict';
  var root = document.documentElement;
  if (!window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var busy = false, again = false, updates = 0;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html').getElementById('main');
        var main = document.getElementById('main');
        if (fresh && main && fresh.innerHTML !== main.innerHTML) {
          main.innerHTML = fresh.innerHTML;
          updates += 1;
          root.setAttribute('data-live-updates', String(updates));
        }
      })
      .catch(function () { root.setAttribute('data-live', 'reconnecting'); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var events = new EventSource('/events');
  events.addEventListener('open', function () {
    root.setAttribute('data-live', 'connected');
    refresh();
  });
  events.addEventListener('error', function () { root.setAttribute('data-live', 'reconnecting'); });
  events.addEventListener('change', refresh);
}());
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_reaches_every_listener_and_shutdown_ends_the_wait() {
        let live = Live::new();
        let mut a = live.tx.subscribe();
        let mut b = live.tx.subscribe();
        live.notify("message");
        assert_eq!(a.recv().await.unwrap(), "message");
        assert_eq!(b.recv().await.unwrap(), "message");
        let stopped = live.stopped();
        live.stop();
        stopped.await;
        // A waiter created after the stop completes at once.
        live.stopped().await;
    }

    #[test]
    fn link_fingerprint_ignores_ages() {
        let peer = |state: &str, depth, age| pb::PeerStatus {
            name: "relay.gfp".into(),
            state: state.into(),
            queue_depth: depth,
            oldest_age_ms: age,
            ..Default::default()
        };
        let s = |p| pb::StatusResponse { peers: vec![p], ..Default::default() };
        let a = link_fingerprint(&s(peer("connected", 0, 0)));
        assert_eq!(a, link_fingerprint(&s(peer("connected", 0, 5_000))));
        assert_ne!(a, link_fingerprint(&s(peer("paused", 0, 0))));
        assert_ne!(a, link_fingerprint(&s(peer("connected", 3, 0))));
    }
}
