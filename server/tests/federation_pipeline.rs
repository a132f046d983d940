//! Pipelined transfer streams between two real relays over QUIC on
//! loopback: several envelopes on one stream are handed to the receiver in
//! order and answered in order; an early answer skips a small rest of its
//! payload and the stream goes on; after an immediate RETRY, or an early
//! answer that leaves a large rest, the receiver reads no further and the
//! envelopes behind get no answer (the sender retries them).

mod federation_support;

use federation_support::*;
use focal_proto::pb;
use focal_relay::federation::{SKIP_MAX, TransferAcks, TransferWriter};

fn tags(got: &[Received]) -> Vec<String> {
    got.iter().map(|r| String::from_utf8_lossy(&r.context).into_owned()).collect()
}

async fn answer(acks: &mut TransferAcks) -> (String, pb::TransferStatus) {
    let a = acks.next_ack().await.expect("an answer");
    (String::from_utf8_lossy(&a.msg_id).into_owned(), a.status())
}

async fn write(w: &mut TransferWriter, tag: &str, len: u64) {
    w.send_envelope(header(tag, len), PatternReader::new(len)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_on_one_stream_are_handled_and_answered_in_order() {
    init();
    let Pair { gfp, carin, .. } = Pair::start(tuning()).await;
    let to_gfp = carin.fed.link("relay-gfp").unwrap();

    // Four envelopes back to back, one a duplicate whose 200 KB the
    // receiver skips; all written before any answer is read.
    let (mut w, mut acks) = to_gfp.open_transfer_stream().await.unwrap().split();
    write(&mut w, "p-0", 1000).await;
    write(&mut w, "dup-1", 200_000).await;
    write(&mut w, "p-2", 0).await;
    write(&mut w, "p-3", 70_000).await;
    assert_eq!(answer(&mut acks).await, ("p-0".into(), pb::TransferStatus::Stored));
    assert_eq!(answer(&mut acks).await, ("dup-1".into(), pb::TransferStatus::Duplicate));
    assert_eq!(answer(&mut acks).await, ("p-2".into(), pb::TransferStatus::Stored));
    assert_eq!(answer(&mut acks).await, ("p-3".into(), pb::TransferStatus::Stored));
    let got = gfp.handler.envelopes();
    assert_eq!(tags(&got), ["p-0", "p-2", "p-3"], "handed over in stream order");
    assert!(got.iter().all(|r| r.complete && r.sha256 == pattern_sha256(r.size)));
    assert_eq!(got[2].size, 70_000);

    // After an immediate RETRY nothing more of the stream is handled.
    write(&mut w, "retry-4", 500).await;
    let _ = w.send_envelope(header("p-5", 500), PatternReader::new(500)).await;
    w.finish();
    assert_eq!(answer(&mut acks).await, ("retry-4".into(), pb::TransferStatus::Retry));
    let err = acks.next_ack().await.unwrap_err();
    assert!(err.to_string().contains("ended before this answer"), "{err}");
    assert_eq!(tags(&gfp.handler.envelopes()), ["p-0", "p-2", "p-3"], "p-5 never handed over");

    // An early answer that leaves more than SKIP_MAX unread ends the stream.
    let (mut w, mut acks) = to_gfp.open_transfer_stream().await.unwrap().split();
    let big = SKIP_MAX * 3;
    let writing = tokio::spawn(async move {
        let first = w.send_envelope(header("dup-6", big), PatternReader::new(big)).await;
        let second = w.send_envelope(header("p-7", 10), PatternReader::new(10)).await;
        (first, second)
    });
    assert_eq!(answer(&mut acks).await, ("dup-6".into(), pb::TransferStatus::Duplicate));
    assert!(acks.next_ack().await.is_err(), "no answer for p-7");
    let (_, second) = writing.await.unwrap();
    assert!(second.is_err(), "the receiver stopped reading");
    assert_eq!(tags(&gfp.handler.envelopes()), ["p-0", "p-2", "p-3"]);

    // The link is fine afterwards: a one-envelope stream as before.
    let ack = to_gfp.send_envelope(header("p-8", 3000), PatternReader::new(3000)).await.unwrap();
    assert_eq!(ack.status(), pb::TransferStatus::Stored);
}
