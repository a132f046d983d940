//! Section `idle`: memory of one relay (a child process) holding many idle
//! authenticated client connections: 10,000 (1,000 with `--quick`), or as
//! many as the open-file limit allows. Each connection is a real focal
//! client channel (TCP, TLS 1.3 with the focal point's certificate, HTTP/2;
//! `focal_client::connect::connect`) that makes one cheap authenticated RPC
//! (a directory lookup of its own address) and then stays open and idle.
//! The relay's `VmRSS` is read before the first and after the last
//! connection, and its `VmHWM` at the end.
//!
//! The bench raises its soft `RLIMIT_NOFILE` to the hard limit first; the
//! relay, its child, inherits it. Both processes need one descriptor per
//! connection plus some for themselves (sled, listeners, pipes).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use focal_proto::pb;
use focal_tests::{Bins, Federation};
use futures::StreamExt;
use rustix::process::{Resource, getrlimit, setrlimit};
use tonic::transport::Channel;

use crate::table::Row;

/// Descriptors kept free for everything but the connections, per process.
const FD_RESERVE: u64 = 256;
/// Handshakes in flight at once.
const CONCURRENCY: usize = 32;

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            eprintln!("idle: cannot raise RLIMIT_NOFILE: {e}");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) async fn run(wanted: usize) -> Result<Vec<Row>> {
    let nofile = raise_nofile();
    let n = wanted.min(nofile.saturating_sub(FD_RESERVE) as usize);
    eprintln!("idle: RLIMIT_NOFILE {nofile}; opening {n} of {wanted} connections ...");
    let exe = std::env::current_exe()?;
    let bins = Bins { relay: exe.clone(), focal: exe };
    let fed = Federation::builder()
        .network("carin")
        .focal_point("idle@carin")
        .limits("carin", |l| {
            l.max_connections = n + 64;
            l.max_connections_per_identity = n + 64;
        })
        .processes(&bins)
        .start()
        .await
        .context("starting the relay")?;
    let relay = fed.relay("carin");
    let profile = fed.fp("idle@carin").profile()?;
    let (creds, trust) = focal_client::connect::load_identity(&profile)?;
    let me = creds.identity.address().to_string();

    // One connection first, so the relay's lazily built state (TLS config,
    // sled caches, directory) is in "before".
    let warm = open(&profile, &creds, &trust, &me).await.context("first connection")?;
    let before = relay.rss_kib().context("relay VmRSS")?;
    let profile = Arc::new(profile);
    let started = Instant::now();
    let results: Vec<Result<Channel>> = futures::stream::iter(0..n)
        .map(|_| {
            let (profile, creds, trust, me) = (profile.clone(), creds.clone(), trust.clone(), me.clone());
            async move { open(&profile, &creds, &trust, &me).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let took = started.elapsed();
    let mut channels = Vec::with_capacity(n);
    let mut first_err = None;
    for r in results {
        match r {
            Ok(c) => channels.push(c),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let opened = channels.len();
    eprintln!("idle: {opened} connections open in {took:.1?}");
    if let Some(e) = &first_err {
        eprintln!("idle: {} connections failed, first: {e:#}", n - opened);
    }
    if opened == 0 {
        bail!("no connection could be opened");
    }
    let after = relay.rss_kib().context("relay VmRSS")?;
    let peak = relay.peak_rss_kib().context("relay VmHWM")?;
    let bench_rss = focal_tests::relay::proc_status_kib(std::process::id(), "VmRSS").unwrap_or(0);
    drop(channels);
    drop(warm);
    fed.shutdown().await?;

    let per = after.saturating_sub(before) as f64 * 1024.0 / opened as f64;
    let limit = if n < wanted {
        format!(
            "{opened} of the {wanted} asked: RLIMIT_NOFILE is {nofile} (hard limit) and each of the two \
             processes needs one descriptor per connection plus {FD_RESERVE} of its own"
        )
    } else if opened < n {
        format!("{opened} of {n}: {} failed", n - opened)
    } else {
        format!("all {opened} (RLIMIT_NOFILE {nofile})")
    };
    Ok(vec![
        Row::one("idle mTLS gRPC connections held (each made one authenticated directory lookup)", limit),
        Row::one("relay VmRSS before (one connection open)", mib(before)),
        Row::one(&format!("relay VmRSS with {opened} more idle connections"), mib(after)),
        Row::one("relay VmHWM (peak) at the end", mib(peak)),
        Row::one(
            "relay memory per idle connection ((after - before) / n)",
            format!("{:.1} KiB", per / 1024.0),
        ),
        Row::one(
            &format!("time to open the {opened} connections ({CONCURRENCY} handshakes in flight)"),
            format!("{:.1} s ({:.0} connections/s)", took.as_secs_f64(), opened as f64 / took.as_secs_f64()),
        ),
        Row::one("client side (the bench process) VmRSS holding them", mib(bench_rss)),
    ])
}

/// One authenticated connection: TLS with the focal point's certificate,
/// then a directory lookup of its own address.
async fn open(
    profile: &focal_client::Profile,
    creds: &Arc<focal_certs::Credentials>,
    trust: &focal_certs::SharedTrust,
    me: &str,
) -> Result<Channel> {
    let channel = focal_client::connect::connect(profile, creds, trust.clone()).await?;
    pb::directory_client::DirectoryClient::new(channel.clone())
        .lookup(pb::LookupRequest { address: me.to_owned() })
        .await
        .context("directory lookup")?;
    Ok(channel)
}
