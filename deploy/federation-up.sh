#!/usr/bin/env bash
# Brings the example 8-network federation up locally as separate processes:
# creates a throwaway PKI under deploy/federation/pki (one CA per network, a
# relay certificate each, empty CRLs, the trust bundle), then starts one
# focal-relay per config in deploy/federation/*.toml. Logs go to
# deploy/federation/logs/. Stop with Ctrl-C (SIGTERM is passed to every relay).
#
#   deploy/federation-up.sh            # build (release) and start
#   FOCAL_BIN=target/debug deploy/federation-up.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
fed="$here/federation"
bin="${FOCAL_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release -p focal-relay -p focal-certs -p focal-client)
  bin="$root/target/release"
fi
networks=(gfp carin arinsa arin-wa arin-ea arin-ap arin-carib rrag)
pki="$fed/pki"
mkdir -p "$pki" "$fed/logs" "$fed/data"
for net in "${networks[@]}"; do
  if [ ! -f "$pki/$net/ca.pem" ]; then
    "$bin/focal-certs" init-network "$net" --dir "$pki"
    "$bin/focal-certs" issue --network "$net" --role relay --name "relay-$net" --dns localhost --ip 127.0.0.1 --dir "$pki"
    "$bin/focal-certs" crl --network "$net" --dir "$pki"
  fi
done
"$bin/focal-certs" bundle --dir "$pki" --out "$pki/bundle.toml" --force
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for net in "${networks[@]}"; do
  "$bin/focal-relay" check --config "$fed/$net.toml" >/dev/null
  "$bin/focal-relay" run --config "$fed/$net.toml" >"$fed/logs/$net.log" 2>&1 &
  pids+=($!)
  echo "started relay-$net (pid $!) — log $fed/logs/$net.log"
done
echo "federation up; Ctrl-C to stop"
wait
