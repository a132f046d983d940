//! `focal-relay`: runs a relay node, checks a config, or runs the demo federation.
fn main() {}
