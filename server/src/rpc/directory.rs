//! `Directory`: focal points publish their signed entry (X25519 key bound to
//! their identity key); any authenticated member of the network looks
//! entries up. Other networks' directories are reached through the
//! federation (`Routes::remote_directory`: the next hop's relay answers,
//! entries are verified here and cached); no route: FAILED_PRECONDITION.

use focal_proto::{Address, pb};
use tonic::{Request, Status};

use super::Shared;
use crate::route::route_remote;

pub(super) async fn publish(
    shared: &Shared,
    req: Request<pb::DirectoryEntry>,
) -> Result<pb::PublishResponse, Status> {
    let caller = super::require_fp(&req, "publish directory entries")?;
    let entry = req.into_inner();
    let verified =
        focal_certs::verify_directory_entry(&shared.trust.current(), &entry, std::time::SystemTime::now())
            .map_err(|e| Status::invalid_argument(format!("directory entry: {e}")))?;
    if verified.address != caller.address() {
        return Err(Status::permission_denied(format!(
            "directory entry is for {}, but the caller is {}",
            verified.address,
            caller.address()
        )));
    }
    shared.store.publish(verified.address.clone(), entry, verified.body.key_serial).await?;
    tracing::info!(address = %verified.address, key_serial = verified.body.key_serial, "directory entry published");
    Ok(pb::PublishResponse {})
}

pub(super) async fn lookup(
    shared: &Shared,
    req: Request<pb::LookupRequest>,
) -> Result<pb::DirectoryEntry, Status> {
    crate::peer::caller(&req)?;
    let address = Address::parse(&req.get_ref().address)
        .map_err(|e| Status::invalid_argument(format!("address: {e}")))?;
    if address.is_broadcast() {
        return Err(Status::invalid_argument(format!(
            "address: {address} names a whole network; use ListMembers"
        )));
    }
    if address.network() != &shared.config.network {
        // A directory query through the federation, answered by the
        // network's own relay, verified here and cached.
        if let Err(e) = route_remote(&shared.routes, address.network()) {
            return Err(Status::failed_precondition(e.to_string()));
        }
        return match shared.routes.remote_directory(&address).await {
            Ok(v) => v
                .into_iter()
                .next()
                .ok_or_else(|| Status::not_found(format!("no directory entry for {address}"))),
            Err(e) if e == "not found" => Err(Status::not_found(format!("no directory entry for {address}"))),
            Err(e) => Err(Status::unavailable(e)),
        };
    }
    shared
        .store
        .directory_entry(&address)?
        .map(|e| crate::core::escalation::annotate(&shared.config, &address, e))
        .ok_or_else(|| Status::not_found(format!("no directory entry for {address}")))
}

pub(super) async fn list_members(
    shared: &Shared,
    req: Request<pb::ListMembersRequest>,
) -> Result<pb::ListMembersResponse, Status> {
    crate::peer::caller(&req)?;
    let net = &req.get_ref().network;
    if !net.is_empty() && net != shared.config.network.as_str() {
        let network = focal_proto::NetworkId::new(net)
            .map_err(|e| Status::invalid_argument(format!("network: {e}")))?;
        if let Err(e) = route_remote(&shared.routes, &network) {
            return Err(Status::failed_precondition(e.to_string()));
        }
        let all = Address::parse(&format!("*@{network}"))
            .map_err(|e| Status::invalid_argument(format!("network: {e}")))?;
        return match shared.routes.remote_directory(&all).await {
            Ok(entries) => Ok(pb::ListMembersResponse { entries }),
            Err(e) if e == "not found" => Ok(pb::ListMembersResponse { entries: vec![] }),
            Err(e) => Err(Status::unavailable(e)),
        };
    }
    Ok(pb::ListMembersResponse { entries: shared.store.directory(100_000)? })
}
