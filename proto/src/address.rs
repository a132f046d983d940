//! Addresses (`name@network`, `*@network`), network ids and roles.
//!
//! Rules (ASCII only, so that an address has exactly one spelling):
//! - a network id is 1–32 characters of `a-z`, `0-9` and `-`, starting with a
//!   letter, not ending with `-`, with no `--`;
//! - a name is 1–64 characters of `a-z`, `0-9`, `-`, `_` and `.`, starting
//!   and ending with a letter or digit; `*` alone means every member of the
//!   network (broadcast) and is only valid as a recipient;
//! - upper case is refused rather than folded, so that a signed address is the
//!   same bytes everywhere.

use std::fmt;
use std::str::FromStr;

use crate::error::{ProtoError, Result};

/// Longest network id accepted.
pub const MAX_NETWORK_LEN: usize = 32;
/// Longest name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A network id such as `carin` or `arin-wa`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkId(String);

impl NetworkId {
    /// Parses and validates a network id.
    pub fn new(s: &str) -> Result<Self> {
        const W: &str = "network id";
        if s.is_empty() {
            return Err(ProtoError::addr(W, s, "empty"));
        }
        if s.len() > MAX_NETWORK_LEN {
            return Err(ProtoError::addr(W, s, "longer than 32 characters"));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ProtoError::addr(W, s, "upper case is not allowed"));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(ProtoError::addr(W, s, "only a-z, 0-9 and '-' are allowed"));
        }
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(ProtoError::addr(W, s, "must start with a letter"));
        }
        if s.ends_with('-') || s.contains("--") {
            return Err(ProtoError::addr(W, s, "'-' must separate letters or digits"));
        }
        Ok(NetworkId(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NetworkId {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self> {
        NetworkId::new(s)
    }
}

impl TryFrom<String> for NetworkId {
    type Error = ProtoError;
    fn try_from(s: String) -> Result<Self> {
        NetworkId::new(&s)
    }
}

impl From<NetworkId> for String {
    fn from(n: NetworkId) -> String {
        n.0
    }
}

/// Validates a member or relay name (not `*`).
pub fn validate_name(s: &str) -> Result<()> {
    const W: &str = "name";
    if s.is_empty() {
        return Err(ProtoError::addr(W, s, "empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(ProtoError::addr(W, s, "longer than 64 characters"));
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ProtoError::addr(W, s, "upper case is not allowed"));
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.');
    if !s.bytes().all(ok) {
        return Err(ProtoError::addr(W, s, "only a-z, 0-9, '-', '_' and '.' are allowed"));
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(s.as_bytes()[0]) || !edge(s.as_bytes()[s.len() - 1]) {
        return Err(ProtoError::addr(W, s, "must start and end with a letter or digit"));
    }
    Ok(())
}

/// A focal-point address `name@network`, or a broadcast `*@network`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    name: String,
    network: NetworkId,
}

impl Address {
    /// Parses `name@network` or `*@network`.
    pub fn parse(s: &str) -> Result<Self> {
        let Some((name, net)) = s.split_once('@') else {
            return Err(ProtoError::addr("address", s, "missing '@' between name and network"));
        };
        if net.contains('@') {
            return Err(ProtoError::addr("address", s, "more than one '@'"));
        }
        if name.is_empty() {
            return Err(ProtoError::addr("address", s, "empty name before '@'"));
        }
        if net.is_empty() {
            return Err(ProtoError::addr("address", s, "empty network after '@'"));
        }
        let network = NetworkId::new(net)?;
        if name != "*" {
            validate_name(name)?;
        }
        Ok(Address { name: name.to_owned(), network })
    }

    /// Builds a concrete (non-broadcast) address from parts.
    pub fn new(name: &str, network: NetworkId) -> Result<Self> {
        validate_name(name)?;
        Ok(Address { name: name.to_owned(), network })
    }

    /// Parses a concrete address; refuses `*@network`.
    pub fn parse_member(s: &str) -> Result<Self> {
        let a = Address::parse(s)?;
        if a.is_broadcast() {
            return Err(ProtoError::addr("address", s, "a broadcast address is not allowed here"));
        }
        Ok(a)
    }

    /// The part before `@`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network part.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// True for `*@network`.
    pub fn is_broadcast(&self) -> bool {
        self.name == "*"
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.network)
    }
}

impl FromStr for Address {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self> {
        Address::parse(s)
    }
}

impl TryFrom<String> for Address {
    type Error = ProtoError;
    fn try_from(s: String) -> Result<Self> {
        Address::parse(&s)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

/// The role a certificate grants, from its SAN URI `focal://<network>/<role>/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A relay node of the network.
    Relay,
    /// A focal point (member).
    Fp,
    /// An auditor of the network's log.
    Auditor,
    /// A secretariat administrator.
    Admin,
}

impl Role {
    /// All roles, in a fixed order.
    pub const ALL: [Role; 4] = [Role::Relay, Role::Fp, Role::Auditor, Role::Admin];

    /// The role's name as it appears in SAN URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Fp => "fp",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "relay" => Ok(Role::Relay),
            "fp" => Ok(Role::Fp),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            "" => Err(ProtoError::addr("role", s, "empty")),
            _ if s.bytes().any(|b| b.is_ascii_uppercase()) => {
                Err(ProtoError::addr("role", s, "upper case is not allowed"))
            }
            _ => Err(ProtoError::addr("role", s, "expected relay, fp, auditor or admin")),
        }
    }
}

/// A verified identity: who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The network whose CA issued the certificate.
    pub network: NetworkId,
    /// The role granted.
    pub role: Role,
    /// The holder's name within the network.
    pub name: String,
}

impl Identity {
    /// Builds an identity, validating the name.
    pub fn new(network: NetworkId, role: Role, name: &str) -> Result<Self> {
        validate_name(name)?;
        Ok(Identity { network, role, name: name.to_owned() })
    }

    /// Parses a SAN URI `focal://<network>/<role>/<name>`.
    pub fn from_uri(uri: &str) -> Result<Self> {
        const W: &str = "identity URI";
        let Some(rest) = uri.strip_prefix("focal://") else {
            return Err(ProtoError::addr(W, uri, "must start with focal://"));
        };
        let mut parts = rest.split('/');
        let (Some(net), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ProtoError::addr(W, uri, "expected focal://<network>/<role>/<name>"));
        };
        Identity::new(NetworkId::new(net)?, role.parse()?, name)
    }

    /// The SAN URI of this identity.
    pub fn uri(&self) -> String {
        format!("focal://{}/{}/{}", self.network, self.role, self.name)
    }

    /// The member address `name@network` (meaningful for focal points).
    pub fn address(&self) -> Address {
        Address { name: self.name.clone(), network: self.network.clone() }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_addresses() {
        let a = Address::parse("nl-fiod@carin").unwrap();
        assert_eq!(a.name(), "nl-fiod");
        assert_eq!(a.network().as_str(), "carin");
        assert!(!a.is_broadcast());
        assert!(Address::parse("*@arinsa").unwrap().is_broadcast());
        assert_eq!(Address::parse("secretariat@arin-carib").unwrap().to_string(), "secretariat@arin-carib");
        assert!(Address::parse("a.b_c-9@gfp").is_ok());
    }

    #[test]
    fn refuses_bad_addresses_with_reason() {
        let cases = [
            ("", "missing '@'"),
            ("carin", "missing '@'"),
            ("@carin", "empty name"),
            ("x@", "empty network"),
            ("a@b@c", "more than one"),
            ("NL@carin", "upper case"),
            ("nl@CARIN", "upper case"),
            ("n l@carin", "only a-z"),
            ("nl@car_in", "only a-z"),
            ("-nl@carin", "start and end"),
            ("nl.@carin", "start and end"),
            ("nl@1carin", "start with a letter"),
            ("nl@carin-", "'-' must separate"),
            ("nl@ca--rin", "'-' must separate"),
            ("é@carin", "only a-z"),
        ];
        for (input, want) in cases {
            let err = Address::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let long_name = format!("{}@carin", "a".repeat(65));
        assert!(Address::parse(&long_name).unwrap_err().to_string().contains("longer than 64"));
        let long_net = format!("a@{}", "a".repeat(33));
        assert!(Address::parse(&long_net).unwrap_err().to_string().contains("longer than 32"));
        assert!(Address::parse_member("*@carin").is_err());
    }

    #[test]
    fn roles_and_identity_uris() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("Relay".parse::<Role>().unwrap_err().to_string().contains("upper case"));
        assert!("root".parse::<Role>().is_err());
        let id = Identity::from_uri("focal://carin/fp/nl-fiod").unwrap();
        assert_eq!(id.role, Role::Fp);
        assert_eq!(id.address().to_string(), "nl-fiod@carin");
        assert_eq!(id.uri(), "focal://carin/fp/nl-fiod");
        for bad in [
            "https://carin/fp/x",
            "focal://carin/fp",
            "focal://carin/fp/x/y",
            "focal://CARIN/fp/x",
            "focal://carin/boss/x",
            "focal://carin/fp/",
        ] {
            assert!(Identity::from_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let a: Address = serde_json::from_str("\"x@gfp\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"x@gfp\"");
        assert!(serde_json::from_str::<Address>("\"X@gfp\"").is_err());
    }
}
