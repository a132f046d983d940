//! Focal client library.

pub mod audit;
