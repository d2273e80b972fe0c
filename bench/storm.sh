#!/usr/bin/env bash
# A rack power-on against bootplane while an attacker floods it (issue 13's storm test):
# N simulated PXE clients (default 1000, known machines with their own MACs) do DHCP ->
# TFTP -> /boot.ipxe -> /v1/boot/ipxe from their own addresses, started at RATE per
# second, while one attacker address floods unknown-MAC boot requests and holds idle
# sockets. Prints completion-time percentiles (noted, not asserted). Root; needs
# iproute2, python3, /usr/lib/ipxe (ipxe). Namespaces and addresses from 198.18.0.0/15
# are created here and deleted on exit.
# Usage: bash bench/storm.sh [CLIENTS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-1000}
RATE=${2:-100}
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
S=bpstorm_s$$ C=bpstorm_c$$
WORK=$(mktemp -d /tmp/bootplane-storm.XXXXXX)
cleanup() {
    for ns in "$S" "$C"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$S"
ip netns add "$C"
ip link add storms netns "$S" type veth peer name stormc netns "$C"
ip -n "$S" addr add 198.18.0.1/16 dev storms
ip -n "$C" addr add 198.18.255.254/16 dev stormc
ip -n "$C" addr add 198.18.255.250/16 dev stormc
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set storms up
ip -n "$C" link set stormc up
python3 - "$CLIENTS" > "$WORK/bootplane.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("""server:
  listen: 198.18.0.1:8080
  advertise: http://198.18.0.1:8080
  admin_listen: 127.0.0.1:0
dhcp:
  mode: full
  interface: storms
  range: 198.18.1.1-198.18.200.254
  netmask: 255.255.0.0
  router: 198.18.0.1
  lease_time: 1h
tftp:
  enabled: true
  listen: 198.18.0.1:69
bundles:
  - { name: rescue, os: generic, kernel: { url: "http://198.18.0.1:8080/k" }, initrd: { url: "http://198.18.0.1:8080/i" }, args: "cfg={{ ignition_url }}" }
machines:""")
for i in range(n):
    mac = "02:5b:00:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
    print(f"  - {{ name: node{i}, hostname: node{i}, macs: [\"{mac}\"], bundle: rescue }}")
PY
BOOTPLANE_TOKEN=storm ip netns exec "$S" "$BIN" serve --config "$WORK/bootplane.yaml" --data-dir "$WORK/data" 2>"$WORK/server.log" &
disown  # stopped by the namespace cleanup; no job notice
for _ in $(seq 100); do ip netns exec "$C" python3 -c "import urllib.request; urllib.request.urlopen('http://198.18.0.1:8080/healthz', timeout=1)" 2>/dev/null && break; sleep 0.2; done
ip netns exec "$C" python3 bench/storm.py --clients "$CLIENTS" --rate "$RATE" --dev stormc
echo "server: $(grep -c . "$WORK/server.log") log lines, peak RSS $(grep VmHWM /proc/"$(ip netns pids "$S" | head -1)"/status | awk '{print $2 $3}')"
