#!/usr/bin/env bash
# Benchmark: DHCP leases per second, measured by Kea's perfdhcp (4-way exchanges, one
# new client per exchange) against bootplane, dnsmasq and Kea (memfile) in turn, on the
# same two namespaces joined by a veth pair. For each offered rate (RATES, exchanges/s)
# each server in turn starts empty and runs alone for DURATION seconds; the table shows
# the rate it sustained at each, so saturation is visible rather than one flooded figure,
# and the server's CPU time, so "leases per CPU-second" compares servers that the client
# (not the server) limited.
# The server is pinned to the last CPU and perfdhcp to the others (on 2 cores: one
# each). Unpinned, the scheduler's placement of four busy threads on two cores swung
# the same server between 10k and 18k leases/s from one run to the next.
# perfdhcp's sockets get a 4 MiB receive buffer (net.core.rmem_default, restored on
# exit; it cannot be set per namespace here): with the default 208 KiB, a fast server's
# replies overflowed the client at 40k/s (60k drops in 5 s in the client namespace's
# UdpRcvbufErrors), so the faster server scored lower.
# Usage (root): bash bench/dhcp.sh [DURATION] [RATES]
# Needs: kea-admin (perfdhcp), kea-dhcp4-server, dnsmasq-base; a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
RATES=${2:-"5000 10000 20000 40000"}
NCPU=$(nproc)
SRV_CPU=$((NCPU - 1))
CLI_CPUS=0-$((NCPU > 1 ? NCPU - 2 : 0))
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
WORK=$(mktemp -d)
S=bpbench-srv; C=bpbench-cli
RMEM_DEFAULT=$(sysctl -n net.core.rmem_default)
cleanup() {
    sysctl -qw net.core.rmem_default="$RMEM_DEFAULT"
    for ns in $S $C; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
cleanup; WORK=$(mktemp -d)
sysctl -qw net.core.rmem_default=$((4 << 20))
ip netns add $S; ip netns add $C
ip link add bpbs0 type veth peer name bpbc0
ip link set bpbs0 netns $S; ip link set bpbc0 netns $C
ip -n $S addr add 198.18.0.1/15 dev bpbs0; ip -n $S link set bpbs0 up; ip -n $S link set lo up
# perfdhcp needs an address of its own: it talks to the server as a relay would.
ip -n $C addr add 198.18.0.2/15 dev bpbc0; ip -n $C link set bpbc0 up; ip -n $C link set lo up

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+system, 1/100 s
perf() { # name rate: runs perfdhcp in the client namespace
    local name=$1 r=$2 out rate drops pid t0 cpu
    pid=$(ip netns pids $S | head -1)
    t0=$(ticks "$pid")
    out=$(ip netns exec $C taskset -c "$CLI_CPUS" perfdhcp -4 -l bpbc0 -r "$r" -R 1000000 -p "$DUR" -W 200000 2>&1 || true)
    cpu=$(echo "($(ticks "$pid") - $t0) / 100" | bc -l)
    rate=$(awk '/^Rate:/ {print $2; exit}' <<<"$out")
    drops=$(awk '/drops ratio:/ {print $3; exit}' <<<"$out")
    printf '%-10s offered %6s/s  sustained %9.0f leases/s  server CPU %5.2f s = %6.0f leases/CPU-s  (DISCOVER drops %s%%)\n' \
        "$name" "$r" "${rate:-0}" "$cpu" "$(echo "${rate:-0} * $DUR / ($cpu + 0.01)" | bc -l)" "${drops:-?}"
    echo "$name $r ${rate:-0} $(echo "${rate:-0} * $DUR / ($cpu + 0.01)" | bc -l)" >> "$WORK/rates"
}
stop_all() { for p in $(ip netns pids $S); do kill "$p" 2>/dev/null || true; done; sleep 1; }

cat > "$WORK/bootplane.yaml" <<YAML
server: { listen: 198.18.0.1:18080, advertise: "http://198.18.0.1:18080" }
dhcp:
  mode: full
  interface: bpbs0
  range: 198.18.1.1-198.19.255.254
  netmask: 255.254.0.0
  router: 198.18.0.1
  lease_time: 1h
  relays: [198.18.0.2]   # perfdhcp talks as a relay would
YAML
cat > "$WORK/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "bpbs0" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$WORK/kea.leases", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/15", "pools": [ { "pool": "198.18.1.1 - 198.19.255.254" } ],
                   "option-data": [ { "name": "routers", "data": "198.18.0.1" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$WORK/kea.log" } ] } ]
} }
JSON

# The pool is the whole benchmarking range (198.18.0.0/15, 131k addresses): every
# exchange is a new client, and a smaller pool (a /16 before) ran out within a 5 s run
# at 40k/s, so the table measured the pool, not the server. Every server starts empty
# for every rate, and the servers take turns per rate. Keep DURATION x the sustained
# rate under ~120k or the pool runs out again.
for r in $RATES; do
    rm -rf "$WORK/bp" "$WORK/dnsmasq.leases" "$WORK/kea.leases"*
    BOOTPLANE_TOKEN=bench-admin-token-0123 ip netns exec $S taskset -c $SRV_CPU "$BIN" serve --config "$WORK/bootplane.yaml" --data-dir "$WORK/bp" 2>"$WORK/bp.log" &
    sleep 1.5
    perf bootplane "$r"
    SERVER_PID=$(ip netns pids $S | head -1)
    echo "  bootplane peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SERVER_PID/status")"
    stop_all
    # dnsmasq (--no-ping: by default it pings every address before offering it)
    ip netns exec $S taskset -c $SRV_CPU dnsmasq --no-daemon --port=0 --interface=bpbs0 --bind-interfaces --user=root \
        --dhcp-range=198.18.1.1,198.19.255.254,255.254.0.0,1h --dhcp-authoritative --no-ping \
        --dhcp-lease-max=1000000 --dhcp-leasefile="$WORK/dnsmasq.leases" 2>/dev/null &
    sleep 1
    perf dnsmasq "$r"
    stop_all
    KEA_LOCKFILE_DIR=$WORK KEA_PIDFILE_DIR=$WORK ip netns exec $S taskset -c $SRV_CPU kea-dhcp4 -c "$WORK/kea.json" >/dev/null 2>&1 &
    sleep 2
    perf kea "$r"
    stop_all
done

for r in $RATES; do
    bp=$(awk -v r="$r" '$1=="bootplane" && $2==r {print $3}' "$WORK/rates")
    bpe=$(awk -v r="$r" '$1=="bootplane" && $2==r {print $4}' "$WORK/rates")
    for other in dnsmasq kea; do
        o=$(awk -v n="$other" -v r="$r" '$1==n && $2==r {print $3}' "$WORK/rates")
        oe=$(awk -v n="$other" -v r="$r" '$1==n && $2==r {print $4}' "$WORK/rates")
        [ -n "$o" ] && [ "$o" != 0 ] && printf 'at %6s/s offered: bootplane / %-8s = %5.2f leases/s, %5.2f leases/CPU-s\n' \
            "$r" "$other" "$(echo "$bp / $o" | bc -l)" "$(echo "$bpe / $oe" | bc -l)"
    done
done
