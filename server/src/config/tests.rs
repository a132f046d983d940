//! Config loading: every refusal names the key and the reason.

use super::*;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for f in ["relay.pem", "relay.key", "bundle.toml", "crl.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        Dir { dir }
    }

    fn write(&self, extra: &str) -> PathBuf {
        let text = format!(
            r#"
network = "carin"
name = "relay-carin"
data_dir = "data"

[listen]
grpc = "127.0.0.1:0"

[tls]
cert = "relay.pem"
key = "relay.key"
trust_bundle = "bundle.toml"
crls = ["crl.pem"]
{extra}
"#
        );
        let path = self.dir.path().join("relay.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn err(&self, extra: &str) -> String {
        RelayConfig::load(&self.write(extra)).unwrap_err().to_string()
    }
}

#[test]
fn loads_and_resolves_relative_paths() {
    let d = Dir::new();
    let c = RelayConfig::load(&d.write("[limits]\nmax_message_bytes = 1000\n")).unwrap();
    assert_eq!(c.network.as_str(), "carin");
    assert_eq!(c.data_dir, d.dir.path().join("data"));
    assert_eq!(c.tls.cert, d.dir.path().join("relay.pem"));
    assert_eq!(c.tls.crls, vec![d.dir.path().join("crl.pem")]);
    assert_eq!(c.limits.max_message_bytes, 1000);
    assert_eq!(c.limits.max_connections, Limits::default().max_connections);
    assert_eq!(c.audit_origin(), "focal/carin/relay-carin");
    assert_eq!(c.relay_identity().uri(), "focal://carin/relay/relay-carin");
}

#[test]
fn zero_limits_name_the_key() {
    let d = Dir::new();
    for key in [
        "max_message_bytes",
        "max_lifetime_secs",
        "max_connections",
        "max_mailbox_messages",
        "max_store_bytes",
        "sends_per_minute",
        "write_queue_depth",
    ] {
        let e = d.err(&format!("[limits]\n{key} = 0\n"));
        assert!(e.ends_with(&format!("limits.{key}: must be > 0")), "{e}");
    }
    for (key, max) in [
        ("limits]\nwrite_queue_depth", 1u64 << 20),
        ("limits]\ninbox_live_buffer", 1 << 16),
        ("audit]\ncheckpoint_interval_secs", 86_400),
    ] {
        RelayConfig::load(&d.write(&format!("[{key} = {max}\n"))).expect("the largest value is taken");
        let e = d.err(&format!("[{key} = {}\n", max + 1));
        assert!(e.contains(&format!("must be at most {max}")), "{e}");
    }
    let e = d.err("[limits]\nmax_lifetime_secs = 10\nmax_clock_skew_secs = 20\n");
    assert!(e.contains("limits.max_clock_skew_secs: must not exceed"), "{e}");
}

#[test]
fn unreadable_files_name_the_key_and_path() {
    let d = Dir::new();
    std::fs::remove_file(d.dir.path().join("relay.pem")).unwrap();
    let e = d.err("");
    let want = format!("tls.cert: cannot read {}: No such file", d.dir.path().join("relay.pem").display());
    assert!(e.contains(&want), "{e}");
    let d = Dir::new();
    std::fs::remove_file(d.dir.path().join("crl.pem")).unwrap();
    assert!(d.err("").contains("tls.crls[0]: cannot read"));
}

#[test]
fn parse_errors_name_the_key() {
    let d = Dir::new();
    let e = d.err("[limits]\nmax_mesage_bytes = 5\n");
    assert!(e.contains("unknown field `max_mesage_bytes`"), "{e}");
    let e = d.err("[limits]\nmax_message_bytes = -5\n");
    assert!(e.contains("max_message_bytes"), "{e}");
    let e = d.err("bogus = 1\n");
    assert!(e.contains("bogus"), "{e}");

    let path = d.dir.path().join("bad.toml");
    std::fs::write(&path, "network = \"CARIN\"\nname = \"r\"\ndata_dir = \"d\"\n").unwrap();
    let e = RelayConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("network") && e.contains("upper case"), "{e}");

    let e = RelayConfig::load(&d.dir.path().join("missing.toml")).unwrap_err().to_string();
    assert!(e.contains("missing.toml: cannot read"), "{e}");
}

#[test]
fn peers_policy_and_audit_are_checked() {
    let d = Dir::new();
    let peer = |name: &str, net: &str, addr: &str, default: bool| {
        format!(
            "[[peers]]\nname = \"{name}\"\nnetwork = \"{net}\"\naddress = \"{addr}\"\ndefault_route = {default}\n"
        )
    };
    let e = d.err(&peer("relay-gfp", "carin", "127.0.0.1:1", false));
    assert!(e.contains("peers[0].network: a peer serves another network"), "{e}");
    let e = d.err(&(peer("relay-gfp", "gfp", "h:1", true) + &peer("relay-gfp", "arinsa", "h:2", false)));
    assert!(e.contains("peers[1].name: peer \"relay-gfp\" is listed twice"), "{e}");
    let e = d.err(&(peer("a", "gfp", "h:1", true) + &peer("b", "arinsa", "h:2", true)));
    assert!(e.contains("peers[1].default_route: only one peer"), "{e}");
    let e = d.err(&peer("a", "gfp", "nohost", false));
    assert!(e.contains("peers[0].address: expected host:port"), "{e}");
    let e = d.err("[policy]\noutbound_handling = [\"H1\", \"H9\"]\n");
    assert!(e.contains("policy.outbound_handling[1]: unknown handling code \"H9\""), "{e}");
    let e = d.err("[audit]\norigin = \"two words\"\n");
    assert!(e.contains("audit.origin:"), "{e}");
    let path = d.write("");
    let text = std::fs::read_to_string(&path).unwrap().replace("relay-carin", "Relay");
    std::fs::write(&path, text).unwrap();
    let e = RelayConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("name: invalid name \"Relay\": upper case"), "{e}");
}
