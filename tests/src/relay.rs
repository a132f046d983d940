//! One relay of a test federation, run either in-process (`focal_relay::serve`
//! on a tokio task, with a shutdown trigger) or as a child process
//! (`harness-relay run --config <file>`, ready when it logs
//! `focal-relay listening grpc=<addr> ...`). The gRPC port is picked by the
//! OS at the first start (port 0; in-process the harness binds it, a child
//! reports it in its ready line) and written back into the config, so a
//! restarted relay listens where clients already look for it.
//!
//! A child relay can also be frozen with [`RelayHandle::pause`] (SIGSTOP)
//! and thawed with [`RelayHandle::resume`] (SIGCONT), and its CPU time read
//! from `/proc` ([`RelayHandle::cpu_time`]).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use focal_proto::NetworkId;
use focal_relay::config::RelayConfig;
use rustix::process::{Pid, Signal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The line a relay logs once its listeners are bound.
pub const READY_LINE: &str = "focal-relay listening";
/// How long a relay may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped in-process relay may hold its database's file lock.
const STORE_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines kept per relay for failure reports.
const LOG_KEEP: usize = 400;

/// How relays are run.
#[derive(Clone, Debug)]
pub enum RelayMode {
    /// `focal_relay::serve` on a task of the test's runtime.
    InProcess,
    /// A child process of this binary.
    Process {
        /// Path of the relay binary (`harness-relay`).
        bin: PathBuf,
    },
}

enum Running {
    Stopped,
    Task { shutdown: oneshot::Sender<()>, join: JoinHandle<Result<(), focal_relay::RelayError>> },
    Child { child: Child, paused: bool },
}

/// A relay of the test federation.
pub struct RelayHandle {
    /// Network served.
    pub network: NetworkId,
    /// Relay name (its certificate's `<name>`).
    pub name: String,
    /// Its configuration (ports already chosen).
    pub config: RelayConfig,
    /// The TOML file written from `config`.
    pub config_path: PathBuf,
    mode: RelayMode,
    running: Running,
    log: Arc<Mutex<VecDeque<String>>>,
    starts: u32,
}

/// An unused loopback UDP address (bound and released at once; peers must
/// know each other's federation address before they start).
pub fn free_udp_addr() -> Result<SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// Reads a `Vm*:` line of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of process `pid` (fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks).
pub fn proc_cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&format!("/proc/{pid}/stat"), 11)
}

/// User plus system CPU time of this process's children that have ended
/// and been waited for (fields 16 and 17 of `/proc/self/stat`).
pub fn waited_children_cpu_time() -> Option<Duration> {
    stat_cpu_time("/proc/self/stat", 13)
}

/// Two tick counts of a `stat` file, `skip` fields after the state's.
fn stat_cpu_time(path: &str, skip: usize) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing parenthesis (field 3 is the state).
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(skip);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_millis((utime + stime) * 1000 / ticks))
}

fn signal(child: &Child, sig: Signal) -> Result<()> {
    let pid = Pid::from_raw(i32::try_from(child.id())?).context("child pid 0")?;
    rustix::process::kill_process(pid, sig)?;
    Ok(())
}

impl RelayHandle {
    /// A relay (not started) that will run with `config`, written to `config_path`.
    pub fn new(config: RelayConfig, config_path: PathBuf, mode: RelayMode) -> Result<Self> {
        let text = toml::to_string(&config).context("serialising the relay config")?;
        std::fs::write(&config_path, text).with_context(|| format!("writing {}", config_path.display()))?;
        Ok(RelayHandle {
            network: config.network.clone(),
            name: config.name.clone(),
            config,
            config_path,
            mode,
            running: Running::Stopped,
            log: Arc::default(),
            starts: 0,
        })
    }

    /// Rewrites the config file after `config` was changed (takes effect at
    /// the next start).
    pub fn save_config(&self) -> Result<()> {
        std::fs::write(&self.config_path, toml::to_string(&self.config)?)?;
        Ok(())
    }

    /// The gRPC address clients dial.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.config.listen.grpc
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The child's pid when running as a process.
    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::Child { child, .. } => Some(child.id()),
            _ => None,
        }
    }

    /// True while started.
    pub fn is_running(&self) -> bool {
        !matches!(self.running, Running::Stopped)
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Peak resident memory of the child process so far (KiB).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM")
    }

    /// Current resident memory of the child process (KiB).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS")
    }

    /// The last log lines of a child relay (for failure messages).
    pub fn recent_log(&self) -> String {
        self.log.lock().expect("log").iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Starts the relay and returns once it accepts connections.
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("relay {} is already running", self.name);
        }
        match self.mode.clone() {
            RelayMode::InProcess => {
                let grpc = tokio::net::TcpListener::bind(self.config.listen.grpc)
                    .await
                    .with_context(|| format!("relay {}: binding {}", self.name, self.config.listen.grpc))?;
                let federation = match self.config.listen.federation {
                    Some(a) => Some(
                        std::net::UdpSocket::bind(a)
                            .with_context(|| format!("relay {}: binding {a}", self.name))?,
                    ),
                    None => None,
                };
                self.config.listen.grpc = grpc.local_addr()?;
                if let Some(f) = &federation {
                    self.config.listen.federation = Some(f.local_addr()?);
                }
                self.save_config()?;
                let listeners = focal_relay::Listeners { grpc, federation, metrics: None };
                let (tx, rx) = oneshot::channel::<()>();
                let config = self.config.clone();
                let span = tracing::info_span!("relay", name = %self.name);
                let join = tokio::spawn(tracing::Instrument::instrument(
                    focal_relay::serve(config, listeners, async move {
                        let _ = rx.await;
                    }),
                    span,
                ));
                self.running = Running::Task { shutdown: tx, join };
            }
            RelayMode::Process { bin } => {
                let child = self.spawn_child(&bin).await?;
                self.running = Running::Child { child, paused: false };
            }
        }
        self.starts += 1;
        Ok(())
    }

    async fn spawn_child(&mut self, bin: &Path) -> Result<Child> {
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", std::env::var("FOCAL_TEST_RELAY_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let echo = std::env::var_os("FOCAL_TEST_ECHO_RELAY").is_some();
        let tag = format!("[{} #{}]", self.name, self.starts + 1);
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = self.log.clone();
            let tx = tx.clone();
            let tag = tag.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line.contains(READY_LINE) {
                        let _ = tx.send(line.clone());
                    }
                    if echo {
                        eprintln!("{tag} {line}");
                    }
                    let mut log = log.lock().expect("log");
                    if log.len() == LOG_KEEP {
                        log.pop_front();
                    }
                    log.push_back(format!("{tag} {line}"));
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    // "focal-relay listening grpc=127.0.0.1:PORT federation=..."
                    let grpc = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("grpc="))
                        .map(|a| a.trim_matches(|c: char| c == '"' || c == ','))
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    if self.config.listen.grpc.port() == 0 {
                        let Some(addr) = grpc else {
                            let _ = child.kill();
                            bail!("relay {}: cannot find grpc=<addr> in its ready line {line:?}", self.name);
                        };
                        // Keep the port for restarts.
                        self.config.listen.grpc = addr;
                        self.save_config()?;
                    }
                    return Ok(child);
                }
                Err(mpsc::TryRecvError::Disconnected) | Err(mpsc::TryRecvError::Empty)
                    if child.try_wait()?.is_some() =>
                {
                    let status = child.wait()?;
                    // Give the pipe threads a moment to store the last lines.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    bail!(
                        "relay {} exited before listening ({status}); log:\n{}",
                        self.name,
                        self.recent_log()
                    );
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "relay {} did not log {READY_LINE:?} within {START_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.recent_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Graceful stop: the shutdown trigger (in-process) or SIGTERM (child),
    /// then waits until it has finished.
    pub async fn stop(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Stopped => Ok(()),
            Running::Task { shutdown, join } => {
                let _ = shutdown.send(());
                join.await
                    .context("relay task panicked")?
                    .map_err(|e| anyhow::anyhow!("relay {}: {e}", self.name))?;
                self.wait_for_store_release().await
            }
            Running::Child { mut child, paused } => {
                if paused {
                    // A stopped process keeps SIGTERM pending until SIGCONT.
                    signal(&child, Signal::CONT)?;
                }
                let pid = child.id().to_string();
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
                let waited = tokio::task::spawn_blocking(move || child.wait()).await??;
                if !waited.success() {
                    bail!("relay {} exited with {waited} on SIGTERM; log:\n{}", self.name, self.recent_log());
                }
                Ok(())
            }
        }
    }

    /// Waits until the stopped in-process relay's sled database is no
    /// longer locked, so the caller may open the data dir as it could after
    /// a process exits: `serve` returns once the final flush is done, and
    /// sled's own I/O threads let go of the file lock a moment later.
    async fn wait_for_store_release(&self) -> Result<()> {
        let db_file = self.config.data_dir.join("sled").join("db");
        let deadline = Instant::now() + STORE_RELEASE_TIMEOUT;
        loop {
            let file = match std::fs::File::open(&db_file) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("opening {}", db_file.display())),
            };
            match file.try_lock() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => bail!("relay {} stopped but {} stays locked: {e}", self.name, db_file.display()),
            }
        }
    }

    /// Hard stop: SIGKILL for a child (a crash: nothing is flushed); for an
    /// in-process relay the task is aborted (its sled handle is dropped, so
    /// this is NOT a crash test; use processes for durability).
    pub async fn kill(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Stopped => Ok(()),
            Running::Task { shutdown, join } => {
                join.abort();
                let _ = join.await;
                drop(shutdown);
                Ok(())
            }
            Running::Child { mut child, .. } => {
                // SIGKILL also ends a stopped (paused) process.
                child.kill().context("SIGKILL")?;
                tokio::task::spawn_blocking(move || child.wait()).await??;
                Ok(())
            }
        }
    }

    /// Freezes a child relay (SIGSTOP): its sockets stay open but nothing
    /// is read, answered or written until [`RelayHandle::resume`].
    pub fn pause(&mut self) -> Result<()> {
        self.set_paused(true)
    }

    /// Thaws a relay frozen by [`RelayHandle::pause`] (SIGCONT).
    pub fn resume(&mut self) -> Result<()> {
        self.set_paused(false)
    }

    fn set_paused(&mut self, pause: bool) -> Result<()> {
        let (sig, name) = if pause { (Signal::STOP, "SIGSTOP") } else { (Signal::CONT, "SIGCONT") };
        match &mut self.running {
            Running::Child { child, paused } => {
                signal(child, sig).with_context(|| format!("{name} to relay {}", self.name))?;
                *paused = pause;
                Ok(())
            }
            _ => bail!("relay {}: {name} needs a running child-process relay", self.name),
        }
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        matches!(self.running, Running::Child { paused: true, .. })
    }

    /// User plus system CPU time the child process has used so far (all
    /// its threads), from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        proc_cpu_time(self.pid()?)
    }

    /// Kill (SIGKILL) then start again on the same ports and data.
    pub async fn crash_and_restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.start().await
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Child { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::Task { shutdown, join } => {
                let _ = shutdown.send(());
                join.abort();
            }
            Running::Stopped => {}
        }
    }
}
