#!/usr/bin/env bash
# Performs the operator steps of deploy/OPERATIONS.md with the real binaries,
# on loopback, in a scratch directory: two secretariats (gfp, carin) each
# create their CA and relay certificate, exchange CA certificates, configure
# each other as peers, check and start their relays; carin adds a member,
# revokes it (CRL + SIGHUP), and backs up and restores its data directory.
#
# Usage: deploy/operator-walkthrough.sh [WORKDIR]
#   FOCAL_RELAY, FOCAL_CERTS  paths of the binaries (default: from PATH)
#   KEEP=1                    keep WORKDIR (default: removed at the end if created here)
# Needs: bash, openssl 3 and xxd (stand in for a member's client), curl, tar.
# Exits 0 only if every step did what the guide says it does.
set -euo pipefail

RELAY=${FOCAL_RELAY:-focal-relay}
CERTS=${FOCAL_CERTS:-focal-certs}
if [[ $# -ge 1 ]]; then W=$1; mkdir -p "$W"; CREATED=0; else W=$(mktemp -d); CREATED=1; fi
W=$(cd "$W" && pwd)
PIDS=()

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'walkthrough FAILED: %s\n' "$*" >&2; exit 1; }
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $CREATED == 1 && ${KEEP:-0} != 1 ]]; then rm -rf "$W"; fi
}
trap cleanup EXIT

# wait_log FILE PATTERN: until a line of FILE matches PATTERN (30 s).
wait_log() {
  for _ in $(seq 300); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "--- $1"; cat "$1" >&2 || true
  fail "no line matching '$2' in $1"
}
# free_port: an unused loopback port (UDP and TCP free at the time of asking).
free_port() {
  local p
  while :; do
    p=$(( (RANDOM << 1 | RANDOM & 1) % 20000 + 30000 ))
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { echo "$p"; return; }
  done
}
# metric URL NAME: the value of a sample on a metrics page.
metric() { curl -fsS "$1" | awk -v n="$2" '$1 == n { print $2 }'; }
# pkcs8v1 KEY OUT: OpenSSL 3.0 reads only PKCS#8 v1 Ed25519 keys; focal-certs
# writes v2 (with the public key): keep the 32-byte seed under a v1 header.
pkcs8v1() {
  { echo "-----BEGIN PRIVATE KEY-----"
    { printf 302e020100300506032b657004220420
      grep -v -- ----- "$1" | openssl base64 -d | xxd -p | tr -d '\n' | cut -c33-96
    } | xxd -r -p | openssl base64
    echo "-----END PRIVATE KEY-----"; } >"$2"
}
# handshake NAME: a carin member's TLS handshake with the carin relay (openssl
# stands in for its `focal` client).
handshake() {
  pkcs8v1 "$CARIN/pki/carin/fp-$1.key" "$W/$1.v1.key"
  openssl s_client -connect "$CARIN_GRPC" -tls1_3 -alpn h2 -servername localhost \
    -cert "$CARIN/pki/carin/fp-$1.pem" -key "$W/$1.v1.key" \
    -CAfile "$CARIN/pki/carin/ca.pem" </dev/null >/dev/null 2>&1 || true
}

GFP=$W/gfp-secretariat
CARIN=$W/carin-secretariat
mkdir -p "$GFP" "$CARIN"

step "1. each secretariat creates its network CA"
"$CERTS" init-network gfp --dir "$GFP/pki"
"$CERTS" init-network carin --dir "$CARIN/pki"

step "2. each issues its relay certificate (DNS/IP names the peers dial)"
"$CERTS" issue --network gfp --role relay --name relay-gfp --dns localhost --ip 127.0.0.1 --dir "$GFP/pki"
"$CERTS" issue --network carin --role relay --name relay-carin --dns localhost --ip 127.0.0.1 --dir "$CARIN/pki"
"$CERTS" crl --network gfp --dir "$GFP/pki"
"$CERTS" crl --network carin --dir "$CARIN/pki"

step "3. they exchange CA certificates (and CRLs) and build their trust bundles"
mkdir -p "$GFP/pki/carin" "$CARIN/pki/gfp" "$GFP/peer-crls" "$CARIN/peer-crls"
cp "$CARIN/pki/carin/ca.pem" "$GFP/pki/carin/ca.pem"
cp "$GFP/pki/gfp/ca.pem" "$CARIN/pki/gfp/ca.pem"
cp "$CARIN/pki/carin/crl.pem" "$GFP/peer-crls/carin.pem"
cp "$GFP/pki/gfp/crl.pem" "$CARIN/peer-crls/gfp.pem"
"$CERTS" bundle --dir "$GFP/pki" --out "$GFP/bundle.toml"
"$CERTS" bundle --dir "$CARIN/pki" --out "$CARIN/bundle.toml"

step "4. each adds the other as a peer in its relay config"
GFP_FED=$(free_port); CARIN_FED=$(free_port)
write_config() { # DIR NET NAME FED_PORT PEER_NET PEER_NAME PEER_PORT DEFAULT_ROUTE PEER_CRL
  cat >"$1/relay.toml" <<EOF
network = "$2"
name = "$3"
data_dir = "data"

[listen]
grpc = "127.0.0.1:0"
federation = "127.0.0.1:$4"
metrics = "127.0.0.1:0"

[tls]
cert = "pki/$2/relay-$3.pem"
key = "pki/$2/relay-$3.key"
trust_bundle = "bundle.toml"
crls = ["pki/$2/crl.pem", "peer-crls/$9.pem"]

[[peers]]
name = "$6"
network = "$5"
address = "127.0.0.1:$7"
default_route = $8
EOF
}
write_config "$GFP" gfp relay-gfp "$GFP_FED" carin relay-carin "$CARIN_FED" false carin
write_config "$CARIN" carin relay-carin "$CARIN_FED" gfp relay-gfp "$GFP_FED" true gfp

step "5. check the configs, then start the relays"
"$RELAY" check --config "$GFP/relay.toml"
"$RELAY" check --config "$CARIN/relay.toml"
start() { # DIR
  : >"$1/relay.log"
  NO_COLOR=1 RUST_LOG=info "$RELAY" run --config "$1/relay.toml" 2>>"$1/relay.log" &
  PIDS+=($!)
  echo $! >"$1/relay.pid"
  wait_log "$1/relay.log" "focal-relay listening grpc="
  wait_log "$1/relay.log" "metrics listening on"
}
start "$GFP"
start "$CARIN"
CARIN_GRPC=$(grep -o 'listening grpc=[0-9.:]*' "$CARIN/relay.log" | tail -1 | cut -d= -f2)
CARIN_METRICS=$(grep -o 'metrics listening on http://[0-9.:]*/metrics' "$CARIN/relay.log" | tail -1 | cut -d' ' -f4)
echo "carin relay: grpc $CARIN_GRPC, metrics $CARIN_METRICS"

step "6. adding a member: issue its certificate; it connects"
"$CERTS" issue --network carin --role fp --name nl-fiod --dir "$CARIN/pki"
handshake nl-fiod
wait_log "$CARIN/relay.log" "nl-fiod.*connection authenticated"
echo "nl-fiod@carin authenticated"

step "7. revoking a member: revoke, publish the CRL, reload (SIGHUP)"
"$CERTS" revoke --network carin --role fp --name nl-fiod --dir "$CARIN/pki"
"$CERTS" crl --network carin --dir "$CARIN/pki"
kill -HUP "$(cat "$CARIN/relay.pid")"
wait_log "$CARIN/relay.log" "reload complete"
handshake nl-fiod
wait_log "$CARIN/relay.log" "TLS handshake refused"
for _ in $(seq 100); do
  [[ $(metric "$CARIN_METRICS" focal_certificates_refused_total) -ge 1 ]] && break
  sleep 0.1
done
[[ $(metric "$CARIN_METRICS" focal_certificates_refused_total) -ge 1 ]] || fail "revoked member not refused"
echo "nl-fiod@carin refused after the reload (audited)"

step "8. backup: stop the relay, archive the data directory, start again"
AUDIT_BEFORE=$(metric "$CARIN_METRICS" focal_audit_log_size)
[[ $AUDIT_BEFORE -ge 1 ]] || fail "audit log empty before backup"
stop() { # DIR
  local pid; pid=$(cat "$1/relay.pid")
  kill -TERM "$pid"
  wait "$pid" || fail "relay in $1 did not exit cleanly"
  PIDS=("${PIDS[@]/$pid}")
}
stop "$CARIN"
tar -C "$CARIN" -czf "$W/carin-data-backup.tgz" data
start "$CARIN"

step "9. restore: stop, put the archived data directory back, check, start"
stop "$CARIN"
mv "$CARIN/data" "$CARIN/data.broken"
tar -C "$CARIN" -xzf "$W/carin-data-backup.tgz"
"$RELAY" check --config "$CARIN/relay.toml"
start "$CARIN"
CARIN_METRICS=$(grep -o 'metrics listening on http://[0-9.:]*/metrics' "$CARIN/relay.log" | tail -1 | cut -d' ' -f4)
AUDIT_AFTER=$(metric "$CARIN_METRICS" focal_audit_log_size)
# Peer link events keep being audited, so the restored log may have grown
# again since it started; it must hold at least what was backed up.
[[ $AUDIT_AFTER -ge $AUDIT_BEFORE ]] || fail "audit log size $AUDIT_AFTER after restore, $AUDIT_BEFORE before"
echo "restored: audit log holds the $AUDIT_BEFORE record(s) from before the backup ($AUDIT_AFTER now)"

stop "$CARIN"
stop "$GFP"
printf '\noperator walkthrough complete (%s)\n' "$W"
