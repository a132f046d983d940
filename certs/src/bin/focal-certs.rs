//! `focal-certs`: the secretariat's PKI tool.
fn main() {}
