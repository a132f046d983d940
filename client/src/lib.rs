//! Focal client library.
