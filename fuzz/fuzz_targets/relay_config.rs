//! Relay configuration: arbitrary text parsed as TOML into `RelayConfig`
//! (the same `toml::from_str` `RelayConfig::load` uses), paths resolved
//! against a directory that does not exist, then `validate`.
#![no_main]

use std::path::Path;

use focal_relay::config::RelayConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mut config) = toml::from_str::<RelayConfig>(text) {
        config.resolve_paths(Path::new("/nonexistent/focal-fuzz"));
        let _ = config.validate();
    }
});
