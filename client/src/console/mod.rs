//! `focal console`: a local web console for focal points, network
//! secretariats (role `admin`) and auditors, served by the user's own
//! `focal` process on 127.0.0.1.
//!
//! The console is a thin HTML face of this crate: every view calls the same
//! library functions as the CLI ([`Client::read`], [`Client::send`],
//! [`crate::case::thread`], [`crate::audit::verify`], the admin RPCs, …), so
//! the relay sees an ordinary client with the user's certificate and gains
//! no new surface. Keys, certificates and the profile never reach the
//! browser; decrypted attachments are kept in a temporary directory of the
//! console that is removed when it stops.
//!
//! Protection against other local sites and pages ([`security`]): a random
//! session token per start, handed over once in the printed URL and then
//! kept in an `HttpOnly; SameSite=Strict` cookie (named after the port); a CSRF token in the action
//! of every form, checked with the `Origin` header on every POST; a strict
//! Content-Security-Policy (`default-src 'self'`), `X-Frame-Options: DENY`,
//! no external resource, no inline script. The scripts are files of the
//! binary: `/static/live.js` ([`live`]) only refreshes the inbox, sent and
//! secretariat pages when the relay reports a change over `/events`
//! (server-sent events, same session cookie); `/static/compose.js`
//! ([`upload`]) shows the compose form's upload and send progress (polling
//! `/compose/progress`, same cookie). Every page works without them.
//! A non-loopback address is refused unless the user passes
//! `--dangerous-listen`.
//!
//! Layout: [`strings`] (all texts), `html` (escaping, page frame, CSS),
//! `svg` (the pictures), `security`, `inbox`, `message`, `compose` (focal
//! point), `preview` (inbox rows of unopened messages), `admin`
//! (secretariat), `auditor` and `witness` (cosignature checks), `live`
//! (events and the refresh script), `upload` (compose progress).

mod admin;
mod auditor;
mod compose;
mod html;
mod inbox;
mod live;
mod message;
mod preview;
mod security;
pub mod strings;
mod svg;
mod upload;
mod witness;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use focal_proto::Role;
use tokio::net::TcpListener;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::read::SavedAttachment;

pub use security::{CSP, check_listen, cookie_name};

/// Largest upload the compose form accepts (all attachments together).
/// Uploads are streamed to disk, never held in memory.
pub const MAX_UPLOAD_BYTES: usize = 1 << 30;

/// How the console is served.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// Address to bind (port 0: the OS picks one).
    pub listen: SocketAddr,
    /// The user asked for a non-loopback address with `--dangerous-listen`.
    pub dangerous_listen: bool,
    /// The audit log's verifier key (auditors).
    pub audit_key: Option<String>,
    /// The auditor's local log directory (default `<store_dir>/audit-log`).
    pub audit_dir: Option<PathBuf>,
    /// Witness verifier keys (`name+id+base64`) whose cosignatures the
    /// auditor view verifies (`focal console --witness`, as `focal audit verify`).
    pub witnesses: Vec<String>,
    /// Valid cosignatures of those witnesses required on the latest checkpoint.
    pub required_witnesses: usize,
}

/// Shared state of the handlers.
pub(crate) struct State {
    pub(crate) client: Client,
    pub(crate) role: Role,
    pub(crate) session: String,
    pub(crate) csrf: String,
    pub(crate) dangerous_listen: bool,
    pub(crate) port: u16,
    pub(crate) audit_key: Option<String>,
    pub(crate) audit_dir: PathBuf,
    /// Trusted witness keys (auditors).
    pub(crate) witnesses: Vec<witness::Trusted>,
    /// Valid witness cosignatures required on the latest checkpoint.
    pub(crate) required_witnesses: usize,
    /// Decrypted attachments and uploads; removed when the console stops.
    pub(crate) work: tempfile::TempDir,
    /// Attachments saved by the last opening of each message.
    pub(crate) opened: Mutex<HashMap<(String, String), Vec<SavedAttachment>>>,
    /// Live page updates ([`live`]).
    pub(crate) live: live::Live,
    /// Progress of recent composes' sends ([`upload`]).
    pub(crate) uploads: upload::Uploads,
    /// What the inbox learnt of messages not opened yet ([`preview`]).
    pub(crate) previews: preview::Previews,
    /// Outcome of the last audit verification (Ok: report; Err: why not).
    pub(crate) last_verify: Mutex<Option<std::result::Result<crate::audit::VerifyReport, String>>>,
}

pub(crate) type Shared = Arc<State>;

/// A console bound to its listener, ready to serve.
pub struct Console {
    state: Shared,
    listener: TcpListener,
}

impl Console {
    /// Checks the address, binds it and creates the session: call
    /// [`Console::url`] to print the login URL, then [`Console::serve`].
    pub async fn bind(client: Client, opts: ConsoleOptions) -> Result<Console> {
        check_listen(opts.listen, opts.dangerous_listen)?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|e| ClientError::io("cannot listen on", opts.listen.to_string(), e))?;
        let local = listener.local_addr().map_err(|e| ClientError::io("cannot listen on", "socket", e))?;
        let role = client.credentials().identity.role;
        let work_parent = client.store().tmp_dir();
        std::fs::create_dir_all(&work_parent)
            .map_err(|e| ClientError::io("cannot create", &work_parent, e))?;
        let work = tempfile::Builder::new()
            .prefix("console-")
            .tempdir_in(&work_parent)
            .map_err(|e| ClientError::io("cannot create a directory in", &work_parent, e))?;
        let witnesses = opts
            .witnesses
            .iter()
            .map(|w| witness::Trusted::parse(w).map_err(|e| ClientError::invalid("--witness", e)))
            .collect::<Result<Vec<_>>>()?;
        if opts.required_witnesses > witnesses.len() {
            return Err(ClientError::invalid(
                "--require-witnesses",
                format!("{} required but {} witness keys given", opts.required_witnesses, witnesses.len()),
            ));
        }
        let audit_dir = opts.audit_dir.clone().unwrap_or_else(|| client.store().dir().join("audit-log"));
        let state = Arc::new(State {
            client,
            role,
            session: security::random_token()?,
            csrf: security::random_token()?,
            dangerous_listen: opts.dangerous_listen,
            port: local.port(),
            audit_key: opts.audit_key,
            audit_dir,
            witnesses,
            required_witnesses: opts.required_witnesses,
            work,
            opened: Mutex::new(HashMap::new()),
            last_verify: Mutex::new(None),
            previews: preview::Previews::default(),
            live: live::Live::new(),
            uploads: upload::Uploads::default(),
        });
        Ok(Console { state, listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// The URL to open once: it carries the session token, which the
    /// console turns into a cookie and removes from the address bar.
    pub fn url(&self) -> String {
        let a = self.local_addr();
        let host = if a.ip().is_unspecified() { "127.0.0.1".to_owned() } else { a.ip().to_string() };
        let host = if a.is_ipv6() && !a.ip().is_unspecified() { format!("[{host}]") } else { host };
        format!("http://{host}:{}/?token={}", a.port(), self.state.session)
    }

    /// Serves until `shutdown` completes, then finishes open requests.
    /// Event streams of live pages end first, so open tabs do not hold the
    /// shutdown.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let app = router(self.state.clone());
        let watcher = tokio::spawn(live::watch(self.state.clone()));
        let st = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            st.live.stop();
        };
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ClientError::io("console server failed", "listener", e));
        self.state.live.stop();
        let _ = watcher.await;
        served
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/static/console.css", get(html::css))
        .route("/static/live.js", get(live::script))
        .route("/static/compose.js", get(upload::script))
        .route("/events", get(live::events))
        .route("/inbox", get(inbox::inbox))
        .route("/sent", get(inbox::sent))
        .route("/overdue", get(inbox::overdue))
        .route("/case", get(inbox::case))
        .route("/message/{sender}/{id}", get(message::view))
        .route("/message/{sender}/{id}/attachment/{n}", get(message::attachment))
        .route("/message/{sender}/{id}/ack", post(message::ack))
        .route("/message/{sender}/{id}/reply", post(message::reply))
        .route("/compose", get(compose::form).post(compose::submit))
        .route("/compose/progress", get(upload::progress))
        .route("/admin", get(admin::view))
        .route("/admin/peer/{peer}/{action}", post(admin::peer_action))
        .route("/audit", get(auditor::view))
        .route("/audit/refresh", post(auditor::refresh))
        .route("/audit/trace", get(auditor::trace))
        .route("/audit/export", get(auditor::export))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::guard))
        .with_state(state)
}

/// `/`: the home view of the certificate's role.
async fn home(axum::extract::State(st): axum::extract::State<Shared>) -> Response {
    match st.role {
        Role::Fp => Redirect::to("/inbox").into_response(),
        Role::Admin => Redirect::to("/admin").into_response(),
        Role::Auditor => Redirect::to("/audit").into_response(),
        _ => Failure(StatusCode::FORBIDDEN, strings::strings().no_view.into()).into_response(),
    }
}

/// An error shown as a page.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) StatusCode, pub(crate) String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ClientError::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_GATEWAY,
        };
        Failure(code, e.to_string())
    }
}

impl From<focal_proto::ProtoError> for Failure {
    fn from(e: focal_proto::ProtoError) -> Self {
        Failure(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<crate::audit::AuditError> for Failure {
    fn from(e: crate::audit::AuditError) -> Self {
        Failure(StatusCode::BAD_GATEWAY, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let s = strings::strings();
        let body = format!("<h1>{}</h1><p class=\"bad\" role=\"alert\">{}</p>", s.error, html::esc(&self.1));
        (self.0, html::frame(None, s.error, &body, None)).into_response()
    }
}

/// Handler result.
pub(crate) type Page = std::result::Result<Response, Failure>;
