//! The Focal relay.
