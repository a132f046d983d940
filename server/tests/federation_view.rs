//! Federation view (link reports), whole relays in-process: carin and
//! arinsa are spokes of the gfp hub and not linked to each other. carin's
//! `Admin.Status` shows gfp's report with the gfp <-> arinsa link up (carin
//! learns it only from the hub's report); after arinsa stops, it shows that
//! link no longer connected (or gfp's report stale). The hub keeps one
//! report per spoke. Refusal of forged reports is unit-tested in
//! `focal_relay::core::fedview`.

mod common;
mod ops_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Pki, init};
use focal_proto::pb::admin_client::AdminClient;
use focal_proto::{Role, pb};
use focal_relay::config::RelayConfig;
use ops_support::admin_client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(120);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), focal_relay::RelayError>>>,
}

impl Running {
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            j.await.unwrap().unwrap();
        }
    }
}

/// Starts `net`'s relay on `udp` with `peers` as (network, udp port, default_route).
async fn start(
    pki: &Pki,
    net: &str,
    dir: &std::path::Path,
    udp: UdpSocket,
    peers: &[(&str, u16, bool)],
) -> Running {
    let mut extra = "\n[limits]\nshutdown_grace_secs = 2\n".to_owned();
    for (pnet, port, default_route) in peers {
        extra.push_str(&format!(
            "\n[[peers]]\nname = \"relay-{pnet}\"\nnetwork = \"{pnet}\"\naddress = \"127.0.0.1:{port}\"\n\
             default_route = {default_route}\n"
        ));
    }
    let path = pki.federated_relay_config(net, dir, &extra, udp.local_addr().unwrap().port());
    let config = RelayConfig::load(&path).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let listeners = focal_relay::Listeners { grpc, federation: Some(udp), metrics: None };
    let (tx, rx) = oneshot::channel::<()>();
    let join = tokio::spawn(focal_relay::serve(config, listeners, async move {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(tx), join: Some(join) }
}

/// The link `reporter` reported towards `peer_network`, if any.
fn reported(
    status: &pb::StatusResponse,
    reporter: &str,
    peer_network: &str,
) -> Option<(pb::LinkState, bool)> {
    let r = status.remote_reports.iter().find(|r| r.network == reporter)?;
    let l = r.links.iter().find(|l| l.peer_network == peer_network)?;
    Some((l.clone(), r.stale))
}

/// Polls `admin`'s status until `cond` holds (generous deadline).
async fn wait_status(
    admin: &mut AdminClient<Channel>,
    what: &str,
    mut cond: impl FnMut(&pb::StatusResponse) -> bool,
) -> pb::StatusResponse {
    let start = Instant::now();
    loop {
        let s = admin.status(pb::StatusRequest {}).await.unwrap().into_inner();
        if cond(&s) {
            return s;
        }
        assert!(start.elapsed() < DEADLINE, "{what}; last status: {:?}", s.remote_reports);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_sees_the_other_spokes_link_through_the_hub_report() {
    init();
    let pki = Pki::new(&["carin", "gfp", "arinsa"]);
    let sockets: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = sockets.iter().map(|s| s.local_addr().unwrap().port()).collect();
    let (carin_port, gfp_port, arinsa_port) = (ports[0], ports[1], ports[2]);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut sockets = sockets.into_iter();
    let mut carin =
        start(&pki, "carin", dirs[0].path(), sockets.next().unwrap(), &[("gfp", gfp_port, true)]).await;
    let mut gfp = start(
        &pki,
        "gfp",
        dirs[1].path(),
        sockets.next().unwrap(),
        &[("carin", carin_port, false), ("arinsa", arinsa_port, false)],
    )
    .await;
    let mut arinsa =
        start(&pki, "arinsa", dirs[2].path(), sockets.next().unwrap(), &[("gfp", gfp_port, true)]).await;

    let mut carin_admin =
        admin_client(&pki, "carin", Role::Admin, "secretariat", "carin", carin.addr).await.unwrap();
    let up = wait_status(
        &mut carin_admin,
        "carin never saw gfp <-> arinsa connected",
        |s| matches!(reported(s, "gfp", "arinsa"), Some((l, false)) if l.state == "connected"),
    )
    .await;
    let gfp_report = up.remote_reports.iter().find(|r| r.network == "gfp").unwrap();
    assert_eq!(gfp_report.relay, "relay-gfp");
    assert!(gfp_report.reported_at_ms > 0);
    let (to_arinsa, _) = reported(&up, "gfp", "arinsa").unwrap();
    assert_eq!(to_arinsa.peer_relay, "relay-arinsa");
    // Only direct peers report to carin: arinsa's own report is not forwarded by the hub.
    assert!(up.remote_reports.iter().all(|r| r.network == "gfp"), "{:?}", up.remote_reports);

    // The hub keeps one report per spoke.
    let mut gfp_admin = admin_client(&pki, "gfp", Role::Admin, "secretariat", "gfp", gfp.addr).await.unwrap();
    let hub = wait_status(&mut gfp_admin, "gfp never got both spokes' reports", |s| {
        reported(s, "carin", "gfp").is_some() && reported(s, "arinsa", "gfp").is_some()
    })
    .await;
    assert_eq!(hub.remote_reports.len(), 2, "{:?}", hub.remote_reports);

    // ARINSA goes away: carin sees gfp's link to it down (or gfp's report stale).
    arinsa.stop().await;
    let down = wait_status(
        &mut carin_admin,
        "carin never saw gfp <-> arinsa down after arinsa stopped",
        |s| matches!(reported(s, "gfp", "arinsa"), Some((l, stale)) if stale || l.state != "connected"),
    )
    .await;
    let (l, stale) = reported(&down, "gfp", "arinsa").unwrap();
    assert!(stale || ["connecting", "backoff"].contains(&l.state.as_str()), "{l:?}");

    carin.stop().await;
    gfp.stop().await;
}
