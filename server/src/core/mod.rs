//! Relay logic without I/O: routing, policy, dedup and outbox state. Imports
//! no tokio, quinn, tonic or sled; the caller passes the current time.
