//! Focal client library and the logic of the `focal` command.
//!
//! A focal point uses this crate to talk to its network's relay over gRPC
//! with mutual TLS: publish its encryption key in the directory, seal and
//! send case messages with attachments, list its inbox (live), fetch, verify
//! and open messages, acknowledge them with signed delivery receipts, reply,
//! and collect the receipts of what it sent.
//!
//! What it guarantees: nothing of a received message is shown or saved
//! before the sender's signature, the sender's certificate, the ciphertext
//! digest, the final payload chunk and every attachment digest have been
//! verified; no message or attachment is ever held whole in memory (sealing
//! goes through a temporary file, see [`send`]). What it does not do: it keeps
//! no message bodies or attachment data in its local store (metadata only),
//! and it does not retry a refused send (only interrupted ones).
//!
//! Layout: [`profile`] (the TOML profile), [`connect`] (TLS + tonic channel),
//! [`keys`] (X25519 keys), [`client`] (the connected [`Client`]), [`send`],
//! [`read`], [`save`] (a read's attachments to files), [`mailbox`] (inbox,
//! ack, receipts), [`plaintext`] (sealed plaintext layout, no I/O), [`store`]
//! (local records), [`progress`],
//! [`cli`] (the `focal` command), [`audit`] (auditor side), [`case`] (kinds,
//! request fields, case threads, overdue requests), [`forward`] (forward,
//! releases, network broadcast), [`console`] (the local web console).
#![warn(missing_docs)]

pub mod audit;
pub mod case;
pub mod cli;
pub mod client;
pub mod connect;
pub mod console;
pub mod error;
pub mod forward;
pub mod keys;
pub mod mailbox;
pub mod plaintext;
pub mod profile;
pub mod progress;
pub mod read;
pub mod save;
pub mod send;
pub mod store;
pub mod util;

pub use client::{Client, MessageRef, PublishOptions, RetryPolicy};
pub use error::{ClientError, Result};
pub use mailbox::{InboxItem, MessageInfo, ReceiptInfo, verify_receipt};
pub use profile::{Profile, ProfileFile};
pub use read::{OpenedMessage, ReadOptions, SavedAttachment};
pub use send::{Accepted, Draft, SealedMessage};
