//! The relay's durable state on sled: mailboxes per address (ordered by a
//! per-mailbox sequence), envelope headers, payloads, the (sender, msg id)
//! dedup set with expiry, receipts per address, directory entries, the
//! per-peer outboxes and the federation seen-set ([`fed`]) — all in ONE sled
//! tree under key prefixes (see [`keys`]), beside the audit log (`a/`).
//!
//! Reads go straight to the tree. Every change goes through the single
//! writer thread ([`writer`]): bounded queue, one batch and one fsync
//! per group of waiting operations, answers only after the flush. A full
//! queue is an error the caller sees ([`RelayError::QueueFull`]), except for
//! the bookkeeping of outbox items the core has already let go (acked or
//! expired), which waits for room.

pub mod admin;
pub mod admin_outbox;
pub(crate) mod audit_seam;
mod casework;
pub mod durable;
pub mod fed;
pub mod fsync;
pub mod keys;
mod ops;
pub mod payload;
pub mod records;
mod refusal_audit;
pub mod retention;
pub mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use focal_proto::{Address, NetworkId, pb};
use tokio::sync::{mpsc, oneshot};

use self::payload::{PayloadDir, PayloadSink, PayloadSource};
use self::records::{DedupRecord, MailboxEntry, MailboxMeta, StoredEnvelope, decode};
pub use self::writer::{AcceptRequest, Accepted, AckRequest, ExpiryReport, ReceiptSigner};
use self::writer::{Msg, Op, Reply, Writer};
use crate::RelayError;
use crate::audit::AuditReader;
use crate::hub::Hub;

/// What the store needs to open.
pub struct StoreOptions {
    /// The relay's data directory (sled under `sled/`, payload files under `payloads/`).
    pub data_dir: PathBuf,
    /// The relay's network (receipts for its members are stored locally).
    pub network: NetworkId,
    /// The relay's identity URI (signer of EXPIRED receipts, audit details).
    pub relay_uri: String,
    /// Audit-log checkpoint origin.
    pub audit_origin: String,
    /// `audit.checkpoint_interval_secs`.
    pub checkpoint_interval_secs: u64,
    /// `limits.max_mailbox_messages`.
    pub max_mailbox_messages: u64,
    /// `limits.max_store_bytes`.
    pub max_store_bytes: u64,
    /// `limits.write_queue_depth`.
    pub write_queue_depth: usize,
    /// Where the writer publishes live events.
    pub hub: Arc<Hub>,
    /// Signs the relay's EXPIRED receipts.
    pub signer: ReceiptSigner,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    payloads: Arc<PayloadDir>,
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    sled_size: Arc<AtomicU64>,
    max_store_bytes: u64,
    /// Resolves when the writer thread has ended (queue closed, last flush done).
    writer: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    audit: AuditReader,
    fatal: tokio::sync::watch::Receiver<Option<String>>,
    metrics: Arc<crate::metrics::Metrics>,
    outbox_wake: Arc<tokio::sync::watch::Sender<u64>>,
    files: durable::SledFiles,
    refusals: refusal_audit::RefusalAudit,
}

impl Store {
    /// Opens (or creates) the store, removes orphan payload files and starts
    /// the writer thread. Must be called inside a tokio runtime.
    pub fn open(opts: StoreOptions) -> Result<Store, RelayError> {
        Store::open_with_core(opts, None)
    }

    /// As [`Store::open`], with the relay core the writer consults (and
    /// locks while it stages a batch) for federation operations. The core is
    /// restored from the store (seen-set, outboxes) before the writer starts.
    pub fn open_with_core(
        opts: StoreOptions,
        core: Option<Arc<std::sync::Mutex<crate::core::RelayCore>>>,
    ) -> Result<Store, RelayError> {
        let dir = &opts.data_dir;
        let payload_path = dir.join("payloads");
        std::fs::create_dir_all(&payload_path).map_err(RelayError::io(&payload_path))?;
        let config = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(128 * 1024 * 1024)
            // Fewer segment rewrites: a relay's keys are short-lived
            // (queued, forwarded, removed), so space comes back anyway.
            .mode(sled::Mode::HighThroughput);
        let db = open_sled(&config).map_err(RelayError::sled("opening the sled database"))?;
        let files = durable::SledFiles::open(&dir.join("sled"))
            .map_err(|e| RelayError::Other(format!("making the sled database durable: {e}")))?;
        let tree = db.open_tree("focal").map_err(RelayError::sled("opening the tree"))?;

        match tree.get(keys::VERSION_KEY).map_err(RelayError::sled("reading the version"))? {
            None => {
                tree.insert(keys::VERSION_KEY, &keys::VERSION.to_be_bytes())
                    .map_err(RelayError::sled("writing the version"))?;
            }
            Some(v) if v.as_ref() == keys::VERSION.to_be_bytes() => {}
            Some(v) => {
                return Err(RelayError::Corrupt {
                    key: "k/version".into(),
                    detail: format!("store format {v:?} is not {} (this relay's format)", keys::VERSION),
                });
            }
        }

        let mut referenced = HashSet::new();
        for kv in tree.scan_prefix(keys::ENVELOPE) {
            let (k, v) = kv.map_err(RelayError::sled("scanning envelopes"))?;
            let env: StoredEnvelope = decode(&k, &v)?;
            if !env.payload_file.is_empty() {
                referenced.insert(env.payload_file);
            }
        }
        let payloads = Arc::new(PayloadDir {
            path: payload_path,
            bytes: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
        });
        let removed = payloads.sweep_orphans(&referenced)?;
        if removed > 0 {
            tracing::info!(removed, "removed payload files no envelope references");
        }

        let metrics = Arc::new(crate::metrics::Metrics::default());
        let audit = audit_seam::AuditSeam::open(
            tree.clone(),
            files.clone(),
            &dir.join("audit-log.key"),
            &opts.audit_origin,
            opts.checkpoint_interval_secs,
            metrics.clone(),
        )?;
        let audit_reader = audit.reader();
        if let Some(core) = &core {
            let (seen, items) = fed::load(&tree)?;
            let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
            let n_seen = seen.len();
            c.restore_seen(seen);
            let mut by_peer: std::collections::BTreeMap<String, Vec<(u64, crate::core::outbox::OutboxItem)>> =
                Default::default();
            let n_items = items.len();
            for (peer, seq, item) in items {
                by_peer.entry(peer).or_default().push((seq, item));
            }
            for (peer, items) in by_peer {
                if let Err(e) = c.restore_outbox(&peer, items) {
                    tracing::error!(peer, error = %e, "outbox of a peer no longer configured is kept on disk, not sent");
                }
            }
            let held = casework::load(&tree)?;
            let n_held = held.len();
            c.escalations_mut().restore(held);
            // Items queued from now on go out only after their batch's fsync.
            c.hold_until_durable();
            tracing::info!(
                seen = n_seen,
                outbox_items = n_items,
                held = n_held,
                "relay core restored from the store"
            );
        }
        let (fatal_tx, fatal_rx) = tokio::sync::watch::channel(None);
        let outbox_wake = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let sled_size = Arc::new(AtomicU64::new(db.size_on_disk().unwrap_or(0)));
        let capacity = opts.write_queue_depth.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let ticker_core = core.clone();
        let writer = Writer {
            tree: tree.clone(),
            db,
            files: files.clone(),
            audit,
            hub: opts.hub,
            payloads: payloads.clone(),
            network: opts.network,
            relay_uri: opts.relay_uri,
            max_mailbox_messages: opts.max_mailbox_messages,
            signer: opts.signer,
            size: sled_size.clone(),
            fatal: fatal_tx,
            metrics: metrics.clone(),
            core,
            outbox_wake: outbox_wake.clone(),
            size_read_at: None,
        };
        // A thread of its own for the writer's whole life: it blocks on its
        // queue and on each fsync (no task hand-off per batch). Not one of
        // tokio's blocking threads, which a runtime waits for when dropped:
        // this one ends when the queue closes and reports it on `done`.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("focal-store-writer".into())
            .spawn(move || {
                writer.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| RelayError::Other(format!("starting the store writer thread: {e}")))?;
        let handle = done_rx;
        if let Some(core) = ticker_core {
            casework::spawn_ticker(tx.downgrade(), core);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                tree,
                payloads,
                tx,
                capacity,
                sled_size,
                max_store_bytes: opts.max_store_bytes,
                writer: std::sync::Mutex::new(Some(handle)),
                audit: audit_reader,
                fatal: fatal_rx,
                metrics,
                outbox_wake,
                files,
                refusals: refusal_audit::RefusalAudit::new(crate::rpc::now_ms()),
            }),
        })
    }

    /// Stops the writer after it has applied everything already queued, and
    /// flushes. Later operations fail with [`RelayError::StoreClosed`].
    pub async fn close(&self) {
        let _ = self.inner.tx.send(Msg::Close).await;
        let handle = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    async fn submit(&self, op: Op) -> Result<Reply, RelayError> {
        self.enqueue(op)?.await.map_err(|_| RelayError::StoreClosed)?
    }

    /// Queues `op` for the writer now (operations are staged in the order
    /// they were queued); the receiver gets its answer.
    fn enqueue(&self, op: Op) -> Result<oneshot::Receiver<Result<Reply, RelayError>>, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.inner.tx.try_send(Msg::Job(op, Some(tx))).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RelayError::QueueFull { capacity: self.inner.capacity },
            mpsc::error::TrySendError::Closed(_) => RelayError::StoreClosed,
        })?;
        Ok(rx)
    }

    /// Queues bookkeeping for a decision the relay core has already made
    /// and forgotten (an outbox item acked or expired): it must reach the
    /// disk, so a full queue is waited out, by a task of its own, instead
    /// of refused. At most one such task per outbox item, so they are
    /// bounded by the outbox windows.
    fn enqueue_bookkeeping(
        &self,
        op: Op,
    ) -> Result<oneshot::Receiver<Result<Reply, RelayError>>, RelayError> {
        let (tx, rx) = oneshot::channel();
        match self.inner.tx.try_send(Msg::Job(op, Some(tx))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let queue = self.inner.tx.clone();
                // If the store closes meanwhile, the job (and its answer's
                // sender) is dropped and the receiver answers StoreClosed.
                tokio::spawn(async move { queue.send(job).await.ok() });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(RelayError::StoreClosed),
        }
        Ok(rx)
    }

    /// Stores an envelope; returns after the batch holding it is fsynced.
    pub async fn accept(&self, req: AcceptRequest) -> Result<Accepted, RelayError> {
        match self.submit(Op::Accept(Box::new(req))).await? {
            Reply::Accepted(a) => Ok(a),
            other => Err(RelayError::Other(format!("writer answered {other:?} to accept"))),
        }
    }

    /// Routes an envelope copy through the relay core and persists the
    /// decision (mailboxes, outboxes, receipts, audit) in one batch;
    /// returns after its fsync.
    pub async fn route(&self, req: fed::RouteRequest) -> Result<fed::RouteOutcome, RelayError> {
        self.route_queued(req)?.await
    }

    /// [`Self::route`] in two steps: the request is queued for the writer
    /// before this returns (so requests queued one after the other are
    /// staged in that order), and the returned future resolves after its
    /// batch's fsync. A pipelined transfer stream queues its envelopes this
    /// way while it reads the next one.
    pub fn route_queued(
        &self,
        req: fed::RouteRequest,
    ) -> Result<
        impl std::future::Future<Output = Result<fed::RouteOutcome, RelayError>> + Send + 'static + use<>,
        RelayError,
    > {
        let rx = self.enqueue(Op::Route(Box::new(req)))?;
        Ok(async move {
            match rx.await.map_err(|_| RelayError::StoreClosed)?? {
                Reply::Routed(o) => Ok(o),
                other => Err(RelayError::Other(format!("writer answered {other:?} to route"))),
            }
        })
    }

    /// Routes a verified receipt (local receipt box or a peer's outbox).
    pub async fn route_receipt(&self, req: fed::ReceiptRequest) -> Result<pb::TransferStatus, RelayError> {
        match self.submit(Op::Receipt(Box::new(req))).await? {
            Reply::Status(s) => Ok(s),
            other => Err(RelayError::Other(format!("writer answered {other:?} to a receipt"))),
        }
    }

    /// Deletes an item the peer acked, with its FORWARDED audit record:
    /// queued now (or, if the queue is full, as soon as it has room: the
    /// core has already forgotten the item), and the future resolves once
    /// the deletion is applied (it need not wait for the fsync, see
    /// `Op::answered_before_fsync`).
    pub fn outbox_done(
        &self,
        peer: &str,
        removed: crate::core::outbox::Removed,
        status: pb::TransferStatus,
        now_ms: i64,
    ) -> Result<impl std::future::Future<Output = Result<(), RelayError>> + Send + 'static + use<>, RelayError>
    {
        let rx =
            self.enqueue_bookkeeping(Op::OutboxDone { peer: peer.to_owned(), removed, status, now_ms })?;
        Ok(async move { rx.await.map_err(|_| RelayError::StoreClosed)?.map(drop) })
    }

    /// Deletes an expired outbox item, audits it and queues EXPIRED receipts
    /// (waiting for room in a full queue, like [`Self::outbox_done`]).
    pub async fn outbox_expired(
        &self,
        expired: crate::core::relay::Expired,
        now_ms: i64,
    ) -> Result<(), RelayError> {
        let rx = self.enqueue_bookkeeping(Op::OutboxExpired { expired, now_ms })?;
        rx.await.map_err(|_| RelayError::StoreClosed)?.map(drop)
    }

    /// Deletes seen entries the core forgot.
    pub async fn forget_seen(&self, keys: Vec<crate::core::dedup::SeenKey>) -> Result<(), RelayError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.submit(Op::ForgetSeen(keys)).await.map(drop)
    }

    /// The record of outbox item `peer`/`seq`.
    pub fn outbox_record(&self, peer: &str, seq: u64) -> Result<Option<fed::OutboxRecord>, RelayError> {
        let key = keys::outbox(peer, seq);
        match self.get(&key, "reading an outbox item")? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// The stored envelope of msgkey (sender, msg id), also while only outbox copies need it.
    pub fn stored_envelope(
        &self,
        sender: &Address,
        msg_id: &[u8; 16],
    ) -> Result<Option<StoredEnvelope>, RelayError> {
        self.envelope(sender, msg_id)
    }

    /// Changes each time a durable batch queued outbox items.
    pub fn outbox_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.outbox_wake.subscribe()
    }

    /// Removes a message from its recipient's mailbox and stores the receipt.
    pub async fn ack(&self, req: AckRequest) -> Result<(), RelayError> {
        self.submit(Op::Ack(Box::new(req))).await.map(drop)
    }

    /// Stores a verified directory entry (refused if its key_serial is lower
    /// than the stored one's).
    pub async fn publish(
        &self,
        address: Address,
        entry: pb::DirectoryEntry,
        key_serial: u32,
    ) -> Result<(), RelayError> {
        self.submit(Op::Publish { address, entry, key_serial }).await.map(drop)
    }

    /// Expires up to `limit` expiry-index entries due at `now_ms`: messages
    /// still waiting leave their mailboxes (their senders get EXPIRED
    /// receipts signed by the relay) and msg ids are forgotten.
    pub async fn expire_due(&self, now_ms: i64, limit: usize) -> Result<ExpiryReport, RelayError> {
        match self.submit(Op::ExpireDue { now_ms, limit }).await? {
            Reply::Expired(n) => Ok(n),
            other => Err(RelayError::Other(format!("writer answered {other:?} to expire"))),
        }
    }

    /// Appends a standalone audit record (e.g. a refusal); returns its leaf index.
    pub async fn audit(&self, record: pb::AuditRecord) -> Result<u64, RelayError> {
        match self.submit(Op::Audit(Box::new(record))).await? {
            Reply::Leaf(i) => Ok(i),
            other => Err(RelayError::Other(format!("writer answered {other:?} to audit"))),
        }
    }

    /// Resolves once every batch the writer applied before this call is
    /// durable (the writer commits batches one after the other, each with
    /// its fsync). A duplicate found in the tree or in the core's seen-set
    /// may belong to a batch still being fsynced: answering DUPLICATE, which
    /// the sender takes as an acknowledgement, waits for this first.
    pub async fn durable_barrier(&self) -> Result<(), RelayError> {
        self.submit(Op::Barrier).await.map(drop)
    }

    /// Queues a refusal's audit record without waiting for it (a refusal
    /// never waits on it). Refusal records are rate-limited per source (see
    /// [`refusal_audit`]); one left out, or dropped because the queue is
    /// full, is logged.
    pub fn audit_nowait(&self, record: pb::AuditRecord) {
        let source = record.peer.clone();
        self.audit_nowait_from(record, source);
    }

    /// As [`Store::audit_nowait`], rate-limited per `source` rather than
    /// per peer (see [`refusal_audit`]).
    pub fn audit_nowait_from(&self, mut record: pb::AuditRecord, source: String) {
        if !self.inner.refusals.admit_from(&mut record, source, crate::rpc::now_ms()) {
            return;
        }
        if let Err(e) = self.inner.tx.try_send(Msg::Job(Op::Audit(Box::new(record)), None)) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "write queue full",
                mpsc::error::TrySendError::Closed(_) => "store closed",
            };
            tracing::warn!(why, "audit record dropped");
        }
    }

    // ------------------------------------------------------------ reads

    fn get(&self, key: &[u8], what: &'static str) -> Result<Option<sled::IVec>, RelayError> {
        self.inner.tree.get(key).map_err(RelayError::sled(what))
    }

    /// The dedup record of (sender, msg id), if it is remembered.
    pub fn dedup(&self, sender: &Address, msg_id: &[u8; 16]) -> Result<Option<DedupRecord>, RelayError> {
        let key = keys::dedup(&keys::msg_key(&sender.to_string(), msg_id));
        match self.get(&key, "reading the dedup set")? {
            Some(v) => Ok(Some(DedupRecord::decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// The stored envelope of (sender, msg id), while a local recipient still waits for it.
    pub fn envelope(
        &self,
        sender: &Address,
        msg_id: &[u8; 16],
    ) -> Result<Option<StoredEnvelope>, RelayError> {
        let key = keys::envelope(&keys::msg_key(&sender.to_string(), msg_id));
        match self.get(&key, "reading an envelope")? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Whether the message waits in `owner`'s mailbox.
    pub fn in_mailbox(
        &self,
        owner: &Address,
        sender: &Address,
        msg_id: &[u8; 16],
    ) -> Result<bool, RelayError> {
        let key = keys::mailbox_index(&owner.to_string(), &keys::msg_key(&sender.to_string(), msg_id));
        Ok(self.get(&key, "reading a mailbox")?.is_some())
    }

    /// Up to `limit` waiting messages of `owner` with seq > `after_seq`, in order.
    pub fn mailbox_page(
        &self,
        owner: &Address,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<pb::MessageSummary>, RelayError> {
        let addr = owner.to_string();
        let start = keys::mailbox(&addr, after_seq.saturating_add(1));
        let end = keys::mailbox(&addr, u64::MAX);
        let mut out = Vec::new();
        for kv in self.inner.tree.range(start..=end) {
            let (k, v) = kv.map_err(RelayError::sled("scanning a mailbox"))?;
            let seq = keys::u64_be(&k[k.len() - 8..]).unwrap_or(0);
            let entry: MailboxEntry = decode(&k, &v)?;
            let ekey = keys::envelope(&entry.msg_key);
            let Some(ev) = self.get(&ekey, "reading an envelope")? else {
                tracing::warn!(key = %keys::show(&k), "mailbox entry without envelope");
                continue;
            };
            let env: StoredEnvelope = decode(&ekey, &ev)?;
            out.push(pb::MessageSummary {
                header: env.header,
                received_at_ms: entry.received_at_ms,
                mailbox_seq: seq,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Messages waiting in `owner`'s mailbox.
    pub fn mailbox_len(&self, owner: &Address) -> Result<u64, RelayError> {
        let key = keys::mailbox_meta(&owner.to_string());
        Ok(MailboxMeta::decode(&key, self.get(&key, "reading a mailbox")?.as_deref())?.count)
    }

    /// A reader of the envelope's payload from `offset`.
    pub async fn payload(&self, env: &StoredEnvelope, offset: u64) -> Result<PayloadSource, RelayError> {
        if env.payload_file.is_empty() {
            let Some((sender, id)) =
                Address::parse(&env.sender).ok().zip(env.msg_id.as_slice().try_into().ok())
            else {
                return Err(RelayError::Corrupt {
                    key: "e/…".into(), detail: "bad sender or msg id".into()
                });
            };
            let key = keys::payload(&keys::msg_key(&sender.to_string(), &id));
            let bytes = self.get(&key, "reading a payload")?.ok_or_else(|| RelayError::Corrupt {
                key: keys::show(&key),
                detail: "payload missing".into(),
            })?;
            Ok(PayloadSource::Inline { bytes, pos: offset.min(usize::MAX as u64) as usize })
        } else {
            PayloadSource::open_file(&self.inner.payloads.file_path(&env.payload_file), offset).await
        }
    }

    /// A sink for a payload of `size` bytes (inline or file).
    pub async fn payload_sink(&self, size: u64) -> Result<PayloadSink, RelayError> {
        // Reserve first, then check with the reservation counted, so two
        // uploads checked at once cannot both take the last room.
        let room = payload::Reservation::new(&self.inner.payloads, size);
        let used = self.space_used();
        if used > self.inner.max_store_bytes {
            let used = used.saturating_sub(size);
            return Err(RelayError::StoreFull { used, limit: self.inner.max_store_bytes });
        }
        PayloadSink::new(&self.inner.payloads, size, room).await
    }

    /// Receipts for `owner` stored at or after `since_ms`, oldest first, at most `limit`.
    pub fn receipts(
        &self,
        owner: &Address,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<pb::Receipt>, RelayError> {
        let addr = owner.to_string();
        let start = keys::receipt(&addr, since_ms, &[0; 32]);
        let mut out = Vec::new();
        for kv in self.inner.tree.range(start..) {
            let (k, v) = kv.map_err(RelayError::sled("scanning receipts"))?;
            if !k.starts_with(&keys::receipts_prefix(&addr)) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// The published directory entry of `address`.
    pub fn directory_entry(&self, address: &Address) -> Result<Option<pb::DirectoryEntry>, RelayError> {
        let key = keys::directory(&address.to_string());
        match self.get(&key, "reading the directory")? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Every published directory entry, in address order, at most `limit`.
    pub fn directory(&self, limit: usize) -> Result<Vec<pb::DirectoryEntry>, RelayError> {
        let mut out = Vec::new();
        for kv in self.inner.tree.scan_prefix(keys::DIRECTORY).take(limit) {
            let (k, v) = kv.map_err(RelayError::sled("scanning the directory"))?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Bytes on disk: sled files (as of the last commit) plus payload files.
    pub fn size_bytes(&self) -> u64 {
        self.inner.sled_size.load(Ordering::Relaxed) + self.inner.payloads.bytes.load(Ordering::Relaxed)
    }

    /// What counts against `limits.max_store_bytes`: the bytes on disk plus
    /// the room held by payloads still being received.
    fn space_used(&self) -> u64 {
        self.size_bytes().saturating_add(self.inner.payloads.reserved.load(Ordering::Relaxed))
    }

    /// Refuses a new message of `incoming` bytes if the store would exceed
    /// `limits.max_store_bytes` (payloads being received count with the
    /// size they announced).
    pub fn check_space(&self, incoming: u64) -> Result<(), RelayError> {
        let used = self.space_used();
        if used.saturating_add(incoming) > self.inner.max_store_bytes {
            return Err(RelayError::StoreFull { used, limit: self.inner.max_store_bytes });
        }
        Ok(())
    }

    /// sled's files to sync after a flush (see [`durable`]); for the
    /// witness, which shares the relay's tree.
    pub fn durable_files(&self) -> durable::SledFiles {
        self.inner.files.clone()
    }

    /// The sled tree (the audit log lives in it under `a/`).
    pub fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    /// The relay's counters (message counts from committed audit records,
    /// fsync latency); the node shares them with the metrics exporter.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// A read view of the audit log (entries, checkpoints, proofs).
    pub fn audit_log(&self) -> &AuditReader {
        &self.inner.audit
    }

    /// Every committed audit record, in order (tests and diagnostics).
    pub fn audit_records(&self) -> Result<Vec<pb::AuditRecord>, RelayError> {
        let log = &self.inner.audit;
        log.entries(0, log.size())?
            .iter()
            .map(|e| focal_proto::audit::decode_record(&e.leaf).map_err(|e| RelayError::Audit(e.to_string())))
            .collect()
    }

    /// Resolves with the reason once the store has failed (a batch or an
    /// fsync was refused); it then acknowledges nothing more.
    pub async fn failed(&self) -> String {
        let mut rx = self.inner.fatal.clone();
        let reason = rx.wait_for(|f| f.is_some()).await.map(|f| f.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            // The writer is gone without failing: never resolves.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Opens the database, waiting up to [`LOCK_WAIT`] for its file lock: a
/// store closed a moment ago in this process (a restart in place) releases
/// the lock only once sled's own I/O threads have let go of it, just after
/// the final flush returned. Another process holding the lock still fails,
/// with sled's "could not acquire lock" error.
fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// How long [`open_sled`] waits for the database's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
