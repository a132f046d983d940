//! Focal PKI: per-network certificate authorities, role certificates, CRLs,
//! the federation trust bundle, identity extraction, and the rustls
//! configurations shared by the gRPC and QUIC listeners.
