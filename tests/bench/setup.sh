#!/bin/sh
# Installs what focal-bench needs beyond cargo: nats-server (Debian package)
# for the NATS JetStream comparison. Safe to run again.
set -eu
if command -v nats-server >/dev/null 2>&1; then
    echo "nats-server present: $(nats-server --version)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server
echo "installed: $(nats-server --version)"
