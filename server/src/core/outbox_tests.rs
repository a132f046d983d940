//! Unit tests of the outbox: ordering rule, urgency, window, acks, retries,
//! backoff and expiry.

use super::*;

fn a(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn env(sender: &str, n: u8, rcpts: &[&str], urgent: bool) -> OutboxItem {
    OutboxItem {
        id: ItemId::Envelope { sender: a(sender), msg_id: [n; 16] },
        recipients: rcpts.iter().map(|r| a(r)).collect(),
        urgent,
        expires_at_ms: 1_000_000,
        queued_at_ms: 0,
        size: 1_000,
    }
}

/// An outbox with the link up where every item is solo (rule 1 without
/// pipelining: items in flight never share a lane).
fn up(window: usize) -> Outbox {
    up_with(window, 0)
}

fn up_with(window: usize, pipeline_max_bytes: u64) -> Outbox {
    let cfg = OutboxConfig {
        window,
        capacity: 10_000,
        backoff: BackoffConfig { jitter_permille: 0, ..Default::default() },
        pipeline_max_bytes,
    };
    let mut o = Outbox::new("relay-arinsa", cfg, 1, 0);
    o.handle_connected(0);
    o
}

/// Sends everything (acking each at once) and returns the msg-id bytes in order.
fn drain(o: &mut Outbox) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = o.poll_transmit(0) {
        if let ItemId::Envelope { msg_id, .. } = &t.id {
            out.push(msg_id[0]);
        }
        o.handle_ack(&t.id, 0).unwrap();
    }
    out
}

#[test]
fn fifo_when_all_normal() {
    let mut o = up(4);
    for n in 1..=5 {
        o.push(env("s@carin", n, &["r@arinsa"], false)).unwrap();
    }
    assert_eq!(drain(&mut o), [1, 2, 3, 4, 5]);
    assert!(o.is_empty());
}

#[test]
fn urgent_overtakes_other_senders_and_other_recipients() {
    let mut o = up(1);
    o.push(env("a@carin", 1, &["r@arinsa"], false)).unwrap();
    o.push(env("a@carin", 2, &["r@arinsa"], false)).unwrap();
    o.push(env("b@carin", 3, &["r@arinsa"], true)).unwrap(); // other sender: overtakes
    o.push(env("a@carin", 4, &["q@arinsa"], true)).unwrap(); // same sender, other recipient: overtakes
    assert_eq!(drain(&mut o), [3, 4, 1, 2]);
}

#[test]
fn urgent_keeps_order_per_sender_and_recipient_and_pulls_its_lane() {
    let mut o = up(1);
    o.push(env("x@carin", 1, &["r@arinsa"], false)).unwrap(); // other sender's backlog
    o.push(env("a@carin", 2, &["q@arinsa"], false)).unwrap(); // a -> q
    o.push(env("a@carin", 3, &["r@arinsa", "q@arinsa"], false)).unwrap(); // a -> r, q
    o.push(env("x@carin", 4, &["r@arinsa"], false)).unwrap();
    o.push(env("a@carin", 5, &["r@arinsa"], true)).unwrap(); // urgent a -> r: waits for 3, and 3 for 2
    // 5 pulls 2 then 3 forward (priority inheritance), ahead of x's backlog.
    assert_eq!(drain(&mut o), [2, 3, 5, 1, 4]);
}

fn receipt(n: u8) -> OutboxItem {
    OutboxItem {
        id: ItemId::Receipt { id: [n; 32] },
        recipients: Vec::new(),
        urgent: false,
        expires_at_ms: 1_000_000,
        queued_at_ms: 0,
        size: 1_000,
    }
}

/// Everything `poll_transmit` yields now, as sequence numbers.
fn burst(o: &mut Outbox, now: i64) -> Vec<u64> {
    std::iter::from_fn(|| o.poll_transmit(now)).map(|t| t.seq).collect()
}

#[test]
fn window_limits_in_flight_and_disconnect_returns_in_order() {
    let mut o = up(3);
    for n in 1..=5 {
        // Five senders: five independent lanes.
        o.push(env(&format!("s{n}@carin"), n, &["r@arinsa"], false)).unwrap();
    }
    assert_eq!(burst(&mut o, 0), [1, 2, 3], "window of 3");
    assert_eq!(o.in_flight(), 3);
    let acked = o.handle_ack(&env("s1@carin", 1, &[], false).id, 0).unwrap();
    assert_eq!(acked.seq, 1);
    assert_eq!(o.poll_transmit(0).unwrap().seq, 4);
    o.handle_disconnected(0);
    assert_eq!(o.in_flight(), 0);
    assert!(o.poll_transmit(0).is_none(), "down");
    o.handle_connected(10);
    let again: Vec<(u64, u32)> =
        std::iter::from_fn(|| o.poll_transmit(10)).map(|t| (t.seq, t.attempt)).collect();
    assert_eq!(again, [(2, 2), (3, 2), (4, 2)], "back at the head, in order, second attempt");
    assert!(o.handle_ack(&ItemId::Receipt { id: [0; 32] }, 10).is_none(), "unknown ack ignored");
    // A late ack for a queued (not in-flight) item still removes it.
    assert_eq!(o.handle_ack(&env("s5@carin", 5, &[], false).id, 10).unwrap().seq, 5);
}

#[test]
fn at_most_one_item_in_flight_per_sender_and_recipient() {
    let mut o = up(8);
    o.push(env("a@carin", 1, &["r@arinsa"], false)).unwrap();
    o.push(env("a@carin", 2, &["r@arinsa"], false)).unwrap(); // behind 1
    o.push(env("b@carin", 3, &["r@arinsa"], false)).unwrap(); // other sender
    o.push(env("a@carin", 4, &["q@arinsa"], false)).unwrap(); // other recipient
    o.push(env("a@carin", 5, &["r@arinsa", "q@arinsa"], false)).unwrap(); // behind 2 and 4
    o.push(receipt(6)).unwrap(); // receipts: no constraint
    o.push(env("b@carin", 7, &["r@arinsa"], false)).unwrap(); // behind 3
    assert_eq!(burst(&mut o, 0), [1, 3, 4, 6], "one per lane, concurrently");
    assert_eq!(o.in_flight(), 4);
    o.handle_ack(&env("b@carin", 3, &[], false).id, 0).unwrap();
    assert_eq!(burst(&mut o, 0), [7], "the lane's next item once its head is acked");
    o.handle_ack(&env("a@carin", 1, &[], false).id, 0).unwrap();
    assert_eq!(burst(&mut o, 0), [2]);
    o.handle_ack(&env("a@carin", 4, &[], false).id, 0).unwrap();
    assert!(burst(&mut o, 0).is_empty(), "5 waits for 2 (a -> r) still in flight");
    o.handle_ack(&env("a@carin", 2, &[], false).id, 0).unwrap();
    assert_eq!(burst(&mut o, 0), [5]);
    o.handle_ack(&ItemId::Receipt { id: [6; 32] }, 0).unwrap();
    o.handle_ack(&env("b@carin", 7, &[], false).id, 0).unwrap();
    o.handle_ack(&env("a@carin", 5, &[], false).id, 0).unwrap();
    assert!(o.is_empty());
    assert!(o.busy.is_empty() && o.free.is_empty() && o.lanes.is_empty());
}

#[test]
fn urgent_waits_for_its_lane_in_flight_and_others_go_meanwhile() {
    let mut o = up(8);
    o.push(env("a@carin", 1, &["r@arinsa"], false)).unwrap();
    assert_eq!(burst(&mut o, 0), [1]);
    o.push(env("x@carin", 2, &["r@arinsa"], false)).unwrap();
    o.push(env("a@carin", 3, &["r@arinsa"], true)).unwrap(); // urgent, lane busy with 1
    o.push(env("x@carin", 4, &["q@arinsa"], false)).unwrap();
    assert_eq!(burst(&mut o, 0), [2, 4], "the urgent item cannot pass 1; independent lanes go");
    o.handle_ack(&env("x@carin", 2, &[], false).id, 0).unwrap();
    o.push(env("x@carin", 5, &["r@arinsa"], false)).unwrap();
    o.handle_ack(&env("a@carin", 1, &[], false).id, 0).unwrap();
    assert_eq!(burst(&mut o, 0), [3], "urgent first once its lane is free, and alone");
    o.handle_ack(&env("a@carin", 3, &[], false).id, 0).unwrap();
    assert_eq!(burst(&mut o, 0), [5], "then the rest");
}

#[test]
fn nothing_normal_starts_beside_an_urgent_item_in_flight() {
    // Rule 4: with a window, a normal item sent beside the urgent one could
    // reach the peer's store first; it waits for the urgent item's ack.
    let mut o = up(8);
    for n in 1..=3 {
        o.push(env("bulk@carin", n, &["r@arinsa"], false)).unwrap();
    }
    o.push(env("boss@carin", 9, &["r@arinsa"], true)).unwrap();
    o.push(env("bulk@carin", 4, &["q@arinsa"], false)).unwrap();
    // (burst yields sequence numbers: the urgent item is seq 4.)
    assert_eq!(burst(&mut o, 0), [4], "the urgent item goes alone");
    assert!(o.handle_retry(&env("boss@carin", 9, &[], false).id, 0));
    assert_eq!(burst(&mut o, 10_000), [4], "after a RETRY it is again first, and alone");
    o.handle_ack(&env("boss@carin", 9, &[], false).id, 10_000).unwrap();
    assert_eq!(burst(&mut o, 10_000), [1, 5], "then the normal lanes, concurrently");
}

#[test]
fn retry_returns_only_that_item_and_holds_once() {
    let mut o = up(4);
    o.push(env("s@carin", 1, &["r@arinsa"], false)).unwrap();
    o.push(env("t@carin", 2, &["r@arinsa"], false)).unwrap();
    o.push(env("s@carin", 3, &["r@arinsa"], false)).unwrap();
    assert_eq!(burst(&mut o, 0), [1, 2], "3 waits for 1");
    assert!(o.handle_retry(&env("t@carin", 2, &[], false).id, 100));
    assert_eq!(o.in_flight(), 1, "item 1 stays in flight, 2 is queued again");
    assert!(o.poll_transmit(500).is_none(), "held for one backoff step");
    assert_eq!(o.poll_timeout(), Some(1_100));
    assert!(o.is_in_flight(1, 1));
    assert!(o.handle_retry(&env("s@carin", 1, &[], false).id, 200));
    assert_eq!(o.poll_timeout(), Some(1_100), "a second RETRY of the burst does not lengthen the hold");
    let again: Vec<(u64, u32)> =
        std::iter::from_fn(|| o.poll_transmit(1_100)).map(|t| (t.seq, t.attempt)).collect();
    assert_eq!(again, [(1, 2), (2, 2)], "3 still waits for 1");
    assert!(o.is_in_flight(1, 2) && !o.is_in_flight(1, 1), "a stale attempt is not in flight");
    assert!(!o.handle_retry(&env("s@carin", 9, &[], false).id, 0));
}

#[test]
fn dial_backoff_grows_caps_and_resets_on_activity() {
    let cfg = OutboxConfig {
        backoff: BackoffConfig { jitter_permille: 0, ..Default::default() },
        ..Default::default()
    };
    let mut o = Outbox::new("relay-gfp", cfg, 9, 0);
    let mut now = 0;
    let mut gaps = Vec::new();
    for _ in 0..9 {
        assert_eq!(o.poll_timeout(), Some(now));
        assert!(o.poll_dial(now));
        assert!(!o.poll_dial(now), "one dial at a time");
        o.handle_dial_failed(now);
        let LinkState::Down { next_attempt_at_ms } = o.link() else { panic!() };
        gaps.push(next_attempt_at_ms - now);
        assert!(!o.poll_dial(next_attempt_at_ms - 1));
        now = next_attempt_at_ms;
    }
    assert_eq!(gaps, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    assert_eq!(o.status().state, "backoff");
    o.handle_peer_activity(now + 5);
    assert!(o.poll_dial(now + 5), "peer activity: dial at once");
    o.handle_connected(now + 6);
    assert_eq!(o.status().state, "connected");
    o.handle_disconnected(now + 7);
    assert_eq!(o.link(), LinkState::Down { next_attempt_at_ms: now + 1_007 }, "back to the first step");
    assert_eq!(o.status().retries, 10);
}

#[test]
fn expired_items_are_yielded_not_sent() {
    let mut o = up(4);
    let mut short = env("s@carin", 1, &["r@arinsa"], false);
    short.expires_at_ms = 50;
    o.push(short).unwrap();
    o.push(env("s@carin", 2, &["r@arinsa"], false)).unwrap();
    o.handle_disconnected(0);
    assert_eq!(o.poll_timeout(), Some(50), "expiry before the redial");
    assert!(o.poll_expired(49).is_none());
    let gone = o.poll_expired(50).unwrap();
    assert_eq!((gone.seq, gone.item.recipients.clone()), (1, vec![a("r@arinsa")]));
    assert!(o.poll_expired(50).is_none());
    assert_eq!(o.len(), 1);
    // Set aside by poll_transmit, then yielded.
    let mut p = up(4);
    let mut e = env("s@carin", 3, &["r@arinsa"], true);
    e.expires_at_ms = 10;
    p.push(e).unwrap();
    assert!(p.poll_transmit(10).is_none());
    assert_eq!(p.poll_timeout(), Some(i64::MIN));
    assert_eq!(p.poll_expired(10).unwrap().seq, 1);
}

#[test]
fn capacity_restore_pause_and_purge() {
    let cfg = OutboxConfig { capacity: 2, ..Default::default() };
    let mut o = Outbox::new("relay-gfp", cfg, 0, 0);
    o.push(env("s@carin", 1, &["r@arinsa"], false)).unwrap();
    o.push(env("s@carin", 2, &["r@arinsa"], false)).unwrap();
    assert_eq!(o.push(env("s@carin", 3, &["r@arinsa"], false)), Err(OutboxFull(2)));
    let listed: Vec<(u64, OutboxItem)> = o.items().map(|(s, i, _)| (s, i.clone())).collect();
    let mut r = Outbox::new("relay-gfp", OutboxConfig::default(), 0, 0);
    r.restore(listed.into_iter().rev());
    assert_eq!(r.push(env("s@carin", 4, &["r@arinsa"], false)).unwrap(), 3, "sequence continues");
    r.handle_connected(0);
    r.set_paused(true);
    assert!(r.poll_transmit(0).is_none());
    assert_eq!(r.status().state, "paused");
    r.set_paused(false);
    assert_eq!(r.poll_transmit(0).unwrap().seq, 1);
    let purged = r.purge(1).unwrap();
    assert_eq!((purged.removed.seq, purged.cancel), (1, Some(Cancel::Stream { stream: 1 })));
    assert_eq!(r.poll_cancel(), Some(Cancel::Stream { stream: 1 }));
    assert_eq!(r.poll_cancel(), None);
    assert_eq!(r.in_flight(), 0);
    assert_eq!(drain(&mut r), [2, 4]);
}

/// Pipelined items (the default: small envelopes) of one lane may be in
/// flight together on the current stream, in order; a RETRY moves to a new
/// stream, and the lane then waits for its items still on the old one.
#[test]
fn pipelined_items_of_one_lane_share_the_stream_in_order() {
    let mut o = up_with(8, 64 * 1024);
    for n in 1..=4 {
        o.push(env("s@carin", n, &["r@arinsa"], false)).unwrap();
    }
    let sent: Vec<Transmit> = std::iter::from_fn(|| o.poll_transmit(0)).collect();
    assert_eq!(sent.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(sent.iter().all(|t| t.pipelined && t.stream == sent[0].stream));
    // 1 stored; 2 answered RETRY: the stream changes and 3, 4 (still in
    // flight on the old stream, answered RETRY by the peer's latch) hold
    // their lane, so 5 may not start on the new stream before them.
    o.handle_ack(&sent[0].id, 0).unwrap();
    assert!(o.handle_retry(&sent[1].id, 0));
    o.push(env("s@carin", 5, &["r@arinsa"], false)).unwrap();
    o.push(env("t@carin", 6, &["r@arinsa"], false)).unwrap();
    assert!(o.poll_transmit(10_000).is_some_and(|t| t.seq == 6 && t.stream > sent[0].stream));
    assert!(o.poll_transmit(10_000).is_none(), "lane s->r waits for 3 and 4");
    assert!(o.handle_retry(&sent[2].id, 10_000));
    assert!(o.handle_retry(&sent[3].id, 10_000));
    let again: Vec<u64> = std::iter::from_fn(|| o.poll_transmit(100_000)).map(|t| t.seq).collect();
    assert_eq!(again, [2, 3, 4, 5]);
}

/// A large envelope is solo: it waits until its lanes are idle and, in
/// flight, holds them; pipelined items of other lanes go beside it.
#[test]
fn solo_items_never_share_a_lane() {
    let mut o = up_with(8, 64 * 1024);
    o.push(env("s@carin", 1, &["r@arinsa"], false)).unwrap();
    let mut big = env("s@carin", 2, &["r@arinsa"], false);
    big.size = 1 << 30;
    o.push(big).unwrap();
    o.push(env("s@carin", 3, &["r@arinsa"], false)).unwrap();
    o.push(env("t@carin", 4, &["r@arinsa"], false)).unwrap();
    let first = o.poll_transmit(0).unwrap();
    assert_eq!((first.seq, first.pipelined), (1, true));
    assert_eq!(o.poll_transmit(0).unwrap().seq, 4, "2 is solo: it waits for 1");
    assert!(o.poll_transmit(0).is_none());
    o.handle_ack(&first.id, 0).unwrap();
    let solo = o.poll_transmit(0).unwrap();
    assert_eq!((solo.seq, solo.pipelined), (2, false));
    assert!(o.poll_transmit(0).is_none(), "3 may not overtake the solo 2");
    o.handle_ack(&solo.id, 0).unwrap();
    assert_eq!(o.poll_transmit(0).unwrap().seq, 3);
}

/// Rule 4 with pipelining: normal items may follow an urgent one on the
/// same stream, never start on another.
#[test]
fn normal_items_follow_an_urgent_one_only_on_its_stream() {
    let mut o = up_with(8, 64 * 1024);
    o.push(env("s@carin", 1, &["r@arinsa"], true)).unwrap();
    o.push(env("t@carin", 2, &["q@arinsa"], false)).unwrap();
    let mut big = env("u@carin", 3, &["p@arinsa"], false);
    big.size = 1 << 30;
    o.push(big).unwrap();
    assert_eq!(o.poll_transmit(0).unwrap().seq, 1);
    assert_eq!(o.poll_transmit(0).unwrap().seq, 2, "behind the urgent one, same stream");
    assert!(o.poll_transmit(0).is_none(), "the solo 3 would race the urgent 1");
}

/// A purge takes an item out whether queued or in flight. In flight, its
/// transfer is to be cancelled: a solo one alone; a pipelined one with its
/// whole stream, whose other items in flight go back to the queue (at the
/// head of their lanes) and out again on a new stream, in order.
#[test]
fn purging_an_item_in_flight_cancels_its_transfer() {
    let mut o = up_with(8, 64 * 1024);
    for n in 1..=3 {
        o.push(env("s@carin", n, &["r@arinsa"], false)).unwrap();
    }
    let mut big = env("t@carin", 4, &["q@arinsa"], false);
    big.size = 1 << 30;
    o.push(big).unwrap();
    o.push(env("u@carin", 5, &["p@arinsa"], false)).unwrap();
    let sent: Vec<Transmit> = std::iter::from_fn(|| o.poll_transmit(0)).collect();
    assert_eq!(
        sent.iter().map(|t| (t.seq, t.pipelined)).collect::<Vec<_>>(),
        [(1, true), (2, true), (3, true), (4, false), (5, true)]
    );
    // Queued: nothing to cancel.
    o.push(env("s@carin", 6, &["r@arinsa"], false)).unwrap();
    assert_eq!(o.purge(6).unwrap().cancel, None);
    assert_eq!(o.poll_cancel(), None);
    // The solo 4: only its own transfer.
    assert_eq!(o.purge(4).unwrap().cancel, Some(Cancel::Solo { seq: 4 }));
    assert_eq!(o.in_flight(), 4);
    // The pipelined 2: its stream goes; 1, 3 and 5 come back, in order, on a new one.
    let old = sent[0].stream;
    assert_eq!(o.purge(2).unwrap().cancel, Some(Cancel::Stream { stream: old }));
    assert_eq!(o.poll_cancel(), Some(Cancel::Solo { seq: 4 }));
    assert_eq!(o.poll_cancel(), Some(Cancel::Stream { stream: old }));
    assert_eq!(o.in_flight(), 0);
    let again: Vec<Transmit> = std::iter::from_fn(|| o.poll_transmit(0)).collect();
    assert_eq!(again.iter().map(|t| (t.seq, t.attempt)).collect::<Vec<_>>(), [(1, 2), (3, 2), (5, 2)]);
    assert!(again.iter().all(|t| t.pipelined && t.stream > old));
    // A late answer from the cancelled stream: the purged item is gone; a
    // STORED for an item sent again removes it (the peer has it).
    assert_eq!(o.handle_ack(&sent[1].id, 0), None);
    assert_eq!(o.handle_ack(&sent[0].id, 0).map(|r| r.seq), Some(1));
    assert!(!o.is_in_flight(3, 1), "a stale failure of attempt 1 is ignored");
    assert!(o.get(2).is_none() && o.get(4).is_none());
}

#[test]
fn items_held_until_their_batch_is_durable_go_in_order_once_it_is() {
    let mut o = up(4);
    o.restore([(1, env("s@carin", 1, &["r@arinsa"], false))]);
    o.hold_until_durable();
    // A batch stages item 2; until its fsync only the restored item goes.
    o.push(env("s@carin", 2, &["r@arinsa"], false)).unwrap();
    let mark = o.next_seq();
    let t = o.poll_transmit(0).expect("restored items are durable");
    assert_eq!(t.seq, 1);
    o.handle_ack(&t.id, 0).unwrap();
    assert!(o.poll_transmit(0).is_none(), "item 2 is not fsynced yet");
    // The next batch (an urgent item 3) is staged before the first one's
    // fsync returns; the first one's fsync then frees item 2, but item 3
    // comes first by the ordering rules, so the outbox waits for its fsync
    // rather than reorder.
    o.push(env("t@carin", 3, &["q@arinsa"], true)).unwrap();
    o.durable_up_to(mark);
    o.durable_up_to(mark - 1); // a stale mark never takes it back
    assert!(o.poll_transmit(0).is_none(), "the urgent item ahead waits for its fsync");
    o.durable_up_to(o.next_seq());
    assert_eq!(drain(&mut o), [3, 2]);
}
