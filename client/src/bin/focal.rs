//! `focal`: the focal point's command-line client.
fn main() {}
