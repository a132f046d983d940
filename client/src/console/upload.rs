//! Compose progress: what the compose page shows while a message with
//! attachments goes out, in two phases.
//!
//! 1. The browser uploads the form to the console: `/static/compose.js`
//!    (the compose page's own script, same origin, so the strict CSP allows
//!    it) posts the form with `XMLHttpRequest` and shows
//!    `xhr.upload.onprogress` in a `<progress>` element. When the answer
//!    comes it follows the console's redirect (`/sent?accepted=…`) or shows
//!    the error page, as the plain form post does; without script the plain
//!    post still works and the progress element stays hidden.
//! 2. The console seals the message and uploads it to the relay. The form
//!    carries a random per-page token (hidden field `progress`, before the
//!    attachments so the console reads it first); [`Tracker`] implements
//!    [`Progress`] for that send and the script polls
//!    `GET /compose/progress?token=…` (JSON, behind the session cookie like
//!    every route) to show "Sealing: N %", then "Sending to the relay: N %"
//!    (bytes gRPC has taken), then "The relay is checking and storing it"
//!    until the relay answers ACCEPTED.
//!
//! The script keeps the last values it showed in `sessionStorage`
//! (`focal-compose-progress`), so they can still be read after the
//! redirect. [`Uploads`] is bounded ([`MAX_TRACKED`]): the oldest tracker
//! is dropped first; an unknown token answers 404.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::progress::Progress;

/// Progress of this many composes is kept; older ones are forgotten.
pub(crate) const MAX_TRACKED: usize = 32;

/// Where one send is ([`Tracker::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Snapshot {
    /// `waiting` (before sealing), `sealing`, `sending`, `storing`.
    pub(crate) phase: &'static str,
    /// Bytes of the phase done so far.
    pub(crate) done: u64,
    /// Bytes of the phase.
    pub(crate) total: u64,
    /// `running`, then `sent` or `failed` when the console has answered.
    pub(crate) state: &'static str,
}

/// The progress of one compose's send, reported by [`crate::Client::send`].
#[derive(Debug)]
pub(crate) struct Tracker(Mutex<Snapshot>);

impl Tracker {
    fn new() -> Tracker {
        Tracker(Mutex::new(Snapshot { phase: "waiting", done: 0, total: 0, state: "running" }))
    }

    /// The current state.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.0.lock().expect("tracker lock").clone()
    }

    /// The send ended: `ok` if the relay accepted the message.
    pub(crate) fn complete(&self, ok: bool) {
        self.0.lock().expect("tracker lock").state = if ok { "sent" } else { "failed" };
    }
}

impl Progress for Tracker {
    fn start(&self, phase: &'static str, total: u64) {
        let mut s = self.0.lock().expect("tracker lock");
        s.phase = phase;
        s.total = total;
        s.done = 0;
    }

    fn advance(&self, _: u64, done: u64) {
        self.0.lock().expect("tracker lock").done = done;
    }

    fn finish(&self) {}
}

/// The trackers of recent composes, by token (bounded, oldest dropped first).
#[derive(Debug, Default)]
pub(crate) struct Uploads(Mutex<VecDeque<(String, Arc<Tracker>)>>);

/// A token as the compose page makes them: 64 lowercase hex digits.
fn valid(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Uploads {
    /// A new tracker for `token`, or None if the token is malformed (the
    /// send then goes ahead without progress). A token seen before gets a
    /// fresh tracker.
    pub(crate) fn register(&self, token: &str) -> Option<Arc<Tracker>> {
        if !valid(token) {
            return None;
        }
        let tracker = Arc::new(Tracker::new());
        let mut all = self.0.lock().expect("uploads lock");
        all.retain(|(t, _)| t != token);
        while all.len() >= MAX_TRACKED {
            all.pop_front();
        }
        all.push_back((token.to_owned(), tracker.clone()));
        Some(tracker)
    }

    /// The tracker of `token`, if still kept.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Tracker>> {
        self.0.lock().expect("uploads lock").iter().find(|(t, _)| t == token).map(|(_, p)| p.clone())
    }
}

/// `GET /compose/progress?token=T`: the tracker's [`Snapshot`] as JSON.
pub(crate) async fn progress(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    if !valid(token) {
        return (StatusCode::BAD_REQUEST, "token: expected 64 hex digits").into_response();
    }
    match st.uploads.get(token) {
        Some(t) => {
            let json = serde_json::to_string(&t.snapshot()).expect("snapshot serializes");
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no compose with this token (yet)").into_response(),
    }
}

/// `GET /static/compose.js`.
pub(crate) async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

/// The compose page's script. Labels come from `data-` attributes of
/// `#progress-box` (the strings table). On `<html>`: `data-upload` (upload
/// percent) and `data-progress` (`phase:percent` of the console's send).
const SCRIPT: &str = r#"// Focal console: compose with progress (see client/src/console/upload.rs).
(function () {
  'use strict';
  var form = document.getElementById('compose');
  var box = document.getElementById('progress-box');
  if (!form || !box || !window.XMLHttpRequest || !window.FormData || !window.fetch || !window.DOMParser) { return; }
  var bar = document.getElementById('progress-bar');
  var text = document.getElementById('progress-text');
  var button = document.getElementById('send');
  var root = document.documentElement;
  var token = form.elements.progress ? form.elements.progress.value : '';
  var last = { upload: 0, phase: 'waiting', percent: 0, state: 'running' };
  function percent(done, total) {
    if (!(total > 0)) { return 100; }
    return Math.min(100, Math.floor(done * 100 / total));
  }
  function show(label, pct, counted) {
    bar.value = pct;
    // 'storing' has no amount: the relay is checking and storing it.
    text.textContent = counted ? label + ': ' + pct + ' %' : label + '\u2026';
    root.setAttribute('data-upload', String(last.upload));
    root.setAttribute('data-progress', last.phase + ':' + last.percent);
    try { window.sessionStorage.setItem('focal-compose-progress', JSON.stringify(last)); } catch (e) { /* private mode */ }
  }
  function uploaded(pct) {
    last.upload = pct;
    show(box.getAttribute('data-uploading'), pct, true);
  }
  function phase(p) {
    if (!p || (p.phase !== 'sealing' && p.phase !== 'sending' && p.phase !== 'storing')) { return; }
    last.phase = p.phase;
    last.percent = percent(p.done, p.total);
    last.state = p.state;
    show(box.getAttribute('data-' + p.phase), last.percent, p.phase !== 'storing');
  }
  function fetchProgress() {
    return fetch('/compose/progress?token=' + encodeURIComponent(token), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(phase)
      .catch(function () { return null; });
  }
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    button.disabled = true;
    box.hidden = false;
    var answered = false;
    function poll() {
      if (answered) { return; }
      fetchProgress().then(function () { if (!answered) { window.setTimeout(poll, 300); } });
    }
    var xhr = new XMLHttpRequest();
    xhr.upload.addEventListener('progress', function (e) {
      if (e.lengthComputable) { uploaded(percent(e.loaded, e.total)); }
    });
    xhr.upload.addEventListener('load', function () { uploaded(100); poll(); });
    xhr.addEventListener('load', function () {
      answered = true;
      // One last look, so the page shows where the send ended.
      fetchProgress().then(function () {
        if (xhr.status === 200 && xhr.responseURL && xhr.responseURL.indexOf('/sent?') >= 0) {
          window.location.assign(xhr.responseURL);
          return;
        }
        // An error page: shown in place of this one, as after a plain post.
        var page = new DOMParser().parseFromString(xhr.responseText, 'text/html');
        document.replaceChild(document.adoptNode(page.documentElement), document.documentElement);
      });
    });
    xhr.addEventListener('error', function () {
      answered = true;
      button.disabled = false;
      text.textContent = box.getAttribute('data-failed');
    });
    xhr.open('POST', form.action);
    xhr.send(new FormData(form));
  });
}());
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_follows_the_phases_and_uploads_stay_bounded() {
        let uploads = Uploads::default();
        assert!(uploads.register("not-a-token").is_none());
        let token = "ab".repeat(32);
        let t = uploads.register(&token).expect("valid token");
        assert_eq!(uploads.get(&token).unwrap().snapshot().phase, "waiting");
        t.start("sealing", 10);
        t.advance(4, 4);
        let s = uploads.get(&token).unwrap().snapshot();
        assert_eq!((s.phase, s.done, s.total, s.state), ("sealing", 4, 10, "running"));
        t.start("sending", 20);
        t.advance(20, 20);
        t.finish();
        t.complete(true);
        let s = t.snapshot();
        assert_eq!((s.phase, s.done, s.total, s.state), ("sending", 20, 20, "sent"));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"phase":"sending","done":20,"total":20,"state":"sent"}"#
        );
        for i in 0..MAX_TRACKED {
            uploads.register(&format!("{i:064x}")).unwrap();
        }
        assert!(uploads.get(&token).is_none(), "the oldest tracker is dropped first");
        assert!(uploads.get(&format!("{:064x}", MAX_TRACKED - 1)).is_some());
        assert_eq!(uploads.0.lock().unwrap().len(), MAX_TRACKED);
    }
}
