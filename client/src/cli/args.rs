//! Command-line arguments of `focal` (clap derive). Values are parsed here
//! (addresses, message ids, durations, handling codes), so a bad value is a
//! usage error (exit 2) naming the argument.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use focal_proto::{Address, pb};

use crate::util;

/// The focal point's client for the Focal network.
#[derive(Debug, Parser)]
#[command(name = "focal", version, about, long_about = None, disable_help_subcommand = true)]
pub struct Cli {
    /// Profile file (default: $FOCAL_PROFILE, else ~/.config/focal/profile.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line on stdout; no progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Local store retention for this run (e.g. 365d): records of sent and read
    /// messages and receipts older than this are purged first. Overrides the
    /// profile's `retention`.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub retention: Option<Duration>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage this focal point's encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Seal and send a message.
    Send(SendArgs),
    /// List waiting messages and receipts (--follow: stay and show new ones live).
    Inbox {
        /// Keep listening for new messages after listing the waiting ones.
        #[arg(long)]
        follow: bool,
    },
    /// Fetch, verify and open a message; save its attachments.
    Read {
        /// Message id (32 hex characters, from `focal inbox`).
        #[arg(value_parser = parse_msg_id)]
        msg_id: [u8; 16],
        /// Sender, when several senders used the same id.
        #[arg(long, value_parser = parse_member)]
        from: Option<Address>,
        /// Save attachments in this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace existing files in --out.
        #[arg(long)]
        overwrite: bool,
    },
    /// Acknowledge a message: sends a DELIVERED receipt signed by you; the relay removes it from your inbox.
    Ack {
        /// Message id.
        #[arg(value_parser = parse_msg_id)]
        msg_id: [u8; 16],
        /// Sender, when several senders used the same id.
        #[arg(long, value_parser = parse_member)]
        from: Option<Address>,
    },
    /// Reply to a message you have read (case reference and subject carried over).
    Reply(ReplyArgs),
    /// Forward a received message to others (H2 outside your network needs the originator's release).
    Forward(ForwardArgs),
    /// Sign a release permitting recipients to forward your message to other networks (H2).
    Release(ReleaseArgs),
    /// Show a case's whole thread (sent and read messages) from the local store.
    Case {
        /// Case reference.
        case_ref: String,
    },
    /// Sent requests whose response deadline has passed without a reply.
    Overdue,
    /// Receipts for messages you sent (delivered, refused, expired), verified.
    Receipts {
        /// Only receipts newer than this (e.g. 2d); default: all the relay keeps.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
    },
    /// Delete local records (sent, read, receipts) older than a duration; attachments saved with --out stay.
    Purge {
        /// Age (e.g. 90d, 12w): records whose last activity is older go.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Duration,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Query the network directory.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// Auditors: fetch, verify (offline), trace, export and summarise a network's audit log.
    #[command(subcommand)]
    Audit(super::audit::AuditCommand),
    /// Secretariats (role admin): relay status, queues, purge, reload, peer control.
    #[command(subcommand)]
    Admin(super::admin::AdminCommand),
}

/// `focal keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an X25519 encryption key in the key directory.
    Init {
        /// Add a new key even if one exists (older keys are kept to open older messages).
        #[arg(long)]
        rotate: bool,
    },
    /// Sign a directory entry for the newest key and publish it at the relay.
    Publish {
        /// Organisational label shown to other members.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Publish as a member that is not a law-enforcement authority (H0 messages cannot reach you).
        #[arg(long)]
        not_law_enforcement: bool,
        /// Validity of the entry (capped at the certificate's expiry).
        #[arg(long, value_parser = parse_duration, default_value = "365d")]
        valid_for: Duration,
    },
    /// List the keys in the key directory.
    List,
    /// End a rotation's overlap: remove keys superseded longer ago than
    /// `--overlap` (messages sealed to them can no longer be opened).
    Prune {
        /// How long a superseded key is kept after its successor was made.
        #[arg(long, value_parser = parse_duration, default_value = "30d")]
        overlap: Duration,
    },
}

/// `focal directory ...`
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Look up and verify a member's directory entry.
    Lookup {
        /// Address name@network.
        #[arg(value_parser = parse_member)]
        address: Address,
    },
}

/// Body text, given inline or from a file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BodyArgs {
    /// Message text.
    #[arg(long)]
    pub body: Option<String>,
    /// Read the message text from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
}

/// Options shared by send and reply.
#[derive(Debug, Args)]
pub struct MessageOptions {
    /// Attach a file (repeatable); streamed, any size the relay accepts.
    #[arg(long = "attach", value_name = "FILE")]
    pub attachments: Vec<PathBuf>,
    /// Handling code H0..H3 (default H1; a reply keeps the original's code).
    #[arg(long, value_parser = parse_handling)]
    pub handling: Option<pb::HandlingCode>,
    /// Restrictions stated by the originator (with H3).
    #[arg(long, default_value = "")]
    pub restrictions: String,
    /// Urgent priority.
    #[arg(long)]
    pub urgent: bool,
    /// Lifetime: the relay drops it undelivered after this (e.g. 12h, 7d).
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    pub expires_in: Duration,
}

/// `focal forward ...`
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Message id of the message to forward (still in your inbox, not yet acknowledged).
    #[arg(value_parser = parse_msg_id)]
    pub msg_id: [u8; 16],
    /// Its sender, when several senders used the same id.
    #[arg(long, value_parser = parse_member)]
    pub from: Option<Address>,
    /// New recipient name@network (repeatable).
    #[arg(long = "to", required = true, value_parser = parse_member)]
    pub to: Vec<Address>,
    /// The originator's signed release (from `focal release`), needed for H2 outside your network.
    #[arg(long, value_name = "FILE")]
    pub release: Option<PathBuf>,
}

/// `focal release ...`
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Id of a message YOU sent.
    #[arg(value_parser = parse_msg_id)]
    pub msg_id: [u8; 16],
    /// Networks it may be forwarded to, comma-separated (omit: any network).
    #[arg(long, value_delimiter = ',', value_parser = parse_network)]
    pub networks: Vec<focal_proto::NetworkId>,
    /// Validity of the release.
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    pub valid: Duration,
    /// Write the signed release here.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `focal send ...`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipient name@network (repeatable), or `*@network` for every member of a network.
    #[arg(long = "to", required = true, value_parser = parse_recipient)]
    pub to: Vec<Address>,
    /// Subject (sealed: relays never see it).
    #[arg(long)]
    pub subject: String,
    /// Case reference (sealed).
    #[arg(long = "case", alias = "case-ref", value_name = "REF", default_value = "")]
    pub case_ref: String,
    /// Kind: general, asset-tracing, freezing, disclosure, pre-mla, coordination, response.
    #[arg(long, value_parser = parse_kind, default_value = "general")]
    pub kind: pb::MessageKind,
    /// Structured request fields (sealed).
    #[command(flatten)]
    pub request: RequestArgs,
    /// Body.
    #[command(flatten)]
    pub body: BodyArgs,
    /// Options.
    #[command(flatten)]
    pub opts: MessageOptions,
}

/// Structured fields of a request (sealed in `Content.request`).
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Requesting authority.
    #[arg(long, default_value = "")]
    pub authority: String,
    /// Legal basis (e.g. "UNCAC art. 46, 48").
    #[arg(long, default_value = "")]
    pub legal_basis: String,
    /// Subject of the request and its identifiers: NAME[:ID,ID] (repeatable).
    #[arg(long = "subject-of", value_name = "NAME[:ID,ID]", value_parser = parse_subject_of)]
    pub subjects: Vec<pb::SubjectOfRequest>,
    /// Asset sought (repeatable).
    #[arg(long = "asset")]
    pub assets: Vec<String>,
    /// Jurisdiction concerned (repeatable).
    #[arg(long = "jurisdiction")]
    pub jurisdictions: Vec<String>,
    /// Response wanted by this date (YYYY-MM-DD, end of day UTC).
    #[arg(long, value_parser = parse_deadline, conflicts_with = "respond_within")]
    pub deadline: Option<i64>,
    /// Response wanted within this time from now (e.g. 3d, 12h).
    #[arg(long, value_parser = parse_duration)]
    pub respond_within: Option<Duration>,
}

/// `focal reply ...`
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// Message id of the message answered (must have been read with `focal read`).
    #[arg(value_parser = parse_msg_id)]
    pub msg_id: [u8; 16],
    /// Its sender, when several senders used the same id.
    #[arg(long, value_parser = parse_member)]
    pub from: Option<Address>,
    /// Reply to every recipient of the original, not only its sender.
    #[arg(long)]
    pub all: bool,
    /// Body.
    #[command(flatten)]
    pub body: BodyArgs,
    /// Options.
    #[command(flatten)]
    pub opts: MessageOptions,
}

fn parse_member(s: &str) -> Result<Address, String> {
    Address::parse_member(s).map_err(|e| e.to_string())
}

fn parse_recipient(s: &str) -> Result<Address, String> {
    Address::parse(s).map_err(|e| e.to_string())
}

fn parse_msg_id(s: &str) -> Result<[u8; 16], String> {
    util::parse_msg_id(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    util::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_handling(s: &str) -> Result<pb::HandlingCode, String> {
    util::parse_handling(s).map_err(|e| e.to_string())
}

fn parse_kind(s: &str) -> Result<pb::MessageKind, String> {
    crate::case::parse_kind(s).map_err(|e| e.to_string())
}

fn parse_subject_of(s: &str) -> Result<pb::SubjectOfRequest, String> {
    crate::case::parse_subject_of(s).map_err(|e| e.to_string())
}

fn parse_deadline(s: &str) -> Result<i64, String> {
    crate::case::parse_deadline(s).map_err(|e| e.to_string())
}

fn parse_network(s: &str) -> Result<focal_proto::NetworkId, String> {
    focal_proto::NetworkId::new(s).map_err(|e| e.to_string())
}
