//! The single writer: every state change of the relay goes through one
//! thread fed by a bounded channel. It takes what is waiting (up to
//! [`MAX_BATCH`] operations), applies them to one `sled::Batch` together
//! with their audit records, fsyncs once (sled's synchronous flush, on this
//! thread: never `flush_async`, see [`super::fsync`]), and only then answers
//! every waiter (group commit); only operations whose loss in a crash is
//! harmless (`Op::answered_before_fsync`: an acked outbox item's removal)
//! are answered as soon as the batch is applied. An operation refused by its checks stages
//! nothing (see `ops`). If sled refuses the batch or the fsync, every
//! operation in it and every one queued after it fails, the writer stops and
//! [`super::Store::failed`] resolves: the relay shuts down rather than
//! acknowledge anything it may not have persisted.

use std::collections::HashMap;
use std::sync::Arc;

use focal_proto::{Address, NetworkId, pb};
use tokio::sync::{mpsc, oneshot};

use super::audit_seam::AuditSeam;
use super::ops::{Ctx, Fatal, apply};
use super::payload::{PayloadDir, PayloadFile, ReceivedPayload};
use crate::RelayError;
use crate::core::RelayCore;
use crate::core::dedup::SeenKey;
use crate::core::outbox::Removed;
use crate::core::relay::Expired;
use crate::hub::{Hub, HubEvent};

/// Most operations applied in one batch.
pub const MAX_BATCH: usize = 512;

/// Signs a receipt body as this relay (EXPIRED receipts).
pub type ReceiptSigner = Arc<dyn Fn(&pb::ReceiptBody) -> pb::Receipt + Send + Sync>;

/// Store a new envelope for local recipients.
#[derive(Debug)]
pub struct AcceptRequest {
    /// The header as stored (this relay's hop appended).
    pub header: pb::EnvelopeHeader,
    /// Context sender.
    pub sender: Address,
    /// Context msg id.
    pub msg_id: [u8; 16],
    /// Every recipient of the context (for the audit record).
    pub all_recipients: Vec<Address>,
    /// This relay's recipients: the mailboxes it goes into.
    pub local_recipients: Vec<Address>,
    /// Context expires_at_ms.
    pub expires_at_ms: i64,
    /// Context handling code and priority (audit).
    pub handling: pb::HandlingCode,
    /// Priority.
    pub priority: pb::Priority,
    /// Who handed it over (identity URI), for the audit record.
    pub from: String,
    /// The verified payload.
    pub payload: ReceivedPayload,
    /// Relay clock.
    pub now_ms: i64,
}

/// The ACCEPTED answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Leaf index of the ACCEPTED audit record.
    pub leaf_index: u64,
    /// Relay clock at acceptance.
    pub accepted_at_ms: i64,
}

/// Remove a message from its recipient's mailbox and store the recipient's
/// DELIVERED receipt for the sender.
#[derive(Debug)]
pub struct AckRequest {
    /// Mailbox owner (the caller).
    pub recipient: Address,
    /// Original sender.
    pub sender: Address,
    /// Msg id.
    pub msg_id: [u8; 16],
    /// The DELIVERED receipt, already verified.
    pub receipt: pb::Receipt,
    /// Relay clock.
    pub now_ms: i64,
}

/// What one expiry pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Messages that expired with recipients still waiting (each of those got an EXPIRED receipt).
    pub expired: usize,
    /// Expiry index entries handled (also forgotten msg ids); equal to the
    /// pass's limit when more may be due.
    pub scanned: usize,
}

/// One operation for the writer.
#[derive(Debug)]
pub(crate) enum Op {
    Accept(Box<AcceptRequest>),
    Ack(Box<AckRequest>),
    Publish {
        address: Address,
        entry: pb::DirectoryEntry,
        key_serial: u32,
    },
    ExpireDue {
        now_ms: i64,
        limit: usize,
    },
    Audit(Box<pb::AuditRecord>),
    Purge(Box<super::admin::PurgeRequest>),
    Retention(Box<super::retention::RetentionRequest>),
    PurgeOutbox(Box<super::admin_outbox::OutboxPurgeRequest>),
    Route(Box<super::fed::RouteRequest>),
    Receipt(Box<super::fed::ReceiptRequest>),
    OutboxDone {
        peer: String,
        removed: Removed,
        status: pb::TransferStatus,
        now_ms: i64,
    },
    OutboxExpired {
        expired: Expired,
        now_ms: i64,
    },
    ForgetSeen(Vec<SeenKey>),
    /// Release the held escalation copies due (see `casework`).
    EscalateDue {
        now_ms: i64,
    },
    /// Changes nothing; answered once the batches before it are durable.
    Barrier,
}

impl Op {
    /// Whether the caller may be answered once the batch is applied, before
    /// its fsync: operations whose loss in a crash is harmless because the
    /// work they record is repeated after a restart. An acked outbox item
    /// that comes back is sent again and the peer answers DUPLICATE; a
    /// forgotten seen entry that comes back is forgotten again. Everything
    /// that acknowledges a message to anyone waits for the fsync.
    fn answered_before_fsync(&self) -> bool {
        matches!(self, Op::OutboxDone { .. } | Op::ForgetSeen(_))
    }
}

#[derive(Debug)]
pub(crate) enum Reply {
    Accepted(Accepted),
    Done,
    Expired(ExpiryReport),
    Leaf(u64),
    Routed(super::fed::RouteOutcome),
    Status(pb::TransferStatus),
    Retention(super::retention::RetentionReport),
    OutboxPurged(super::admin_outbox::OutboxPurged),
}

pub(crate) type ReplyTx = oneshot::Sender<Result<Reply, RelayError>>;

pub(crate) enum Msg {
    Job(Op, Option<ReplyTx>),
    Close,
}

/// What the writer owns.
pub(crate) struct Writer {
    pub(crate) tree: sled::Tree,
    pub(crate) db: sled::Db,
    /// What sled's flush leaves unsynced (see `durable`).
    pub(crate) files: super::durable::SledFiles,
    pub(crate) audit: AuditSeam,
    pub(crate) hub: Arc<Hub>,
    pub(crate) payloads: Arc<PayloadDir>,
    pub(crate) network: NetworkId,
    pub(crate) relay_uri: String,
    pub(crate) max_mailbox_messages: u64,
    pub(crate) signer: ReceiptSigner,
    pub(crate) size: Arc<std::sync::atomic::AtomicU64>,
    /// Set once the store is broken (a failed batch or fsync).
    pub(crate) fatal: tokio::sync::watch::Sender<Option<String>>,
    /// Counters (fsync latency; audit records are counted by the seam).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The relay core, locked while a batch is staged and applied.
    pub(crate) core: Option<Arc<std::sync::Mutex<RelayCore>>>,
    /// Bumped after a durable batch that queued outbox items.
    pub(crate) outbox_wake: Arc<tokio::sync::watch::Sender<u64>>,
    /// When sled's size on disk was last read (see `refresh_size`).
    pub(crate) size_read_at: Option<std::time::Instant>,
}

/// Longest time the space check may use an old reading of sled's size.
const SIZE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// A waiter, its operation's result, and whether it may be answered before
/// the fsync ([`Op::answered_before_fsync`]).
type Answer = (Option<ReplyTx>, Result<Reply, RelayError>, bool);

/// What staging a group of operations gave.
enum Staging {
    /// Nothing to write.
    Clean,
    /// Applied to the tree; flush next.
    Applied,
    /// Not applied; `true` if the store (or the core) is now inconsistent.
    Failed(String, bool),
}

/// Effects to carry out once the batch is durable.
#[derive(Default)]
pub(super) struct After {
    pub(super) events: Vec<(String, HubEvent)>,
    pub(super) keep: Vec<PayloadFile>,
    pub(super) delete: Vec<(String, u64)>,
    /// The core's outbox marks when the batch was staged: its queued items
    /// may be sent once it is durable.
    pub(super) durable_marks: Vec<(String, u64)>,
}

/// A batch under construction, with the writes staged so far visible to
/// the reads of later operations in the same batch.
pub(super) struct Staged<'a> {
    pub(super) tree: &'a sled::Tree,
    pub(super) batch: sled::Batch,
    overlay: HashMap<Vec<u8>, Option<sled::IVec>>,
    /// Something was staged (a key or an audit leaf).
    dirty: bool,
    /// Outbox items were queued: wake the peer senders after the flush.
    pub(super) wake: bool,
}

impl Staged<'_> {
    /// The value of `key` as this batch leaves it (staged, else stored).
    /// sled's `IVec` is shared, not copied.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, RelayError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        self.tree.get(key).map_err(RelayError::sled("reading"))
    }
    pub(super) fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.dirty = true;
        // One copy of the value, shared by the batch and the overlay.
        let value = sled::IVec::from(value);
        self.batch.insert(key.clone(), value.clone());
        self.overlay.insert(key, Some(value));
    }
    pub(super) fn remove(&mut self, key: Vec<u8>) {
        self.dirty = true;
        self.batch.remove(key.clone());
        self.overlay.insert(key, None);
    }
    pub(super) fn removed(&self, key: &[u8]) -> bool {
        matches!(self.overlay.get(key), Some(None))
    }
    /// Stages an audit record (validated beforehand by the operation).
    pub(super) fn audit(&mut self, audit: &mut AuditSeam, record: &pb::AuditRecord) -> Result<u64, Fatal> {
        self.dirty = true;
        Ok(audit.stage(record, &mut self.batch)?)
    }
}

impl Writer {
    /// The writer's loop. It runs on a thread of its own (see
    /// `Store::open`): it blocks on the queue and on the fsync, so a batch
    /// costs no task hand-off to tokio's blocking pool and back.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut closing = false;
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = Vec::with_capacity(16);
            let mut push = |m: Msg, jobs: &mut Vec<(Op, Option<ReplyTx>)>| match m {
                Msg::Job(op, tx) => jobs.push((op, tx)),
                Msg::Close => closing = true,
            };
            push(first, &mut jobs);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => push(m, &mut jobs),
                    Err(_) => break,
                }
            }
            if closing {
                // Refuse new work; what is already queued is still applied.
                rx.close();
            }
            if jobs.is_empty() {
                continue;
            }
            if let Err(broken) = self.commit(jobs) {
                // The disk refused a write or an fsync: nothing more is
                // acknowledged. Queued operations fail; the relay stops.
                tracing::error!(error = %broken, "store failed; refusing all further writes");
                let _ = self.fatal.send(Some(broken.clone()));
                rx.close();
                while let Some(m) = rx.blocking_recv() {
                    if let Msg::Job(_, Some(tx)) = m {
                        let _ = tx.send(Err(RelayError::Commit(broken.clone())));
                    }
                }
                return;
            }
        }
        if let Err(e) = self.files.flush(&self.db) {
            tracing::error!(error = %e, "final store flush failed");
        }
        tracing::debug!("store writer stopped");
    }

    /// Stages `jobs` into one batch and applies it to the tree, holding the
    /// core lock throughout (never across an await).
    fn stage(&mut self, jobs: Vec<(Op, Option<ReplyTx>)>) -> (Vec<Answer>, After, Staging, bool) {
        let ctx = self.ctx();
        let core = self.core.clone();
        let mut guard = core.as_ref().map(|c| c.lock().unwrap_or_else(|e| e.into_inner()));
        let mut st = Staged {
            tree: &self.tree,
            batch: sled::Batch::default(),
            overlay: HashMap::new(),
            dirty: false,
            wake: false,
        };
        let mut after = After::default();
        let mut results = Vec::with_capacity(jobs.len());
        let mut failed: Option<String> = None;
        for (op, tx) in jobs {
            let early = op.answered_before_fsync();
            let r = if failed.is_some() {
                Err(RelayError::Commit("an earlier operation of the batch failed".into()))
            } else {
                match apply(&mut st, &mut self.audit, &ctx, guard.as_deref_mut(), op, &mut after) {
                    Err(Fatal(e)) => {
                        failed = Some(e.to_string());
                        Err(RelayError::Commit(e.to_string()))
                    }
                    Ok(r) => r,
                }
            };
            results.push((tx, r, early));
        }
        let wake = st.wake;
        if wake && let Some(core) = guard.as_deref() {
            after.durable_marks = core.durable_marks();
        }
        let staging = if let Some(e) = failed {
            // Nothing reached the tree. Without a core the store is fine;
            // with one, the core may hold decisions the disk does not.
            self.audit.abandon();
            Staging::Failed(e, guard.is_some())
        } else if !st.dirty {
            Staging::Clean
        } else if let Err(e) = {
            self.audit.seal(&mut st.batch);
            self.tree.apply_batch(st.batch)
        } {
            self.audit.abandon();
            Staging::Failed(format!("applying the batch: {e}"), true)
        } else {
            self.audit.committed();
            Staging::Applied
        };
        drop(guard);
        (results, after, staging, wake)
    }

    /// The fsync: sled's flush, then what it leaves out (`durable`), timed
    /// for the fsync latency histogram.
    fn timed_flush(&self) -> sled::Result<usize> {
        let started = std::time::Instant::now();
        // Synchronous on purpose: sled's `flush_async` can deadlock (see `fsync`).
        let flushed = self.files.flush(&self.db);
        self.metrics.observe_fsync(started.elapsed());
        flushed
    }

    /// Applies one group of operations. Err means the store is broken (a
    /// batch or an fsync failed) and the writer must stop.
    fn commit(&mut self, jobs: Vec<(Op, Option<ReplyTx>)>) -> Result<(), String> {
        let (mut results, after, staging, wake) = self.stage(jobs);
        let now = crate::rpc::now_ms();
        if let Staging::Applied = staging {
            // Applied: answer now whoever need not wait for the disk.
            for (tx, r, early) in &mut results {
                if *early && let Some(tx) = tx.take() {
                    let _ = tx.send(std::mem::replace(r, Ok(Reply::Done)));
                }
            }
        }
        let applied = matches!(staging, Staging::Applied);
        let outcome = match staging {
            Staging::Failed(e, broken) => Err((e, broken)),
            Staging::Clean => Ok(()),
            Staging::Applied => match self.timed_flush() {
                Ok(_) => Ok(()),
                Err(e) => {
                    Err((format!("fsync failed (the last batch may or may not be durable): {e}"), true))
                }
            },
        };
        if outcome.is_ok()
            && !after.durable_marks.is_empty()
            && let Some(core) = &self.core
        {
            core.lock().unwrap_or_else(|e| e.into_inner()).durable(&after.durable_marks);
        }
        if wake {
            self.outbox_wake.send_modify(|n| *n += 1);
        }

        match outcome {
            Ok(()) => {
                self.audit.flushed(now);
                for f in after.keep {
                    f.keep();
                }
                for (name, size) in after.delete {
                    self.payloads.remove(&name, size);
                }
                for (addr, ev) in after.events {
                    self.hub.publish(&addr, ev);
                }
                self.refresh_size();
                for (tx, r, _) in results {
                    if let Some(tx) = tx {
                        let _ = tx.send(r);
                    }
                }
                Ok(())
            }
            Err((e, broken)) => {
                tracing::error!(error = %e, "store commit failed");
                if broken {
                    // Before anyone hears of the failure: no checkpoint may
                    // sign what it may have lost.
                    self.audit.broken();
                }
                if applied {
                    // The batch reached the tree and may be durable: its
                    // envelopes may reference these files. Kept; the sweep
                    // at the next open removes those no envelope references.
                    for f in after.keep {
                        f.keep();
                    }
                }
                // Otherwise dropping `after` removes files nothing references.
                for (tx, r, _) in results {
                    if let Some(tx) = tx {
                        let _ = tx.send(r.and(Err(RelayError::Commit(e.clone()))));
                    }
                }
                if broken { Err(e) } else { Ok(()) }
            }
        }
    }

    /// Re-reads sled's size on disk for the space check, at most every
    /// [`SIZE_REFRESH`]: it lists sled's blob directory, several system
    /// calls that each small batch need not pay (payload files are counted
    /// exactly elsewhere; sled's file grows by whole segments anyway).
    fn refresh_size(&mut self) {
        let now = std::time::Instant::now();
        if self.size_read_at.is_some_and(|at| now.duration_since(at) < SIZE_REFRESH) {
            return;
        }
        self.size_read_at = Some(now);
        if let Ok(n) = self.db.size_on_disk() {
            self.size.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            network: self.network.clone(),
            relay_uri: self.relay_uri.clone(),
            max_mailbox_messages: self.max_mailbox_messages,
            signer: self.signer.clone(),
        }
    }
}
