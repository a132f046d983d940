//! `focal audit …`: the auditor's commands, wired to [`crate::audit`].
//!
//! `fetch` connects to the relay with the profile's certificate (an
//! `auditor` of that network); `verify`, `trace`, `export` and `stats` work
//! offline on a log directory and need no profile.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::term::say;
use crate::audit::{self, ExportFormat};
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::util::fmt_time_ms;

/// `focal audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Download new log entries and checkpoints from the relay into DIR, verifying them.
    Fetch {
        /// Local log directory (created if missing; fetches are incremental).
        #[arg(long)]
        dir: PathBuf,
        /// The log's verifier key (signed-note key, from the network's secretariat).
        #[arg(long, env = "FOCAL_AUDIT_KEY")]
        key: String,
    },
    /// Verify a log directory offline: Merkle root, checkpoint signatures, consistency with the last accepted checkpoint.
    Verify {
        /// Local log directory.
        #[arg(long)]
        dir: PathBuf,
        /// The log's verifier key.
        #[arg(long, env = "FOCAL_AUDIT_KEY")]
        key: String,
        /// A witness verifier key whose cosignature counts (repeatable).
        #[arg(long = "witness", value_name = "VKEY")]
        witnesses: Vec<String>,
        /// Valid witness cosignatures required on the latest checkpoint.
        #[arg(long, default_value_t = 0)]
        require: usize,
    },
    /// Show a message's path through one or more networks' logs.
    Trace {
        /// Message id (32 hex characters).
        msg_id: String,
        /// Log directories to search (repeatable, one per network).
        #[arg(long = "dir", required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Write every record of a log as JSON lines or CSV.
    Export {
        /// Local log directory.
        #[arg(long)]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Summarise a log: records per kind, peers, refusals, per day.
    Stats {
        /// Local log directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

impl AuditCommand {
    /// True if the command talks to the relay (and so needs a profile).
    pub fn needs_profile(&self) -> bool {
        matches!(self, AuditCommand::Fetch { .. })
    }
}

/// The one-line warning about entries a fetch left beyond the accepted log.
fn left_over_warning(bytes: u64) -> String {
    format!(
        "warning: {bytes} bytes of entries.bin beyond the accepted log were not verified and are ignored (left by an interrupted or failed fetch); run `focal audit fetch` again"
    )
}

/// Warns on stderr (stdout holds the data) if `dir` holds unaccepted entries.
fn warn_left_over(dir: &std::path::Path) -> Result<()> {
    let n = audit::left_over_bytes(dir)?;
    if n > 0 {
        eprintln!("{}: {}", dir.display(), left_over_warning(n));
    }
    Ok(())
}

/// Runs an audit command; `client` is connected for `fetch` only.
pub(crate) async fn run(cmd: &AuditCommand, client: Option<Client>, json: bool) -> Result<()> {
    match cmd {
        AuditCommand::Fetch { dir, key } => {
            let client = client.expect("fetch connects first");
            let mut audit_client = client.audit();
            let r = audit::fetch(&mut audit_client, dir, key).await.map_err(|e| match e {
                // One status format for every relay refusal (`PERMISSION_DENIED: ...`).
                audit::AuditError::Rpc(status) => ClientError::rpc("audit fetch", *status),
                e => ClientError::Audit(e),
            })?;
            if json {
                println!(
                    "{}",
                    json!({"type": "audit_fetch", "old_size": r.old_size, "new_size": r.new_size,
                        "downloaded": r.downloaded, "cosignatures": r.cosignatures})
                );
            } else {
                println!(
                    "fetched {} entries into {}: log size {} -> {} ({} cosignatures on the checkpoint)",
                    r.downloaded,
                    dir.display(),
                    r.old_size,
                    r.new_size,
                    r.cosignatures
                );
            }
        }
        AuditCommand::Verify { dir, key, witnesses, require } => {
            let named = witnesses
                .iter()
                .map(|w| {
                    let k = focal_proto::audit::WitnessKey::parse(w)
                        .map_err(|e| ClientError::invalid("--witness", format!("{w:?}: {e}")))?;
                    Ok((k.witness_name().to_owned(), w.clone()))
                })
                .collect::<Result<Vec<_>>>()?;
            let r = audit::verify(dir, key, &named, *require)?;
            let cosigners: Vec<&str> = r.cosignatures.iter().map(|c| c.witness.as_str()).collect();
            if json {
                println!(
                    "{}",
                    json!({"type": "audit_verified", "origin": r.origin, "size": r.size, "root": r.root,
                        "checkpoints": r.checkpoints, "previous_size": r.previous_size,
                        "cosigned_by": cosigners, "left_over_bytes": r.left_over_bytes})
                );
            } else {
                say!("log {} verified: {} entries, root {}", r.origin, r.size, r.root);
                println!("  {} checkpoint signatures checked", r.checkpoints);
                match r.previous_size {
                    Some(p) => println!("  consistent with the checkpoint accepted before (size {p})"),
                    None => println!("  first verification of this directory"),
                }
                if !cosigners.is_empty() {
                    say!("  cosigned by {}", cosigners.join(", "));
                }
                if r.left_over_bytes > 0 {
                    println!("{}", left_over_warning(r.left_over_bytes));
                }
            }
        }
        AuditCommand::Trace { msg_id, dirs } => {
            let id = audit::parse_msg_id(msg_id)?;
            let events = audit::trace(dirs, &id)?;
            for d in dirs {
                warn_left_over(d)?;
            }
            if events.is_empty() && !json {
                println!("message {msg_id} does not appear in these logs");
            }
            for e in &events {
                if json {
                    let r = &e.record;
                    println!(
                        "{}",
                        json!({"type": "audit_event", "log": e.log, "index": e.index,
                            "kind": focal_proto::audit::kind_name(r.kind), "time_ms": r.time_ms,
                            "time": fmt_time_ms(r.time_ms), "hop": r.hop, "peer": r.peer,
                            "sender": r.sender, "recipients": r.recipients, "detail": r.detail})
                    );
                } else {
                    say!("{e}");
                }
            }
        }
        AuditCommand::Export { dir, format, out } => {
            let format = match format {
                Format::Jsonl => ExportFormat::Jsonl,
                Format::Csv => ExportFormat::Csv,
            };
            let n = match out {
                Some(path) => {
                    let f =
                        std::fs::File::create(path).map_err(|e| ClientError::io("cannot create", path, e))?;
                    let mut w = std::io::BufWriter::new(f);
                    let n = audit::export(dir, format, &mut w)?;
                    w.flush().map_err(|e| ClientError::io("cannot write", path, e))?;
                    n
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    let n = audit::export(dir, format, &mut w)?;
                    w.flush().map_err(|e| ClientError::io("cannot write", "stdout", e))?;
                    n
                }
            };
            if out.is_some() {
                eprintln!("exported {n} records");
            }
            warn_left_over(dir)?;
        }
        AuditCommand::Stats { dir } => {
            let s = audit::stats(dir)?;
            warn_left_over(dir)?;
            if json {
                let mut v = serde_json::to_value(&s).expect("stats serialise");
                v["type"] = json!("audit_stats");
                println!("{v}");
            } else {
                println!("{} records", s.records);
                for (k, n) in &s.by_kind {
                    say!("  {k:<22} {n}");
                }
                if !s.refusals_by_reason.is_empty() {
                    println!("refusals by reason:");
                    for (k, n) in &s.refusals_by_reason {
                        say!("  {k:<22} {n}");
                    }
                }
                if !s.messages_per_peer.is_empty() {
                    println!("messages per peer:");
                    for (k, n) in &s.messages_per_peer {
                        say!("  {k:<40} {n}");
                    }
                }
                println!("per day (records / messages / refusals):");
                for (day, d) in &s.per_day {
                    println!("  {day}  {} / {} / {}", d.records, d.messages, d.refusals);
                }
            }
        }
    }
    Ok(())
}
