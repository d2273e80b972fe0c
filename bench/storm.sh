#!/usr/bin/env bash
# A rack power-on against bootplane while an attacker floods it (issue 13's storm test):
# N simulated PXE clients (default 1000, known machines with their own MACs) do DHCP ->
# TFTP -> /boot.ipxe -> /v1/boot/ipxe from their own addresses, started at RATE per
# second, while one attacker address floods unknown-MAC boot requests and holds idle
# sockets. Prints completion-time percentiles (noted, not asserted). Root; needs
# iproute2, python3, /usr/lib/ipxe (ipxe). Namespaces and addresses from 198.18.0.0/15
# are created here and deleted on exit.
# With --provision the machines are put in `provision` first: every client must get its
# install answer from its own lease while the attacker asks with the rack's MACs too (it
# must get none; each try is a boot.alarm). Exits non-zero when anything failed.
# Usage: bash bench/storm.sh [--provision] [CLIENTS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
PROVISION=
if [ "${1:-}" = --provision ]; then PROVISION=--provision; shift; fi
CLIENTS=${1:-1000}
RATE=${2:-100}
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
S=bpstorm_s$$ C=bpstorm_c$$
WORK=$(mktemp -d /tmp/bootplane-storm.XXXXXX)
NAMESPACES=("$S" "$C")
# shellcheck source=lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
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
  admin_listen: 127.0.0.1:8081
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
BOOTPLANE_TOKEN=storm-admin-token-0123 ip netns exec "$S" "$BIN" serve --config "$WORK/bootplane.yaml" --data-dir "$WORK/data" 2>"$WORK/server.log" &
disown  # stopped by the namespace cleanup; no job notice
for _ in $(seq 100); do ip netns exec "$C" python3 -c "import urllib.request; urllib.request.urlopen('http://198.18.0.1:8080/healthz', timeout=1)" 2>/dev/null && break; sleep 0.2; done
if [ -n "$PROVISION" ]; then
    ip netns exec "$S" python3 - "$CLIENTS" <<'PY'
import sys, urllib.request
for i in range(int(sys.argv[1])):
    req = urllib.request.Request(f"http://127.0.0.1:8081/v1/machines/node{i}/provision", method="POST", headers={"Authorization": "Bearer storm-admin-token-0123"})
    urllib.request.urlopen(req, timeout=10).read()
PY
    echo "provisioned $CLIENTS machines"
fi
rc=0
ip netns exec "$C" python3 bench/storm.py --clients "$CLIENTS" --rate "$RATE" --dev stormc $PROVISION || rc=$?
if [ -n "$PROVISION" ]; then
    alarms=$(ip netns exec "$S" curl -s http://198.18.0.1:8080/metrics | awk '/^bootplane_boot_alarms_total/ {print $2}')
    echo "install answers withheld with a boot.alarm: ${alarms:-0} (the attacker's rack-MAC requests within its boot budget)"
fi
echo "server: $(grep -c . "$WORK/server.log") log lines, peak RSS $(grep VmHWM /proc/"$(ip netns pids "$S" | head -1)"/status | awk '{print $2 $3}')"
exit "$rc"
