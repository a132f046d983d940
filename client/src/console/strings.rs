//! Every user-visible text of the console, in one table per language.
//!
//! Only English exists today ([`EN`]); a French, Spanish or Portuguese table
//! is another `static Strings` with the same fields, chosen in
//! [`strings`]. Texts are plain (the page builder escapes them); `{}` marks
//! nothing: values are shown beside a label, never spliced into a sentence.

/// The texts of one language.
#[derive(Debug)]
pub struct Strings {
    /// `lang` attribute of the pages.
    pub lang: &'static str,
    /// Product name in the title bar.
    pub app: &'static str,
    /// Link past the navigation, for keyboard users.
    pub skip: &'static str,
    /// Navigation and page titles.
    pub inbox: &'static str,
    /// Title of the compose page.
    pub compose: &'static str,
    /// Title of the sent messages page.
    pub sent: &'static str,
    /// Title of the overdue page.
    pub overdue: &'static str,
    /// Title of a case thread.
    pub case: &'static str,
    /// Title of the secretariat page.
    pub federation: &'static str,
    /// Title of the auditor page.
    pub audit: &'static str,
    /// Title of a message trace.
    pub trace: &'static str,
    /// Caption of the waiting messages table.
    pub waiting: &'static str,
    /// Caption of the read messages table.
    pub read_messages: &'static str,
    /// Shown instead of sealed fields not yet opened on this client.
    pub sealed: &'static str,
    /// Column and field labels.
    pub received: &'static str,
    /// Label.
    pub from: &'static str,
    /// Label.
    pub to: &'static str,
    /// Label.
    pub subject: &'static str,
    /// Label.
    pub kind: &'static str,
    /// Label.
    pub case_ref: &'static str,
    /// Label.
    pub priority: &'static str,
    /// Label.
    pub handling: &'static str,
    /// Label.
    pub deadline: &'static str,
    /// Label.
    pub created: &'static str,
    /// Label.
    pub size: &'static str,
    /// Label.
    pub body: &'static str,
    /// Label.
    pub attachments: &'static str,
    /// Label.
    pub name: &'static str,
    /// Label.
    pub signature: &'static str,
    /// Signature status when everything verified.
    pub signature_ok: &'static str,
    /// Heading of a failed open.
    pub open_failed: &'static str,
    /// Button.
    pub open: &'static str,
    /// Button.
    pub acknowledge: &'static str,
    /// Notice after an acknowledgement.
    pub acknowledged: &'static str,
    /// Heading and button.
    pub reply: &'static str,
    /// Button.
    pub send: &'static str,
    /// Notice after a send.
    pub accepted: &'static str,
    /// Label.
    pub receipts: &'static str,
    /// Shown when a sent message has no receipt yet.
    pub no_receipt: &'static str,
    /// Shown for empty lists.
    pub none: &'static str,
    /// Compose labels.
    pub recipients_directory: &'static str,
    /// Label.
    pub recipients_other: &'static str,
    /// Hint under the other recipients field.
    pub recipients_other_hint: &'static str,
    /// Label.
    pub urgent: &'static str,
    /// Label.
    pub restrictions: &'static str,
    /// Label.
    pub authority: &'static str,
    /// Label.
    pub legal_basis: &'static str,
    /// Label.
    pub subjects_of_request: &'static str,
    /// Hint.
    pub subjects_hint: &'static str,
    /// Label.
    pub assets: &'static str,
    /// Label.
    pub jurisdictions: &'static str,
    /// Hint.
    pub one_per_line: &'static str,
    /// Fieldset legend.
    pub request_fields: &'static str,
    /// Hint over the request fields.
    pub request_fields_hint: &'static str,
    /// Label.
    pub expires_in: &'static str,
    /// Label.
    pub in_reply_to: &'static str,
    /// Secretariat labels.
    pub relay: &'static str,
    /// Label.
    pub uptime: &'static str,
    /// Label.
    pub links: &'static str,
    /// Label.
    pub peer: &'static str,
    /// Label.
    pub networks: &'static str,
    /// Label.
    pub state: &'static str,
    /// Label.
    pub queue_depth: &'static str,
    /// Label.
    pub oldest: &'static str,
    /// Label.
    pub retries: &'static str,
    /// Label.
    pub actions: &'static str,
    /// Button.
    pub retry_now: &'static str,
    /// Button.
    pub pause: &'static str,
    /// Button.
    pub resume: &'static str,
    /// Heading.
    pub members: &'static str,
    /// Label.
    pub valid_until: &'static str,
    /// Heading.
    pub certificates: &'static str,
    /// Label.
    pub mailboxes: &'static str,
    /// Note under the federation picture.
    pub refreshes: &'static str,
    /// Auditor labels.
    pub fetch_verify: &'static str,
    /// Heading.
    pub checkpoints: &'static str,
    /// Label.
    pub verification: &'static str,
    /// Status.
    pub verified: &'static str,
    /// Status.
    pub not_verified: &'static str,
    /// Label.
    pub cosignatures: &'static str,
    /// Label of the count of cosignature lines the relay supplied (unverified).
    pub cosignatures_supplied: &'static str,
    /// Witness status: before the witness name.
    pub cosigned_by: &'static str,
    /// Witness status: after the name of a witness whose cosignature verifies.
    pub cosig_verified: &'static str,
    /// Witness status: after the name of a witness whose cosignature does not verify.
    pub cosig_not_verified: &'static str,
    /// Witness status: after the name of a configured witness that did not cosign.
    pub cosig_missing: &'static str,
    /// Shown when no witness key was given.
    pub no_witness_keys: &'static str,
    /// Heading.
    pub latest_checkpoint: &'static str,
    /// Label.
    pub log_signature: &'static str,
    /// Status.
    pub ok: &'static str,
    /// Label.
    pub required_witnesses: &'static str,
    /// Inbox: marks a message whose sealed fields were read locally but that is not opened yet.
    pub not_opened: &'static str,
    /// Inbox: a waiting message that cannot be opened; the reason follows.
    pub cannot_open: &'static str,
    /// Inbox: a message too large to preview; its size follows.
    pub too_large_to_preview: &'static str,
    /// Inbox: label of the attachments of a previewed message.
    pub attachments_label: &'static str,
    /// Heading.
    pub entries: &'static str,
    /// Button.
    pub filter: &'static str,
    /// Label.
    pub since: &'static str,
    /// Label.
    pub until: &'static str,
    /// Label.
    pub msg_id: &'static str,
    /// Label.
    pub time: &'static str,
    /// Label.
    pub hop: &'static str,
    /// Label.
    pub detail: &'static str,
    /// Heading.
    pub per_day: &'static str,
    /// Button.
    pub export_jsonl: &'static str,
    /// Button.
    pub export_csv: &'static str,
    /// Hint when no log was fetched yet.
    pub no_log: &'static str,
    /// Shown when the auditor has no log key.
    pub no_key: &'static str,
    /// Heading of the error page.
    pub error: &'static str,
    /// Shown when the role has no console view.
    pub no_view: &'static str,
    /// Label of the truncated entries note.
    pub shown_of: &'static str,
    /// Label.
    pub late_by: &'static str,
    /// Label.
    pub waiting_for: &'static str,
    /// Label.
    pub direction: &'static str,
    /// Label.
    pub media_type: &'static str,
    /// Label.
    pub sha256: &'static str,
    /// Label.
    pub audit_log_size: &'static str,
    /// Label.
    pub address: &'static str,
    /// Label.
    pub law_enforcement: &'static str,
    /// Label.
    pub yes: &'static str,
    /// Label.
    pub no: &'static str,
    /// Label.
    pub log: &'static str,
    /// Label.
    pub consistency: &'static str,
    /// Label.
    pub root: &'static str,
    /// Label.
    pub signatures: &'static str,
    /// Label.
    pub day: &'static str,
    /// Label.
    pub records: &'static str,
    /// Label.
    pub messages: &'static str,
    /// Label.
    pub refusals: &'static str,
    /// Label.
    pub sender: &'static str,
    /// Label.
    pub recipients: &'static str,
    /// Label.
    pub first_verification: &'static str,
    /// Label.
    pub extends_size: &'static str,
    /// Label.
    pub signatures_checked: &'static str,
    /// Caption of the table of links other relays reported.
    pub reported_links: &'static str,
    /// Column: where a link's facts come from.
    pub source: &'static str,
    /// Before the reporting network's name ("as reported by GFP, 3 s ago").
    pub reported_by: &'static str,
    /// After the report's age.
    pub ago: &'static str,
    /// Compose progress: label of the progress bar.
    pub progress: &'static str,
    /// Compose progress: the browser uploads the form to the console.
    pub uploading_to_console: &'static str,
    /// Compose progress: the console seals the message and its attachments.
    pub sealing: &'static str,
    /// Compose progress: the console uploads the sealed message to the relay.
    pub sending_to_relay: &'static str,
    /// Progress label once the upload is out, until the relay answers.
    pub relay_storing: &'static str,
    /// Compose progress: the console did not answer the upload.
    pub upload_failed: &'static str,
}

/// English.
pub static EN: Strings = Strings {
    lang: "en",
    app: "Focal console",
    skip: "Skip to content",
    inbox: "Inbox",
    compose: "Compose",
    sent: "Sent and receipts",
    overdue: "Overdue requests",
    case: "Case thread",
    federation: "Federation",
    audit: "Audit log",
    trace: "Message route",
    waiting: "Messages waiting at the relay",
    read_messages: "Messages read on this computer",
    sealed: "sealed: open to see",
    received: "Received",
    from: "From",
    to: "To",
    subject: "Subject",
    kind: "Kind",
    case_ref: "Case reference",
    priority: "Priority",
    handling: "Handling",
    deadline: "Respond by",
    created: "Created",
    size: "Size",
    body: "Message",
    attachments: "Attachments",
    name: "Name",
    signature: "Signature",
    signature_ok: "verified: sender signature, certificate, payload digest and every attachment digest",
    open_failed: "This message could not be opened",
    open: "Open",
    acknowledge: "Acknowledge (send a signed delivery receipt)",
    acknowledged: "Acknowledged: a delivery receipt signed by you was sent.",
    reply: "Reply",
    send: "Seal and send",
    accepted: "Accepted by the relay",
    receipts: "Receipts",
    no_receipt: "no receipt yet",
    none: "Nothing to show.",
    recipients_directory: "Recipients from the directory",
    recipients_other: "Other recipients",
    recipients_other_hint: "Addresses name@network separated by commas, or *@network for every member of a network.",
    urgent: "Urgent",
    restrictions: "Restrictions (with H3)",
    authority: "Requesting authority",
    legal_basis: "Legal basis",
    subjects_of_request: "Subjects of the request",
    subjects_hint: "One per line: NAME or NAME:ID,ID",
    assets: "Assets sought",
    jurisdictions: "Jurisdictions",
    one_per_line: "One per line",
    request_fields: "Request fields",
    request_fields_hint: "For requests (asset tracing, freezing, pre-MLA); sealed like the rest of the message.",
    expires_in: "Lifetime (e.g. 7d, 12h)",
    in_reply_to: "In reply to",
    relay: "Relay",
    uptime: "Uptime",
    links: "Links to other networks",
    peer: "Peer",
    networks: "Networks",
    state: "State",
    queue_depth: "Queued",
    oldest: "Oldest waiting",
    retries: "Retries",
    actions: "Actions",
    retry_now: "Retry now",
    pause: "Pause",
    resume: "Resume",
    members: "Members (directory entries)",
    valid_until: "Valid until",
    certificates: "Certificates and CRLs of the relay",
    mailboxes: "Messages in mailboxes",
    refreshes: "This page updates itself when something changes (every 10 seconds without JavaScript).",
    fetch_verify: "Fetch new entries and verify",
    checkpoints: "Checkpoint history",
    verification: "Verification",
    verified: "verified",
    not_verified: "not verified",
    cosignatures: "Witness cosignatures",
    cosignatures_supplied: "Cosignatures supplied by the relay",
    cosigned_by: "cosigned by",
    cosig_verified: "(verified)",
    cosig_not_verified: "cosignature NOT verified",
    cosig_missing: "cosignature missing",
    no_witness_keys: "No witness keys: cosignatures are shown but not verified. Start the console with --witness VKEY (repeatable) and --require-witnesses N.",
    latest_checkpoint: "Latest checkpoint",
    log_signature: "Log signature",
    ok: "OK",
    required_witnesses: "Required witness cosignatures",
    not_opened: "not opened yet",
    cannot_open: "cannot open",
    too_large_to_preview: "sealed: too large to preview, open to see",
    attachments_label: "attachments",
    entries: "Entries",
    filter: "Filter",
    since: "From (YYYY-MM-DD)",
    until: "To (YYYY-MM-DD)",
    msg_id: "Message id",
    time: "Time",
    hop: "Hop",
    detail: "Detail",
    per_day: "Records per day",
    export_jsonl: "Export JSON lines",
    export_csv: "Export CSV",
    no_log: "No log fetched yet: use the button above.",
    no_key: "No log verifier key: start the console with --audit-key (or FOCAL_AUDIT_KEY).",
    error: "Error",
    no_view: "This certificate's role has no console view.",
    shown_of: "entries shown of",
    late_by: "Late by",
    waiting_for: "Waiting for",
    direction: "Direction",
    media_type: "Type",
    sha256: "SHA-256",
    audit_log_size: "Audit log",
    address: "Address",
    law_enforcement: "Law enforcement",
    yes: "yes",
    no: "no",
    log: "Log",
    consistency: "Consistency",
    root: "Root",
    signatures: "Signatures",
    day: "Day",
    records: "Records",
    messages: "Messages",
    refusals: "Refusals",
    sender: "sender",
    recipients: "recipients",
    first_verification: "first verification of this directory",
    extends_size: "consistent with the checkpoint accepted before, of size",
    signatures_checked: "checkpoint signatures checked",
    reported_links: "Links between other networks, as their relays report them",
    source: "Source",
    reported_by: "as reported by",
    ago: "ago",
    progress: "Progress",
    uploading_to_console: "Uploading to the console",
    sealing: "Sealing",
    sending_to_relay: "Sending to the relay",
    relay_storing: "The relay is checking and storing it",
    upload_failed: "The console did not answer; nothing was sent by this page. Try again.",
};

/// The strings of the console's language (English only, for now).
pub fn strings() -> &'static Strings {
    &EN
}
