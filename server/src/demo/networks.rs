//! The demo federation's networks: ids, names and the hub, read from the
//! public facts in `networks.toml` (a copy of `shared/networks.toml`,
//! embedded at build time), and the synthetic focal points enrolled in each.
//!
//! Focal-point names are synthetic: `fp-<jurisdiction>-<agency kind>`,
//! jurisdictions and agency types only, never people.

use focal_proto::NetworkId;
use serde::Deserialize;

use super::DemoError;

/// The embedded network list.
pub const NETWORKS_TOML: &str = include_str!("networks.toml");

/// Synthetic focal points per network (the first of CARIN sends, the first
/// of ARINSA answers).
const MEMBERS: &[(&str, &[&str])] = &[
    ("gfp", &["fp-ch-fedpol", "fp-fr-agrasc"]),
    ("carin", &["fp-nl-fiod", "fp-be-ocsc", "fp-de-bka"]),
    ("arinsa", &["fp-za-npa", "fp-bw-dcec", "fp-mw-acb"]),
    ("arin-wa", &["fp-ng-efcc", "fp-gh-eoco"]),
    ("arin-ea", &["fp-ke-ara", "fp-ug-dpp"]),
    ("arin-ap", &["fp-kr-spo", "fp-jp-npa"]),
    ("arin-carib", &["fp-bb-aru", "fp-jm-fid"]),
    ("rrag", &["fp-cr-ici", "fp-ar-pgn"]),
];

/// One network of the demo.
#[derive(Clone, Debug)]
pub struct DemoNetwork {
    /// Network id.
    pub id: NetworkId,
    /// Full name, as published.
    pub name: String,
    /// True for the hub (default route of every other network).
    pub hub: bool,
    /// Names of its synthetic focal points.
    pub members: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    network: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    name: String,
    #[serde(default)]
    role: Option<String>,
}

/// Parses the embedded list: every id valid, exactly one hub.
pub fn load() -> Result<Vec<DemoNetwork>, DemoError> {
    parse(NETWORKS_TOML)
}

/// Parses a network list in the format of `shared/networks.toml`.
pub fn parse(text: &str) -> Result<Vec<DemoNetwork>, DemoError> {
    let step = "reading the embedded networks.toml";
    let file: File = toml::from_str(text).map_err(|e| DemoError::new(step, e))?;
    let mut out = Vec::new();
    for e in file.network {
        let id = NetworkId::new(&e.id)
            .map_err(|err| DemoError::new(step, format!("network {:?}: {err}", e.id)))?;
        let members = MEMBERS
            .iter()
            .find(|(n, _)| *n == e.id)
            .map(|(_, m)| m.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_else(|| vec!["fp-1".to_owned(), "fp-2".to_owned()]);
        out.push(DemoNetwork { id, name: e.name, hub: e.role.as_deref() == Some("hub"), members });
    }
    let hubs = out.iter().filter(|n| n.hub).count();
    if hubs != 1 {
        return Err(DemoError::new(
            step,
            format!("exactly one network must have role = \"hub\"; found {hubs}"),
        ));
    }
    for needed in ["carin", "arinsa"] {
        if !out.iter().any(|n| n.id.as_str() == needed) {
            return Err(DemoError::new(
                step,
                format!("network {needed} is missing (the demo sends between carin and arinsa)"),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_has_eight_networks_and_gfp_as_hub() {
        let nets = load().unwrap();
        assert_eq!(nets.len(), 8);
        let hub: Vec<_> = nets.iter().filter(|n| n.hub).map(|n| n.id.as_str()).collect();
        assert_eq!(hub, ["gfp"]);
        assert!(nets.iter().all(|n| (2..=3).contains(&n.members.len())));
        assert_eq!(nets.iter().find(|n| n.id.as_str() == "carin").unwrap().members[0], "fp-nl-fiod");
    }

    #[test]
    fn two_hubs_are_refused() {
        let text = "[[network]]\nid = \"gfp\"\nname = \"a\"\nrole = \"hub\"\n[[network]]\nid = \"carin\"\nname = \"b\"\nrole = \"hub\"\n";
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains("exactly one network"), "{e}");
    }
}
