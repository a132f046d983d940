//! Establishing a link: dialling a configured peer and accepting a peer's
//! dial, each ending with the hello exchange.
//!
//! Hello: the dialler opens the first bidirectional stream and sends its
//! `Hello` as the only frame, then finishes its side; the acceptor checks it
//! against the dialler's certificate (`policy::check_hello`) and answers
//! with its own `Hello` on the same stream, which the dialler checks the
//! same way. No other stream is served before both hellos are checked.
//! Every refusal closes the connection with a `close_code` and a reason and
//! is reported as `LinkEvent::Refused`.

use std::net::SocketAddr;
use std::sync::Arc;

use focal_proto::pb::frame::Kind;
use focal_proto::{Identity, Role, pb};
use tokio::time::timeout;
use tracing::Instrument;

use super::Shared;
use super::conn::{ConnCtx, serve_connection};
use super::events::{Direction, LinkEvent, Refusal, RefusalKind, RemotePeer};
use super::link::PeerSlot;
use super::policy::check_hello;
use super::wire::{
    FrameReader, ReadFail, close_code, describe_close, frame, kind_name, peer_identity, write_frame,
};

fn refuse(sh: &Shared, conn: Option<&quinn::Connection>, code: u32, mut refusal: Refusal) {
    if let Some(conn) = conn {
        let mut end = refusal.reason.len().min(200);
        while !refusal.reason.is_char_boundary(end) {
            end -= 1;
        }
        conn.close(quinn::VarInt::from_u32(code), &refusal.reason.as_bytes()[..end]);
    }
    if refusal.reason.is_empty() {
        refusal.reason = close_code::name(code.into()).to_owned();
    }
    sh.reporter.emit(LinkEvent::Refused(refusal));
}

/// Reads the one `Hello` frame of the hello stream.
async fn read_hello(
    sh: &Shared,
    conn: &quinn::Connection,
    recv: quinn::RecvStream,
) -> Result<pb::Hello, String> {
    let mut reader = FrameReader::new(recv, sh.tuning.max_frame, sh.tuning.handshake_timeout, None);
    match reader.next().await {
        Ok(Some(pb::Frame { kind: Some(Kind::Hello(h)) })) => Ok(h),
        Ok(Some(f)) => Err(format!("expected Hello as the first frame, got {}", kind_name(&f))),
        Ok(None) => Err("hello stream ended without a Hello".into()),
        Err(ReadFail::Gone(d)) => Err(match conn.close_reason() {
            Some(e) => describe_close(&e),
            None => format!("hello stream lost: {d}"),
        }),
        Err(e) => Err(format!("hello: {e}")),
    }
}

fn hello_frame(sh: &Shared) -> pb::Frame {
    frame(Kind::Hello(sh.hello.clone()))
}

/// Resolves a peer address to one the endpoint can reach.
async fn resolve(sh: &Shared, slot: &PeerSlot) -> Result<SocketAddr, String> {
    let v6_ok = sh.endpoint.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
    let addrs = tokio::net::lookup_host((slot.host.as_str(), slot.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", slot.config.address))?;
    addrs
        .into_iter()
        .find(|a| a.is_ipv4() || v6_ok)
        .ok_or_else(|| format!("{} has no address reachable from this endpoint", slot.config.address))
}

/// Dials `slot`'s peer: handshake, certificate identity check, hello.
pub(crate) async fn dial(sh: Arc<Shared>, slot: Arc<PeerSlot>) -> Result<Arc<ConnCtx>, String> {
    let addr = resolve(&sh, &slot).await?;
    let connecting = sh
        .endpoint
        .connect_with(slot.client_config.read().unwrap_or_else(|e| e.into_inner()).clone(), addr, &slot.host)
        .map_err(|e| format!("cannot dial {addr}: {e}"))?;
    let outbound = |kind, identity: Option<Identity>, reason: String| Refusal {
        direction: Direction::Outbound,
        remote: addr,
        identity,
        peer: Some(slot.config.name.clone()),
        kind,
        reason,
    };
    let conn = match timeout(sh.tuning.handshake_timeout, connecting).await {
        Err(_) => return Err(format!("handshake with {addr} timed out")),
        Ok(Err(e)) => {
            let reason = format!("handshake with {addr} failed: {}", describe_close(&e));
            // A timeout or reset means the peer is away, not that it refused us.
            if !matches!(e, quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset) {
                refuse(&sh, None, 0, outbound(RefusalKind::Handshake, None, reason.clone()));
            }
            return Err(reason);
        }
        Ok(Ok(c)) => c,
    };
    let identity = match peer_identity(&conn) {
        Ok(id) => id,
        Err(e) => {
            refuse(
                &sh,
                Some(&conn),
                close_code::IDENTITY_MISMATCH,
                outbound(RefusalKind::IdentityMismatch, None, e.clone()),
            );
            return Err(e);
        }
    };
    if identity.role != Role::Relay
        || identity.network != slot.config.network
        || identity.name != slot.config.name
    {
        let reason = format!(
            "dialled peer {} at {addr} presented the certificate of {}",
            slot.identity.uri(),
            identity.uri()
        );
        refuse(
            &sh,
            Some(&conn),
            close_code::IDENTITY_MISMATCH,
            outbound(RefusalKind::IdentityMismatch, Some(identity), reason.clone()),
        );
        return Err(reason);
    }
    let exchange = async {
        let (mut send, recv) =
            conn.open_bi().await.map_err(|e| format!("cannot open the hello stream: {e}"))?;
        write_frame(&mut send, &hello_frame(&sh), sh.tuning.max_frame)
            .await
            .map_err(|e| format!("hello: {e}"))?;
        let _ = send.finish();
        read_hello(&sh, &conn, recv).await
    };
    let hello = match timeout(sh.tuning.handshake_timeout, exchange).await {
        Ok(Ok(h)) => h,
        Ok(Err(reason)) => {
            // Closed by the peer with a reason (unconfigured, hello refused…)?
            // Its reason wins over how our side noticed (a write or a read
            // failing, whichever came first).
            let closed = conn.close_reason();
            let reason = match &closed {
                Some(e @ quinn::ConnectionError::ApplicationClosed(_)) => describe_close(e),
                _ => reason,
            };
            if let Some(quinn::ConnectionError::ApplicationClosed(c)) = closed {
                // Duplicate resolution or shutdown crossing our hello is no refusal.
                let code = c.error_code.into_inner();
                let benign = [close_code::DUPLICATE, close_code::STALE, close_code::SHUTDOWN];
                if !benign.iter().any(|b| u64::from(*b) == code) {
                    refuse(&sh, None, 0, outbound(RefusalKind::ByPeer, Some(identity), reason.clone()));
                }
            } else {
                refuse(
                    &sh,
                    Some(&conn),
                    close_code::HELLO_REFUSED,
                    outbound(RefusalKind::BadHello, Some(identity), reason.clone()),
                );
            }
            return Err(reason);
        }
        Err(_) => {
            let reason = "no hello from the peer in time".to_owned();
            refuse(
                &sh,
                Some(&conn),
                close_code::HELLO_REFUSED,
                outbound(RefusalKind::BadHello, Some(identity), reason.clone()),
            );
            return Err(reason);
        }
    };
    if let Err(reason) = check_hello(&hello, &identity) {
        refuse(
            &sh,
            Some(&conn),
            close_code::HELLO_REFUSED,
            outbound(RefusalKind::BadHello, Some(identity), reason.clone()),
        );
        return Err(reason);
    }
    Ok(established(&sh, &slot, conn, identity, hello, addr, true))
}

fn established(
    sh: &Shared,
    slot: &PeerSlot,
    conn: quinn::Connection,
    identity: Identity,
    hello: pb::Hello,
    address: SocketAddr,
    dialled_by_us: bool,
) -> Arc<ConnCtx> {
    let connection_id = conn.stable_id();
    let peer = RemotePeer { identity, hello, address, dialled_by_us, connection_id };
    let ctx =
        Arc::new(ConnCtx::new(conn, peer, slot.limiter.clone(), sh.reporter.clone(), sh.tuning.clone()));
    let span =
        tracing::info_span!("fed_conn", me = %sh.me.name, peer = %ctx.peer.identity.name, id = connection_id);
    tokio::spawn(
        serve_connection(ctx.clone(), sh.handler.clone(), sh.inflight.clone(), sh.reports.clone())
            .instrument(span),
    );
    ctx
}

/// Handles one inbound connection attempt to the end of the hello, then
/// hands the connection to its peer's link task.
pub(crate) async fn accept(sh: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let inbound = |kind, identity: Option<Identity>, reason: String| Refusal {
        direction: Direction::Inbound,
        remote,
        identity,
        peer: None,
        kind,
        reason,
    };
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                &sh,
                None,
                0,
                inbound(RefusalKind::Handshake, None, format!("handshake failed: {e}")),
            );
        }
    };
    let conn = match timeout(sh.tuning.handshake_timeout, connecting).await {
        Err(_) => {
            return refuse(&sh, None, 0, inbound(RefusalKind::Handshake, None, "handshake timed out".into()));
        }
        Ok(Err(e)) => {
            let reason = format!("handshake failed: {}", describe_close(&e));
            return refuse(&sh, None, 0, inbound(RefusalKind::Handshake, None, reason));
        }
        Ok(Ok(c)) => c,
    };
    let identity = match peer_identity(&conn) {
        Ok(id) => id,
        Err(e) => {
            return refuse(
                &sh,
                Some(&conn),
                close_code::UNCONFIGURED,
                inbound(RefusalKind::Handshake, None, e),
            );
        }
    };
    let slot = match sh.peers.get(&(identity.network.clone(), identity.name.clone())) {
        Some(slot) if identity.role == Role::Relay => slot.clone(),
        _ => {
            let reason = format!("{} is not a configured peer of {}", identity.uri(), sh.me.uri());
            return refuse(
                &sh,
                Some(&conn),
                close_code::UNCONFIGURED,
                inbound(RefusalKind::Unconfigured, Some(identity), reason),
            );
        }
    };
    let exchange = async {
        let (mut send, recv) =
            conn.accept_bi().await.map_err(|e| format!("no hello stream: {}", describe_close(&e)))?;
        let hello = read_hello(&sh, &conn, recv).await?;
        check_hello(&hello, &identity)?;
        write_frame(&mut send, &hello_frame(&sh), sh.tuning.max_frame)
            .await
            .map_err(|e| format!("hello reply: {e}"))?;
        let _ = send.finish();
        Ok::<_, String>(hello)
    };
    let hello = match timeout(sh.tuning.handshake_timeout, exchange).await {
        Ok(Ok(h)) => h,
        Ok(Err(reason)) => {
            let mut r = inbound(RefusalKind::BadHello, Some(identity), reason);
            r.peer = Some(slot.config.name.clone());
            return refuse(&sh, Some(&conn), close_code::HELLO_REFUSED, r);
        }
        Err(_) => {
            let mut r = inbound(RefusalKind::BadHello, Some(identity), "no hello in time".into());
            r.peer = Some(slot.config.name.clone());
            return refuse(&sh, Some(&conn), close_code::HELLO_REFUSED, r);
        }
    };
    let ctx = established(&sh, &slot, conn, identity, hello, remote, false);
    if slot.candidates.send(ctx.clone()).await.is_err() {
        ctx.close(close_code::SHUTDOWN, "relay shutting down");
    }
}
