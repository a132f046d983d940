//! Load generation shared by the Focal and NATS runs: a closed-loop
//! saturation phase (a fixed number of requests in flight) and an open-loop
//! phase at a fixed offered rate. Messages are numbered; the system under
//! test reports each arrival at a recipient as `(number, Instant)` on a
//! channel, and latency is arrival minus the send start (saturation) or
//! minus the scheduled send time (offered load, so a stall is not hidden).
//! Each phase also records how busy the whole machine was (`/proc/stat`),
//! and [`ProcFigures`] the CPU time of each server process per phase.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc::UnboundedReceiver;

/// Arrivals: message number and when it reached its recipient.
pub(crate) type Arrivals = UnboundedReceiver<(usize, Instant)>;

/// What one phase measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    /// Messages sent (accepted by the first hop).
    pub sent: usize,
    /// Messages that reached their recipient.
    pub received: usize,
    /// Send errors.
    pub errors: usize,
    /// First send to last arrival (s).
    pub secs: f64,
    /// Latency percentiles (ms): p50, p99, p99.9, max.
    pub lat: [f64; 4],
    /// Share of the machine's CPU time (all cores, all processes) that was
    /// busy during the phase, from `/proc/stat`.
    pub machine_busy: Option<f64>,
}

/// One server process's figures: CPU time (utime + stime, ms) in each
/// phase and peak RSS.
#[derive(Clone, Debug)]
pub(crate) struct ProcFigures {
    pub name: String,
    pub saturation_cpu_ms: f64,
    pub offered_cpu_ms: f64,
    pub peak_rss_kib: Option<u64>,
}

/// CPU seconds of each process now (`None`: unreadable).
pub(crate) fn cpu_now(pids: &[Option<u32>]) -> Vec<Option<f64>> {
    pids.iter().map(|p| p.and_then(focal_tests::relay::proc_cpu_time).map(|t| t.as_secs_f64())).collect()
}

impl ProcFigures {
    /// The figures of processes `names`, from [`cpu_now`] readings taken
    /// before saturation, between the phases and after the offered load,
    /// and each one's peak RSS.
    pub(crate) fn from_readings(
        names: &[&str],
        readings: [&[Option<f64>]; 3],
        peak_rss_kib: impl Fn(usize) -> Option<u64>,
    ) -> Vec<ProcFigures> {
        let ms = |a: Option<f64>, b: Option<f64>| a.zip(b).map_or(f64::NAN, |(a, b)| (b - a) * 1e3);
        let [r0, r1, r2] = readings;
        (0..names.len())
            .map(|i| ProcFigures {
                name: names[i].to_string(),
                saturation_cpu_ms: ms(r0[i], r1[i]),
                offered_cpu_ms: ms(r1[i], r2[i]),
                peak_rss_kib: peak_rss_kib(i),
            })
            .collect()
    }
}

/// The machine's busy and total CPU ticks so far (first line of `/proc/stat`).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// Busy share of the machine between two [`machine_ticks`] readings.
fn busy_between(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

impl Outcome {
    /// Messages per second reaching recipients.
    pub(crate) fn rate(&self) -> f64 {
        if self.secs > 0.0 { self.received as f64 / self.secs } else { 0.0 }
    }
}

fn percentiles(mut v: Vec<f64>) -> [f64; 4] {
    if v.is_empty() {
        return [f64::NAN; 4];
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.50), at(0.99), at(0.999), v[v.len() - 1]]
}

/// Collects arrivals of messages `range` until all came or nothing arrived
/// for `idle`; returns latency samples (ms) and the last arrival.
async fn collect(
    rx: &mut Arrivals,
    range: std::ops::Range<usize>,
    start_of: impl Fn(usize) -> Option<Instant>,
    idle: Duration,
) -> (Vec<f64>, Option<Instant>) {
    let want = range.len();
    let mut seen = vec![false; want];
    let mut n = 0;
    let mut lat = Vec::with_capacity(want);
    let mut last = None;
    while n < want {
        match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some((k, at))) if range.contains(&k) => {
                let i = k - range.start;
                if seen[i] {
                    continue;
                }
                seen[i] = true;
                n += 1;
                if let Some(s) = start_of(i) {
                    lat.push(at.saturating_duration_since(s).as_secs_f64() * 1e3);
                }
                last = Some(last.map_or(at, |l: Instant| l.max(at)));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (lat, last)
}

/// Closed loop: `inflight` workers send messages `range` as fast as the
/// system accepts them.
pub(crate) async fn saturate<F, Fut>(
    range: std::ops::Range<usize>,
    inflight: usize,
    send: Arc<F>,
    rx: &mut Arrivals,
) -> Result<Outcome>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(range.start));
    let ticks0 = machine_ticks();
    let t0 = Instant::now();
    // Send start of each message, in ns after t0 plus one (0: not sent).
    let starts: Arc<Vec<AtomicU64>> = Arc::new((0..range.len()).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..inflight {
        let (next, send, starts, errors, r) =
            (next.clone(), send.clone(), starts.clone(), errors.clone(), range.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= r.end {
                    break;
                }
                starts[k - r.start].store(t0.elapsed().as_nanos() as u64 + 1, Ordering::Release);
                if let Err(e) = send(k).await
                    && errors.fetch_add(1, Ordering::Relaxed) == 0
                {
                    eprintln!("  send {k} failed: {e:#}");
                }
            }
        }));
    }
    let st = starts.clone();
    let start_of = move |i: usize| match st[i].load(Ordering::Acquire) {
        0 => None,
        ns => Some(t0 + Duration::from_nanos(ns - 1)),
    };
    let (lat, last) = collect(rx, range.clone(), start_of, Duration::from_secs(30)).await;
    for w in workers {
        w.await?;
    }
    let machine_busy = busy_between(ticks0, machine_ticks());
    let errors = errors.load(Ordering::Relaxed);
    let received = lat.len();
    let secs = last.map_or(0.0, |l| l.duration_since(t0).as_secs_f64());
    Ok(Outcome { sent: range.len() - errors, received, errors, secs, lat: percentiles(lat), machine_busy })
}

/// Open loop: message `range.start + i` is sent at `t0 + i / rate`, each on
/// its own task, whatever the previous ones are doing.
pub(crate) async fn offered<F, Fut>(
    range: std::ops::Range<usize>,
    rate: u32,
    send: Arc<F>,
    rx: &mut Arrivals,
) -> Result<Outcome>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let t0 = Instant::now() + Duration::from_millis(20);
    let scheduled: Vec<Option<Instant>> =
        (0..range.len()).map(|i| Some(t0 + period.mul_f64(i as f64))).collect();
    let sched = scheduled.clone();
    let start = range.start;
    let ticks0 = machine_ticks();
    let driver = tokio::spawn(async move {
        let mut tasks = Vec::with_capacity(sched.len());
        for (i, at) in sched.iter().enumerate() {
            tokio::time::sleep_until((*at).expect("scheduled").into()).await;
            let send = send.clone();
            tasks.push(tokio::spawn(async move { send(start + i).await }));
        }
        let mut errors = 0;
        for t in tasks {
            if !matches!(t.await, Ok(Ok(()))) {
                errors += 1;
            }
        }
        errors
    });
    let (lat, last) = collect(rx, range.clone(), |i| scheduled[i], Duration::from_secs(30)).await;
    let machine_busy = busy_between(ticks0, machine_ticks());
    let errors = driver.await?;
    let received = lat.len();
    let secs = last.map_or(0.0, |l| l.duration_since(t0).as_secs_f64());
    Ok(Outcome { sent: range.len() - errors, received, errors, secs, lat: percentiles(lat), machine_busy })
}

/// The latency sweep after the offered-load phase: each of `rates` for
/// `secs` seconds, open loop, messages numbered from `first` (see
/// [`sweep_len`]). Returns (rate, outcome) per rate.
pub(crate) async fn sweep<F, Fut>(
    rates: &[u32],
    secs: u32,
    first: usize,
    send: Arc<F>,
    rx: &mut Arrivals,
) -> Result<Vec<(u32, Outcome)>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut out = Vec::with_capacity(rates.len());
    let mut next = first;
    for &rate in rates {
        let n = (rate * secs) as usize;
        eprintln!("sweep: {rate} msg/s for {secs} s ...");
        let o = offered(next..next + n, rate, send.clone(), rx).await?;
        eprintln!("sweep: {rate} msg/s {o:?}");
        out.push((rate, o));
        next += n;
    }
    Ok(out)
}

/// Messages the sweep sends.
pub(crate) fn sweep_len(rates: &[u32], secs: u32) -> usize {
    rates.iter().map(|&r| (r * secs) as usize).sum()
}
