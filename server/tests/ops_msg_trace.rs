//! One message's path in the logs: two real `focal-relay` processes
//! (carin and arinsa, federation peers) run with `--log-format json`; a
//! message from alice@carin to bob@arinsa is sent, forwarded, received,
//! fetched and acknowledged, and the msg id (hex) is found in the `message`
//! span of the log lines of each stage: `send` and `transfer_out` on carin,
//! `transfer_in`, `fetch` and `ack` on arinsa. The payload never appears.

mod common;
mod ops_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ops_support::*;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(90);

/// A relay child process whose JSON log lines are collected.
struct JsonRelay {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl JsonRelay {
    fn spawn(config: &Path) -> JsonRelay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_focal-relay"))
            .args(["run", "--log-format", "json", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        JsonRelay { child, lines }
    }

    /// Waits for a log line matching `pred`; returns it.
    async fn wait_line(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no log line {what}; got:\n{:#?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn grpc_addr(&self) -> SocketAddr {
        let v = self
            .wait_line("focal-relay listening", |v| message(v).starts_with("focal-relay listening"))
            .await;
        // "focal-relay listening grpc=127.0.0.1:PORT federation=..."
        let m = message(&v);
        m.split("grpc=").nth(1).and_then(|s| s.split_whitespace().next()).expect("grpc=").parse().unwrap()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

/// True if the line was logged inside the `message` span of `msg_id` at `stage`.
fn in_message_span(v: &Value, msg_id: &str, stage: &str) -> bool {
    v["spans"].as_array().is_some_and(|spans| {
        spans.iter().any(|s| s["name"] == "message" && s["msg_id"] == msg_id && s["stage"] == stage)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_messages_path_is_found_by_its_msg_id_in_json_logs() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let (pc, pa) = (free_udp_port(), free_udp_port());
    let (dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let carin = JsonRelay::spawn(&fed_config(&pki, "carin", dc.path(), pc, "arinsa", pa));
    let arinsa = JsonRelay::spawn(&fed_config(&pki, "arinsa", da.path(), pa, "carin", pc));
    let (carin_addr, arinsa_addr) = (carin.grpc_addr().await, arinsa.grpc_addr().await);

    let alice = Fp::connect(&pki, "carin", "alice", carin_addr).await;
    let bob = Fp::connect(&pki, "arinsa", "bob", arinsa_addr).await;
    let payload = b"SECRET-PAYLOAD-MARKER sealed bytes stand-in".to_vec();
    let (_, h) = alice.send(&["bob@arinsa"], &payload).await.unwrap();
    let id = msg_id(&h);
    let start = Instant::now();
    while !bob.inbox().await.iter().any(|m| m.header.as_ref().map(msg_id) == Some(id.clone())) {
        assert!(start.elapsed() < DEADLINE, "message not delivered to bob@arinsa");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (header, _) = bob.fetch("alice@carin", &id, 0).await.unwrap();
    bob.ack(&header, bob.delivered(&header)).await.unwrap();

    let hex_id = hex::encode(&id);
    let send =
        carin.wait_line("send", |v| in_message_span(v, &hex_id, "send") && message(v) == "accepted").await;
    let out = carin
        .wait_line("transfer_out", |v| {
            in_message_span(v, &hex_id, "transfer_out") && message(v) == "transfer to peer"
        })
        .await;
    let inn = arinsa
        .wait_line("transfer_in", |v| {
            in_message_span(v, &hex_id, "transfer_in") && message(v) == "envelope received"
        })
        .await;
    let fetch = arinsa
        .wait_line("fetch", |v| in_message_span(v, &hex_id, "fetch") && message(v).starts_with("delivering"))
        .await;
    let ack =
        arinsa.wait_line("ack", |v| in_message_span(v, &hex_id, "ack") && message(v) == "acknowledged").await;
    tracing::info!(%send, %out, %inn, %fetch, %ack, "the message's path");

    for relay in [&carin, &arinsa] {
        let lines = relay.lines.lock().unwrap();
        assert!(
            !lines.iter().any(|v| v.to_string().contains("SECRET-PAYLOAD-MARKER")),
            "content in the logs"
        );
    }
    carin.stop();
    arinsa.stop();
}
