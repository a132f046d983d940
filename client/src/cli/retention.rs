//! Local store retention in the CLI: the profile's `retention` (or the
//! global `--retention` flag, which overrides it) is applied each time a
//! command that uses the profile starts, and `focal purge --older-than`
//! purges on demand (see [`crate::store`] for what counts as old).

use serde_json::json;

use super::args::{Cli, Command, KeysCommand};
use crate::error::Result;
use crate::profile::Profile;
use crate::store::{LocalStore, PurgeReport};

/// Purges records older than the configured retention, if any (not before
/// `focal keys init`, which may run before the store is wanted).
pub(super) fn apply(cli: &Cli, profile: &Profile) -> Result<()> {
    let retention = cli.retention.or(profile.retention);
    if retention.is_none() || matches!(cli.command, Command::Keys(KeysCommand::Init { .. })) {
        return Ok(());
    }
    let (_, purged) = LocalStore::open_with_retention(&profile.store_dir, retention)?;
    if purged.total() > 0 {
        tracing::info!(
            sent = purged.sent,
            received = purged.received,
            receipts = purged.receipts,
            "local records past retention purged"
        );
    }
    Ok(())
}

/// Prints what `focal purge` removed (or would remove, with --dry-run).
pub(super) fn print(json_out: bool, r: &PurgeReport, dry_run: bool) {
    if json_out {
        let v = json!({
            "event": "purged",
            "dry_run": dry_run,
            "sent": r.sent,
            "received": r.received,
            "receipts": r.receipts,
        });
        println!("{v}");
    } else {
        let verb = if dry_run { "would purge" } else { "purged" };
        println!(
            "{verb} {} record(s): {} sent, {} read, {} receipt(s)",
            r.total(),
            r.sent,
            r.received,
            r.receipts
        );
    }
}
