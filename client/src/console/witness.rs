//! The auditor view's model of one checkpoint: is the log's signature good,
//! and what is each witness's cosignature worth (verified against the
//! witness keys given with `focal console --witness`, not verified, or
//! missing). Pure functions over the stored note text, so unit tests drive
//! them directly; `audit::verify` separately enforces the required count.

use focal_proto::audit::{self, LogKey, WitnessKey};

/// What one witness's cosignature on a checkpoint is worth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cosig {
    /// It verifies against the configured key (witness clock, unix seconds).
    Verified(u64),
    /// There is a cosignature line, but it does not verify (why).
    NotVerified(String),
    /// A configured witness did not cosign this checkpoint.
    Missing,
}

/// A witness and its cosignature status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WitnessRow {
    /// Witness name (`focal/<network>/<relay>/witness`).
    pub(crate) witness: String,
    /// Its status.
    pub(crate) status: Cosig,
}

/// A configured witness: its verifier key text and the parsed key.
#[derive(Clone, Debug)]
pub(crate) struct Trusted {
    /// `name+id+base64`, as given.
    pub(crate) vkey: String,
    /// Parsed.
    pub(crate) key: WitnessKey,
    /// The key id (second field of `vkey`).
    pub(crate) id: u32,
}

impl Trusted {
    /// Parses a witness verifier key; the error names the key.
    pub(crate) fn parse(vkey: &str) -> Result<Trusted, String> {
        let key = WitnessKey::parse(vkey).map_err(|e| e.to_string())?;
        let id = vkey
            .trim()
            .split('+')
            .nth(1)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("witness key {vkey:?}: no key id"))?;
        Ok(Trusted { vkey: vkey.trim().to_owned(), key, id })
    }

    /// Witness name.
    pub(crate) fn name(&self) -> &str {
        self.key.witness_name()
    }
}

/// The log's own signature on `note` (Ok, or why not).
pub(crate) fn log_signature(note: &str, log_key: &LogKey) -> Result<(), String> {
    log_key.verify_checkpoint(note).map(|_| ()).map_err(|e| e.to_string())
}

/// Every configured witness's status on `note`, in the order given, then
/// every other cosigner (not verified: no key configured). The log's own
/// signature (key name `origin`) is not a cosignature and is left out.
pub(crate) fn cosignatures(note: &str, origin: &str, trusted: &[Trusted]) -> Vec<WitnessRow> {
    let lines = match audit::note_signatures(note) {
        Ok(l) => l,
        Err(e) => {
            return vec![WitnessRow { witness: "-".into(), status: Cosig::NotVerified(e.to_string()) }];
        }
    };
    let mut rows: Vec<WitnessRow> = trusted
        .iter()
        .map(|t| {
            let mine: Vec<u32> = lines.iter().filter(|(n, _)| n == t.name()).map(|(_, id)| *id).collect();
            let status = if mine.is_empty() {
                Cosig::Missing
            } else if !mine.contains(&t.id) {
                Cosig::NotVerified(format!(
                    "made with another key (key id {}; the configured key has id {:08x})",
                    mine.iter().map(|i| format!("{i:08x}")).collect::<Vec<_>>().join(", "),
                    t.id
                ))
            } else {
                match audit::verify_cosignatures(note, std::slice::from_ref(&t.key), 1) {
                    Ok(v) => Cosig::Verified(v.first().map_or(0, |c| c.timestamp)),
                    Err(e) => Cosig::NotVerified(e.to_string()),
                }
            };
            WitnessRow { witness: t.name().to_owned(), status }
        })
        .collect();
    let mut others: Vec<&str> = lines
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != origin && !trusted.iter().any(|t| t.name() == *n))
        .collect();
    others.dedup();
    rows.extend(others.into_iter().map(|n| WitnessRow {
        witness: n.to_owned(),
        status: Cosig::NotVerified("no key configured for this witness (focal console --witness)".into()),
    }));
    rows
}

#[cfg(test)]
mod tests {
    use focal_proto::audit::{Hash, NoteSigner, TreeHead, WitnessSigner, add_cosignature};

    use super::*;

    const ORIGIN: &str = "focal/carin/relay.carin";

    fn witness(name: &str) -> WitnessSigner {
        WitnessSigner::from_pkcs8(name, &NoteSigner::generate_pkcs8().unwrap()).unwrap()
    }

    /// A checkpoint of CARIN's log cosigned by `by`.
    fn cosigned(by: &[&WitnessSigner]) -> (String, LogKey) {
        let log = NoteSigner::from_pkcs8(ORIGIN, &NoteSigner::generate_pkcs8().unwrap()).unwrap();
        let mut note = log.sign_checkpoint(&TreeHead { size: 3, root: Hash([7u8; 32]) }).unwrap();
        let text = note.rsplit_once("\n\n").unwrap().0.to_owned() + "\n";
        for w in by {
            note = add_cosignature(&note, &w.cosign(&text, 1_780_000_000).unwrap()).unwrap();
        }
        (note, LogKey::parse(&log.verifier_key()).unwrap())
    }

    #[test]
    fn configured_key_verifies_a_wrong_key_does_not_and_absence_shows() {
        let arinsa = witness("focal/arinsa/relay.arinsa/witness");
        let gfp = witness("focal/gfp/relay.gfp/witness");
        let (note, log_key) = cosigned(&[&arinsa, &gfp]);
        assert_eq!(log_signature(&note, &log_key), Ok(()));

        let good = Trusted::parse(&arinsa.verifier_key()).unwrap();
        let rows = cosignatures(&note, ORIGIN, std::slice::from_ref(&good));
        assert_eq!(rows[0].witness, "focal/arinsa/relay.arinsa/witness");
        assert_eq!(rows[0].status, Cosig::Verified(1_780_000_000));
        // GFP cosigned too, but no key is configured for it: not verified.
        assert_eq!(rows[1].witness, "focal/gfp/relay.gfp/witness");
        assert!(matches!(&rows[1].status, Cosig::NotVerified(w) if w.contains("no key configured")));

        // Another key under ARINSA's witness name: NOT verified, naming both key ids.
        let impostor = witness("focal/arinsa/relay.arinsa/witness");
        let wrong = Trusted::parse(&impostor.verifier_key()).unwrap();
        let rows = cosignatures(&note, ORIGIN, &[wrong]);
        match &rows[0].status {
            Cosig::NotVerified(why) => assert!(why.contains("another key"), "{why}"),
            other => panic!("a wrong key must not verify: {other:?}"),
        }

        // A configured witness that did not cosign: missing.
        let (note, _) = cosigned(&[&gfp]);
        let rows = cosignatures(&note, ORIGIN, &[good]);
        assert_eq!(rows[0].status, Cosig::Missing);
    }

    #[test]
    fn an_altered_cosignature_does_not_verify_and_a_wrong_log_key_is_named() {
        let arinsa = witness("focal/arinsa/relay.arinsa/witness");
        let (note, _) = cosigned(&[&arinsa]);
        // Flip one character of the cosignature's base64 (same key id prefix kept).
        let (head, last) = note.trim_end().rsplit_once(' ').unwrap();
        let mut sig: Vec<char> = last.chars().collect();
        let i = sig.len() - 4;
        sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
        let altered = format!("{head} {}\n", sig.into_iter().collect::<String>());
        let rows = cosignatures(&altered, ORIGIN, &[Trusted::parse(&arinsa.verifier_key()).unwrap()]);
        assert!(matches!(&rows[0].status, Cosig::NotVerified(_)), "{rows:?}");

        let (_, other_log) = cosigned(&[]);
        assert!(log_signature(&note, &other_log).is_err());
        assert!(Trusted::parse("not-a-key").is_err());
    }
}
