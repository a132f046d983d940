//! The `focal` command: argument parsing, dispatch to the library, and
//! output (human text, or one JSON object per line with `--json`).
//!
//! Exit codes: 0 success, 1 failure, 2 usage error. Every error is printed
//! as ONE line on stderr: `focal: error: <what went wrong>`.

mod admin;
pub(crate) mod args;
mod audit;
pub(crate) mod casework;
mod console;
mod output;
mod retention;
mod term;

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;

pub use admin::AdminCommand;
pub use args::{Cli, Command, DirectoryCommand, KeysCommand};
pub use audit::{AuditCommand, Format};
pub use console::ConsoleArgs;

use crate::client::{Client, MessageRef, PublishOptions};
use crate::error::{ClientError, Result};
use crate::keys::KeyStore;
use crate::mailbox::InboxItem;
use crate::profile::Profile;
use crate::progress::{Bars, Progress};
use crate::read::ReadOptions;
use crate::send::Draft;
use crate::util::now_ms;
use output::Out;

/// Runs `focal` with the process arguments.
pub fn main() -> ExitCode {
    main_with(std::env::args_os())
}

/// Runs `focal` with the given arguments (first = program name).
pub fn main_with<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            return match e.kind() {
                DisplayHelp | DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                DisplayHelpOnMissingArgumentOrSubcommand => {
                    fail(2, "a subcommand is required (see focal --help)")
                }
                _ => fail(2, &usage_line(&e)),
            };
        }
    };
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(1, &format!("cannot start the async runtime: {e}")),
    };
    // The console drains on Ctrl-C or SIGTERM itself. Any other command is
    // dropped at its next await, so its destructors run: a read's staging
    // directory of decrypted attachments and a send's sealed temporary file
    // are removed instead of left behind.
    let drains_itself = matches!(cli.command, Command::Console(_));
    let (interrupted_tx, interrupted) = tokio::sync::oneshot::channel::<()>();
    if !drains_itself {
        // On a worker thread, so a command busy without awaiting (a long
        // export) cannot hold the signal up: if it has not stopped 5 s
        // later, or at a second signal, the process ends anyway.
        rt.spawn(async move {
            console::shutdown_signal().await;
            let _ = interrupted_tx.send(());
            tokio::select! {
                () = console::shutdown_signal() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
            eprintln!("focal: error: interrupted; the command did not stop in time");
            std::process::exit(130);
        });
    }
    let outcome = rt.block_on(async move {
        tokio::select! {
            r = run(cli) => Some(r),
            Ok(()) = interrupted => None,
        }
    });
    match outcome {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => fail(1, &e.to_string()),
        None => {
            // Blocking work in flight (a file being hashed) is not waited for.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            fail(130, "interrupted (Ctrl-C or SIGTERM) before the command finished")
        }
    }
}

/// A clap error as one line: its text up to the usage section, without
/// the `error: ` prefix and tips, plus a hint.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        if !l.is_empty() && !l.starts_with("tip:") {
            parts.push(l);
        }
    }
    let msg = parts.join(" ");
    let msg = msg.trim_start_matches("error: ");
    let msg = if msg.is_empty() { "invalid arguments" } else { msg };
    format!("{msg} (see focal --help)")
}

fn fail(code: u8, msg: &str) -> ExitCode {
    let one_line: String = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    // Errors may quote a relay's or a peer's text: terminal-safe too.
    eprintln!("focal: error: {}", term::terminal_safe(&one_line, false));
    ExitCode::from(code)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOCAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn load_profile(cli: &Cli) -> Result<Profile> {
    let path = cli.profile.clone().unwrap_or_else(Profile::default_path);
    Profile::load(&path)
}

fn read_body(body: &args::BodyArgs) -> Result<String> {
    if let Some(text) = &body.body {
        return Ok(text.clone());
    }
    let path = body.body_file.as_ref().expect("clap requires --body or --body-file");
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map_err(|e| ClientError::io("cannot read", "stdin", e))?;
    } else {
        text =
            std::fs::read_to_string(path).map_err(|e| ClientError::io("cannot read body file", path, e))?;
    }
    Ok(text)
}

async fn resolve(
    client: &Client,
    msg_id: [u8; 16],
    from: Option<focal_proto::Address>,
) -> Result<MessageRef> {
    if let Some(sender) = from {
        return Ok(MessageRef { msg_id, sender });
    }
    let local = client.store().received_by_id(&hex::encode(msg_id))?;
    if local.len() == 1 {
        let sender = focal_proto::Address::parse(&local[0].from)?;
        return Ok(MessageRef { msg_id, sender });
    }
    Ok(client.find_message(&msg_id, None).await?.reference())
}

async fn run(cli: Cli) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let out = Out::new(cli.json);
    let progress: Arc<dyn Progress> = Arc::new(Bars::new(cli.json));
    if let Command::Audit(cmd) = &cli.command {
        let client =
            if cmd.needs_profile() { Some(Client::connect(load_profile(&cli)?).await?) } else { None };
        return audit::run(cmd, client, cli.json).await;
    }
    if let Command::Admin(cmd) = &cli.command {
        let client = Client::connect(load_profile(&cli)?).await?;
        return admin::run(cmd, &client, cli.json).await;
    }
    let profile = load_profile(&cli)?;
    retention::apply(&cli, &profile)?;
    match &cli.command {
        Command::Audit(_) | Command::Admin(_) => unreachable!("handled above"),
        Command::Console(a) => console::run(a, profile, cli.json).await?,
        Command::Keys(KeysCommand::Init { rotate }) => {
            let key = KeyStore::new(&profile.key_dir).generate(*rotate, now_ms())?;
            out.key_created(&key);
        }
        Command::Keys(KeysCommand::Prune { overlap }) => {
            let keys = KeyStore::new(&profile.key_dir);
            let removed = keys.prune(*overlap, now_ms())?;
            out.keys_pruned(&removed, &keys.all()?);
        }
        Command::Keys(KeysCommand::List) => {
            let keys = KeyStore::new(&profile.key_dir).all()?;
            out.keys(&keys);
        }
        Command::Keys(KeysCommand::Publish { display_name, not_law_enforcement, valid_for }) => {
            let client = Client::connect(profile).await?;
            let opts = PublishOptions {
                law_enforcement: !not_law_enforcement,
                display_name: display_name.clone(),
                validity: *valid_for,
            };
            let entry = client.publish_key(&opts).await?;
            let verified = focal_certs::verify_directory_entry(
                &client.trust().current(),
                &entry,
                std::time::SystemTime::now(),
            )?;
            out.published(&verified);
        }
        Command::Directory(DirectoryCommand::Lookup { address }) => {
            let client = Client::connect(profile).await?;
            let entry = client.lookup(address).await?;
            out.entry(&entry);
        }
        Command::Send(a) => {
            let client = Client::connect(profile).await?;
            let mut draft = Draft::new(a.to.clone(), a.subject.clone(), read_body(&a.body)?);
            draft.kind = a.kind;
            draft.case_ref = a.case_ref.clone();
            (draft.request, draft.response_deadline_ms) = casework::request_fields(&a.request);
            apply_options(&mut draft, &a.opts);
            let accepted = client.send(&draft, progress).await?;
            out.sent(&accepted, &draft.to);
        }
        Command::Reply(a) => {
            let client = Client::connect(profile).await?;
            let original = resolve(&client, a.msg_id, a.from.clone()).await?;
            let mut draft = crate::case::reply_draft(
                client.store(),
                client.address(),
                original,
                a.all,
                read_body(&a.body)?,
            )?;
            apply_options(&mut draft, &a.opts);
            let accepted = client.send(&draft, progress).await?;
            out.sent(&accepted, &draft.to);
        }
        Command::Forward(a) => {
            let client = Client::connect(profile).await?;
            let original = resolve(&client, a.msg_id, a.from.clone()).await?;
            let release = match &a.release {
                Some(path) => {
                    let bytes =
                        std::fs::read(path).map_err(|e| ClientError::io("cannot read release", path, e))?;
                    Some(crate::forward::decode_release(&bytes)?.0)
                }
                None => None,
            };
            let accepted = client.forward(&original, a.to.clone(), release, progress).await?;
            out.sent(&accepted, &a.to);
        }
        Command::Release(a) => {
            let client = Client::connect(profile).await?;
            let id = hex::encode(a.msg_id);
            if client.store().sent(&id)?.is_none() {
                return Err(ClientError::NotFound { what: "message sent by you", id });
            }
            let blob = client.make_release(a.msg_id, &a.networks, a.valid);
            std::fs::write(&a.out, prost::Message::encode_to_vec(&blob))
                .map_err(|e| ClientError::io("cannot write release", &a.out, e))?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"type": "release", "msg_id": id, "path": a.out,
                    "networks": a.networks.iter().map(ToString::to_string).collect::<Vec<_>>()})
                );
            } else {
                println!("release of {id} written to {}", a.out.display());
            }
        }
        Command::Case { case_ref } => {
            let store = crate::store::LocalStore::open(&profile.store_dir)?;
            let me = crate::connect::load_identity(&profile)?.0.identity.address().to_string();
            casework::thread(cli.json, case_ref, &crate::case::thread(&store, &me, case_ref)?);
        }
        Command::Overdue => {
            let store = crate::store::LocalStore::open(&profile.store_dir)?;
            casework::overdue(cli.json, &crate::case::overdue(&store, now_ms())?);
        }
        Command::Inbox { follow } => {
            let client = Client::connect(profile).await?;
            let mut stream = client.inbox(*follow).await?;
            let mut count = 0usize;
            while let Some(item) = stream.next().await {
                let item = item?;
                if let InboxItem::Message(_) = &item {
                    count += 1;
                }
                let done = matches!(item, InboxItem::ReplayDone);
                out.inbox_item(&item, *follow);
                if done && !*follow {
                    break;
                }
            }
            if !*follow {
                out.inbox_end(count);
            }
        }
        Command::Read { msg_id, from, out: dir, overwrite } => {
            let client = Client::connect(profile).await?;
            let msg = resolve(&client, *msg_id, from.clone()).await?;
            let opts = ReadOptions { out_dir: dir.clone(), overwrite: *overwrite };
            let opened = client.read(&msg, &opts, progress).await?;
            out.opened(&opened);
        }
        Command::Ack { msg_id, from } => {
            let client = Client::connect(profile).await?;
            let msg = resolve(&client, *msg_id, from.clone()).await?;
            client.ack_ref(&msg).await?;
            out.acked(&msg);
        }
        Command::Purge { older_than, dry_run } => {
            let store = crate::store::LocalStore::open(&profile.store_dir)?;
            let cutoff = crate::util::ms_ago(*older_than);
            retention::print(cli.json, &store.purge_older_than(cutoff, *dry_run)?, *dry_run);
        }
        Command::Receipts { since } => {
            let client = Client::connect(profile).await?;
            let since_ms = since.map_or(0, crate::util::ms_ago);
            let receipts = client.receipts(since_ms).await?;
            out.receipts(&receipts);
        }
    }
    Ok(())
}

fn apply_options(draft: &mut Draft, o: &args::MessageOptions) {
    draft.attachments = o.attachments.clone();
    if let Some(h) = o.handling {
        draft.handling = h;
    }
    draft.handling_restrictions = o.restrictions.clone();
    if o.urgent {
        draft.priority = focal_proto::pb::Priority::Urgent;
    }
    draft.expires_in = o.expires_in;
}
