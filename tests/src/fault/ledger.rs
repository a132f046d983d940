//! [`Ledger`]: every message a test tried to send, per sender in the order
//! sent, with what the relay answered; checked against a recipient's
//! mailbox for the delivery promise: every ACCEPTED message exactly once,
//! per-sender order kept. A send whose answer was lost (the relay killed
//! under it) may or may not have been stored: it may arrive (once, in its
//! place in the order) or not at all.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};
use focal_proto::Address;

/// What a sender learnt of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The relay answered ACCEPTED.
    Accepted,
    /// No answer (connection cut, relay killed): fate unknown to the sender.
    Unknown,
}

/// Messages sent, per sender, in order.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    senders: BTreeMap<Address, Vec<([u8; 16], Outcome)>>,
}

/// What [`Ledger::check`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// ACCEPTED messages (all delivered, once, or the check failed).
    pub accepted: usize,
    /// Sends without an answer.
    pub unknown: usize,
    /// Of those, how many were delivered (once) all the same.
    pub unknown_delivered: usize,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the next send of `sender` (call in the order sent).
    pub fn record(&mut self, sender: &Address, msg_id: [u8; 16], outcome: Outcome) {
        self.senders.entry(sender.clone()).or_default().push((msg_id, outcome));
    }

    /// Appends a sender's sends, in order.
    pub fn extend(&mut self, sender: &Address, sends: impl IntoIterator<Item = ([u8; 16], Outcome)>) {
        self.senders.entry(sender.clone()).or_default().extend(sends);
    }

    /// ACCEPTED sends so far.
    pub fn accepted(&self) -> usize {
        self.count(Outcome::Accepted)
    }

    /// Sends without an answer so far.
    pub fn unknown(&self) -> usize {
        self.count(Outcome::Unknown)
    }

    fn count(&self, o: Outcome) -> usize {
        self.senders.values().flatten().filter(|(_, x)| *x == o).count()
    }

    /// ACCEPTED messages missing from `mailbox` (sender, msg id pairs).
    pub fn missing<'a>(&self, mailbox: impl IntoIterator<Item = (&'a Address, [u8; 16])>) -> usize {
        let have: std::collections::HashSet<[u8; 16]> = mailbox.into_iter().map(|(_, id)| id).collect();
        self.senders
            .values()
            .flatten()
            .filter(|(id, o)| *o == Outcome::Accepted && !have.contains(id))
            .count()
    }

    /// Checks a recipient's whole mailbox, in mailbox order, against the
    /// ledger: nothing from a ledger sender that was never sent, nothing
    /// twice, every ACCEPTED message present, and each sender's messages
    /// in the order sent. Messages of senders not in the ledger are ignored.
    pub fn check<'a>(
        &self,
        mailbox: impl IntoIterator<Item = (&'a Address, [u8; 16])>,
    ) -> Result<DeliveryReport> {
        let mut listed: BTreeMap<&Address, Vec<[u8; 16]>> = BTreeMap::new();
        for (sender, id) in mailbox {
            if self.senders.contains_key(sender) {
                listed.entry(sender).or_default().push(id);
            }
        }
        let mut report = DeliveryReport::default();
        for (sender, sends) in &self.senders {
            let position: HashMap<[u8; 16], usize> =
                sends.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
            let mut seen = vec![false; sends.len()];
            let mut last: Option<usize> = None;
            for id in listed.get(sender).map(Vec::as_slice).unwrap_or_default() {
                let Some(&i) = position.get(id) else {
                    bail!("message {} from {sender} in the mailbox was never sent", hex::encode(id));
                };
                if seen[i] {
                    bail!("message {} from {sender} (send #{i}) is in the mailbox twice", hex::encode(id));
                }
                seen[i] = true;
                if let Some(l) = last
                    && i < l
                {
                    bail!(
                        "per-sender order broken for {sender}: send #{i} ({}) arrived after send #{l}",
                        hex::encode(id)
                    );
                }
                last = Some(i);
            }
            for (i, ((id, outcome), seen)) in sends.iter().zip(&seen).enumerate() {
                match (outcome, seen) {
                    (Outcome::Accepted, false) => {
                        bail!(
                            "ACCEPTED message {} from {sender} (send #{i}) was never delivered",
                            hex::encode(id)
                        )
                    }
                    (Outcome::Accepted, true) => report.accepted += 1,
                    (Outcome::Unknown, s) => {
                        report.unknown += 1;
                        report.unknown_delivered += usize::from(*s);
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse_member(s).expect("address")
    }

    #[test]
    fn check_finds_loss_duplicates_and_reordering() {
        let (x, y) = (a("x@carin"), a("y@carin"));
        let mut l = Ledger::new();
        l.record(&x, [1; 16], Outcome::Accepted);
        l.record(&x, [2; 16], Outcome::Unknown);
        l.record(&x, [3; 16], Outcome::Accepted);
        l.record(&y, [9; 16], Outcome::Accepted);
        let ok = [(&x, [1; 16]), (&y, [9; 16]), (&x, [2; 16]), (&x, [3; 16])];
        let r = l.check(ok).expect("valid mailbox");
        assert_eq!(r, DeliveryReport { accepted: 3, unknown: 1, unknown_delivered: 1 });
        assert!(
            l.check([(&x, [1; 16]), (&x, [3; 16]), (&y, [9; 16])]).is_ok(),
            "an unknown send may be lost"
        );
        let e = l.check([(&x, [1; 16]), (&y, [9; 16])]).unwrap_err().to_string();
        assert!(e.contains("never delivered"), "{e}");
        let e =
            l.check([(&x, [1; 16]), (&x, [1; 16]), (&x, [3; 16]), (&y, [9; 16])]).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = l.check([(&x, [3; 16]), (&x, [1; 16]), (&y, [9; 16])]).unwrap_err().to_string();
        assert!(e.contains("order"), "{e}");
        let e = l.check([(&x, [7; 16])]).unwrap_err().to_string();
        assert!(e.contains("never sent"), "{e}");
        assert_eq!(l.missing([(&x, [1; 16])]), 2);
    }
}
