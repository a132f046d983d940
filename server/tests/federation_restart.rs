//! A peer that goes away and comes back on the same port is re-dialled and
//! transfers work again: after a graceful close, and after an abrupt stop
//! that leaves the other side holding a stale connection.

mod federation_support;

use federation_support::*;
use focal_proto::{Role, pb};
use focal_relay::federation::LinkEvent;

async fn transfer(link: &focal_relay::federation::LinkHandle, tag: &str, len: u64) {
    let ack = link.send_envelope(header(tag, len), PatternReader::new(len)).await.unwrap();
    assert_eq!(ack.status, pb::TransferStatus::Stored as i32, "{ack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_redials_after_the_other_side_restarts() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let (cs, gs) = (udp(), udp());
    let (ca, ga) = (cs.local_addr().unwrap(), gs.local_addr().unwrap());
    let carin = start(&carin_creds, &pki, cs, vec![peer("relay-gfp", "gfp", ga)], tuning());
    let gfp = start(&gfp_creds, &pki, gs, vec![peer("relay-carin", "carin", ca)], tuning());
    let to_gfp = carin.fed.link("relay-gfp").unwrap();
    settle(&carin, &to_gfp, &gfp, &gfp.fed.link("relay-carin").unwrap()).await;
    transfer(&to_gfp, "before", 2 * 1024 * 1024).await;
    let gen_before = to_gfp.status().generation;

    // The gfp relay stops (endpoint closed and dropped) ...
    let mut carin_events = carin.fed.subscribe();
    gfp.fed.close().await;
    drop(gfp.handler);
    wait_event(&mut carin_events, "carin sees gfp go", |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    assert!(to_gfp.remote().is_none());
    let err = to_gfp.send_envelope(header("while-down", 10), PatternReader::new(10)).await.unwrap_err();
    assert!(err.to_string().contains("not connected"), "{err}");

    // ... and comes back on the same port: the link comes back by itself.
    let gfp = start(&gfp_creds, &pki, rebind(ga).await, vec![peer("relay-carin", "carin", ca)], tuning());
    wait_event(&mut carin_events, "carin reconnects", |e| matches!(e, LinkEvent::Connected(_))).await;
    assert!(to_gfp.status().generation > gen_before);
    let to_carin = gfp.fed.link("relay-carin").unwrap();
    settle(&carin, &to_gfp, &gfp, &to_carin).await;
    transfer(&to_gfp, "after", 3 * 1024 * 1024).await;
    let got = gfp.handler.envelopes();
    assert_eq!(got.len(), 1);
    assert!(got[0].complete && got[0].context == b"after");
    // And the other direction.
    transfer(&to_carin, "back", 100_000).await;

    // Same again with carin (the side whose dial wins) restarting.
    let to_carin_gen = to_carin.status().generation;
    let mut gfp_events = gfp.fed.subscribe();
    carin.fed.close().await;
    wait_event(&mut gfp_events, "gfp sees carin go", |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    let carin = start(&carin_creds, &pki, rebind(ca).await, vec![peer("relay-gfp", "gfp", ga)], tuning());
    wait_event(&mut gfp_events, "gfp reconnects", |e| matches!(e, LinkEvent::Connected(_))).await;
    assert!(to_carin.status().generation > to_carin_gen);
    let to_gfp = carin.fed.link("relay-gfp").unwrap();
    settle(&carin, &to_gfp, &gfp, &to_carin).await;
    transfer(&to_carin, "back-again", 1024 * 1024).await;
    transfer(&to_gfp, "forth-again", 1024 * 1024).await;

    carin.fed.close().await;
    gfp.fed.close().await;
}

/// Runs a relay on its own runtime so that it can be stopped without any
/// goodbye: shutting the runtime down drops every task, including quinn's
/// drivers, so no CONNECTION_CLOSE is sent and the peer is left holding a
/// connection that silently went dead.
fn start_on_own_runtime(
    pki: &Pki,
    creds_net: &str,
    name: &str,
    socket: std::net::UdpSocket,
    peers: Vec<focal_relay::config::PeerConfig>,
) -> (tokio::runtime::Runtime, Relay) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let creds = pki.creds(creds_net, Role::Relay, name);
    let relay = {
        let _in_rt = rt.enter();
        start(&creds, pki, socket, peers, tuning())
    };
    (rt, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connection_is_replaced_when_the_peer_comes_back_abruptly() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
    let (cs, gs) = (udp(), udp());
    let (ca, ga) = (cs.local_addr().unwrap(), gs.local_addr().unwrap());
    let carin = start(&carin_creds, &pki, cs, vec![peer("relay-gfp", "gfp", ga)], tuning());
    let (rt, old_gfp) =
        start_on_own_runtime(&pki, "gfp", "relay-gfp", gs, vec![peer("relay-carin", "carin", ca)]);
    let to_gfp = carin.fed.link("relay-gfp").unwrap();
    // Both dialled at start; wait for the connection carin dialled to be the one kept.
    eventually("carin's dial kept", || to_gfp.remote().is_some_and(|r| r.dialled_by_us)).await;
    let first = to_gfp.remote().unwrap();
    transfer(&to_gfp, "before", 100_000).await;

    // gfp dies without a word: its runtime stops and drops every task
    // (quinn's drivers included) without polling them again ...
    tokio::task::spawn_blocking(move || rt.shutdown_timeout(std::time::Duration::from_secs(10)))
        .await
        .unwrap();
    // ... then its handle goes (releasing the port); with no driver left,
    // no close reaches the wire. carin still believes in its connection.
    drop(old_gfp);
    let mut events = carin.fed.subscribe();
    assert_eq!(to_gfp.remote().unwrap().connection_id, first.connection_id);
    // Its successor binds the same port and dials carin. Carin's own dial
    // would win, but the old connection no longer answers a ping: the new
    // one replaces it well before the 30 s idle timeout.
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let gfp = start(&gfp_creds, &pki, rebind(ga).await, vec![peer("relay-carin", "carin", ca)], tuning());
    let ev = wait_event(
        &mut events,
        "carin adopts the new connection",
        |e| matches!(e, LinkEvent::Connected(p) if p.connection_id != first.connection_id),
    )
    .await;
    let LinkEvent::Connected(p) = ev else { unreachable!() };
    assert_eq!(p.identity.name, "relay-gfp");
    // The stale connection was dropped because it no longer answered (not
    // by an idle timeout, and not because gfp said goodbye).
    let old_gone = carin.handler.events().into_iter().find_map(|e| match e {
        LinkEvent::Disconnected { connection_id, reason, .. } if connection_id == first.connection_id => {
            Some(reason)
        }
        _ => None,
    });
    let reason = old_gone.expect("the stale connection was reported disconnected");
    assert!(reason.contains("stale") && reason.contains("probe"), "{reason}");
    transfer(&to_gfp, "after", 2 * 1024 * 1024).await;
    assert_eq!(gfp.handler.envelopes().len(), 1);
    // One connection remains on each side.
    eventually("single connection", || carin.fed.open_connections() == 1 && gfp.fed.open_connections() == 1)
        .await;
    carin.fed.close().await;
    gfp.fed.close().await;
}
