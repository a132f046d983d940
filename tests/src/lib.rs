//! Test harness: builders that start whole Focal federations on loopback.
