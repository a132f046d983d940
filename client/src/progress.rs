//! Transfer progress reporting. The library reports through the [`Progress`]
//! trait and never draws anything itself; the CLI passes [`Bars`], which
//! draws indicatif bars on stderr for transfers over [`BAR_THRESHOLD`] when
//! stderr is a terminal and `--json` is off. Tests can pass their own
//! implementation to act at a given point of a transfer.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transfers smaller than this get no bar.
pub const BAR_THRESHOLD: u64 = 4 * 1024 * 1024;

/// Receives progress of long operations (sealing, upload, download).
pub trait Progress: Send + Sync {
    /// A phase starts (`"sealing"`, `"sending"`, `"fetching"`) with `total`
    /// bytes, or `"storing"` (0 bytes: the upload is out, the relay is
    /// checking and storing it until it answers).
    fn start(&self, phase: &'static str, total: u64);
    /// `bytes` more were done; `done` is the running total of the phase.
    fn advance(&self, bytes: u64, done: u64);
    /// The phase ended (successfully or not).
    fn finish(&self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &'static str, _: u64) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}

/// indicatif bars on stderr.
pub struct Bars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars if stderr is a terminal and `quiet` (e.g. `--json`) is off.
    pub fn new(quiet: bool) -> Self {
        Bars { enabled: !quiet && std::io::stderr().is_terminal(), bar: Mutex::new(None) }
    }
}

impl Progress for Bars {
    fn start(&self, phase: &'static str, total: u64) {
        if self.enabled && phase == "storing" {
            // After a long upload (a bar is up): a spinner until ACCEPTED.
            let mut slot = self.bar.lock().expect("bar lock");
            if let Some(old) = slot.take() {
                old.finish_and_clear();
                let spinner = ProgressBar::new_spinner();
                spinner.set_draw_target(ProgressDrawTarget::stderr());
                spinner.set_message("the relay is checking and storing it");
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                *slot = Some(spinner);
            }
            return;
        }
        if !self.enabled || total < BAR_THRESHOLD {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(phase);
        if let Some(old) = self.bar.lock().expect("bar lock").replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64, _: u64) {
        if let Some(bar) = self.bar.lock().expect("bar lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("bar lock").take() {
            bar.finish_and_clear();
        }
    }
}
