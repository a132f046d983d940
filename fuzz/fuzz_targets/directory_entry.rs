//! Directory entries: arbitrary bytes prost-decoded as `pb::DirectoryEntry`
//! and verified with `focal_certs::verify_directory_entry` against a trust
//! store holding one generated CA (made once per process).
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use focal_certs::{NetworkCa, TrustBundle, TrustStore, verify_directory_entry};
use focal_proto::{NetworkId, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn store() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let ca = NetworkCa::generate(&NetworkId::new("carin").unwrap(), 30).unwrap();
        let mut bundle = TrustBundle::default();
        bundle.insert(ca.network().clone(), ca.cert_der());
        TrustStore::new(bundle, vec![]).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = pb::DirectoryEntry::decode(data) {
        let _ = verify_directory_entry(
            store(),
            &entry,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
    }
});
