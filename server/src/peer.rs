//! Who is calling: the verified identity of a gRPC caller, carried from the
//! TLS handshake into every request as tonic `ConnectInfo`.

use std::net::SocketAddr;

use focal_proto::Identity;

/// Connection info of an authenticated gRPC connection. The TLS acceptor
/// inserts it (via `tonic::transport::server::Connected`); handlers read it
/// with [`caller`].
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Identity from the verified client certificate, never from a request field.
    pub identity: Identity,
    /// Remote socket address.
    pub remote: SocketAddr,
}

/// The caller's verified identity, or UNAUTHENTICATED if the connection
/// carried none (which the TLS layer should have made impossible).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<&Identity, tonic::Status> {
    req.extensions()
        .get::<PeerInfo>()
        .map(|p| &p.identity)
        .ok_or_else(|| tonic::Status::unauthenticated("no verified client certificate on this connection"))
}
