//! Every message kind round-trips with its structured request fields and
//! response deadline, sealed (the relay sees none of it).

use anyhow::Result;
use focal_client::case::kind_name;
use focal_proto::pb;
use focal_tests::Federation;

use crate::{draft, quiet, wait_and_read};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_round_trips_with_its_fields() -> Result<()> {
    let fed = Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    use pb::MessageKind as K;
    let kinds = [
        K::General,
        K::AssetTracingRequest,
        K::FreezingRequest,
        K::SpontaneousDisclosure,
        K::PreMlaConsultation,
        K::CaseCoordination,
        K::Response,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let mut d = draft(&["be-ocsc@carin"], &format!("{} {i}", kind_name(kind)), "body");
        d.kind = kind;
        d.case_ref = "CARIN-2026-0042".into();
        let fields = pb::RequestFields {
            requesting_authority: "FIOD, Netherlands".into(),
            legal_basis: format!("UNCAC art. {}", 46 + i),
            subjects: vec![
                pb::SubjectOfRequest {
                    name: "Blue Yacht BV".into(),
                    identifiers: vec!["KVK 12345678".into(), "NL91ABNA0417164300".into()],
                },
                pb::SubjectOfRequest { name: "J. Doe".into(), identifiers: vec![] },
            ],
            assets_sought: vec!["yacht 'Blue'".into(), format!("account {i}")],
            jurisdictions: vec!["BE".into(), "ZA".into()],
            deadline_ms: 1_796_169_599_999,
        };
        d.request = Some(fields.clone());
        d.response_deadline_ms = 1_796_169_599_999;
        let sent = a.send(&d, quiet()).await?;
        let opened = wait_and_read(&b, sent.msg_id, "nl-fiod@carin").await?;
        assert_eq!(opened.content.kind(), kind);
        assert_eq!(opened.content.case_ref, "CARIN-2026-0042");
        assert_eq!(opened.content.request.as_ref(), Some(&fields), "{kind:?}");
        assert_eq!(opened.content.response_deadline_ms, 1_796_169_599_999);
        let rec = b.store().received(&hex::encode(sent.msg_id), "nl-fiod@carin")?.expect("record");
        assert_eq!(rec.kind, kind_name(kind));
        let s = a.store().sent(&hex::encode(sent.msg_id))?.expect("record");
        assert_eq!((s.kind.as_str(), s.response_deadline_ms), (kind_name(kind), 1_796_169_599_999));
        b.ack_ref(&opened.info.reference()).await?;
    }
    Ok(())
}
