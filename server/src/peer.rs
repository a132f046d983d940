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
    /// Set when the connection was refused after its handshake (too many
    /// connections of this identity, trust reloaded meanwhile): every RPC
    /// gets this code and reason until the relay closes it.
    pub refused: Option<(tonic::Code, String)>,
}

/// The caller's verified identity, or UNAUTHENTICATED if the connection
/// carried none (which the TLS layer should have made impossible).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<&Identity, tonic::Status> {
    let peer = req
        .extensions()
        .get::<PeerInfo>()
        .ok_or_else(|| tonic::Status::unauthenticated("no verified client certificate on this connection"))?;
    match &peer.refused {
        Some((code, reason)) => Err(tonic::Status::new(*code, reason.clone())),
        None => Ok(&peer.identity),
    }
}
