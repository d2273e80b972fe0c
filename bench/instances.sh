#!/usr/bin/env bash
# Benchmark: bootplane on PostgreSQL with 1, 2 and 3 instances against 1 instance on
# SQLite, in one run on one machine; for DHCP also Kea with its PostgreSQL lease backend.
#  1. Boot decisions/s: /v1/boot/ipxe for 2,000 known machines (wrk on loopback, one wrk
#     per instance at once, summed).
#  2. DHCP leases/s: perfdhcp 4-way exchanges with new clients; each instance has a link
#     of its own (a client namespace per instance, as a relay per rack would), all
#     instances allocate from one pool in one database.
# A throwaway PostgreSQL cluster (initdb, Unix socket in the work directory) serves every
# contender; each starts on an empty database. On a 2-core machine the database, the
# servers and the load generators share two CPUs: the figures show what the shared
# store costs and how it scales here, not what a rack of real servers would reach.
# perfdhcp counts an answer later than 1 s as lost: offered far above what the store can
# commit, queues grow and every instance's figure collapses, so DHCP_RATE (per link) is
# best set near the capacity, and the run is repeated per rate.
# Usage (root): bash bench/instances.sh [DURATION] ["DHCP_RATES"]
# Needs: postgresql, wrk, kea-admin (perfdhcp), kea-dhcp4-server; a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
RATES=${2:-"500 2000"}
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
PGBIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin | sort -V | tail -1)
WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
NS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for ns in "${NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -d "$WORK/pg" ]; then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir "$WORK/pg" "$WORK/sock"; chown postgres "$WORK/pg" "$WORK/sock"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" --auth=trust -U postgres -E UTF8 --no-instructions >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/sock/pg.log" \
    -o "-c listen_addresses='' -k $WORK/sock -c max_connections=300" start >/dev/null
psql() { "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 --quiet -h "$WORK/sock" -U postgres "$@"; }
newdb() { psql -d postgres -c "CREATE DATABASE $1"; echo "postgresql://postgres@${WORK//\//%2F}%2Fsock/$1"; }

# ---- 1. boot decisions ------------------------------------------------------------
python3 - "$WORK/fleet.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("server:\n  listen: 127.0.0.1:0\n  events_retained: 500000\n  boot_requests_per_minute: 100000000\n"
            "  unauthenticated_events_per_minute: 100000000\n  max_connections_per_source: 4096\n"
            "bundles:\n  - {name: g, os: generic, kernel: {url: http://m/k}, initrd: {url: http://m/i}}\nmachines:\n")
    for n in range(2000):
        mac = "02:10:00:00:%02x:%02x" % ((n >> 8) & 255, n & 255)
        f.write(f"  - {{name: m{n}, hostname: m{n}.lab, macs: ['{mac}'], bundle: g}}\n")
PY
cat > "$WORK/known.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local n = math.random(0, 1999)
  return wrk.format("GET", string.format("/v1/boot/ipxe?mac=02:10:00:00:%02x:%02x&arch=x86_64", math.floor(n / 256) % 256, n % 256))
end
LUA

# serve_http DIR PORT [--database URL]: starts an instance on 127.0.0.1:PORT.
serve_http() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir"; cp "$WORK/fleet.yaml" "$dir/bootplane.yaml"
    [ -f "$WORK/key" ] && { mkdir -p "$dir/data"; cp "$WORK/key" "$dir/data/secret.key"; }
    BOOTPLANE_TOKEN=bench-admin-token-0123 "$BIN" serve --config "$dir/bootplane.yaml" --data-dir "$dir/data" --listen "127.0.0.1:$port" "$@" 2>"$dir/log" &
    PIDS+=($!)
    until curl -sf "127.0.0.1:$port/healthz" >/dev/null; do sleep 0.1; done
    [ -f "$WORK/key" ] || cp "$dir/data/secret.key" "$WORK/key"
}
stop_http() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); rm -f "$WORK/key"; }
# wrk_all PORTS...: one wrk per port at once; prints the summed req/s.
wrk_all() {
    local i=0 load=()
    for port in "$@"; do
        wrk -t1 -c16 -d"${DUR}s" -s "$WORK/known.lua" "http://127.0.0.1:$port" > "$WORK/wrk.$i" 2>&1 &
        load+=($!); i=$((i + 1))
    done
    wait "${load[@]}" || true
    cat "$WORK"/wrk.* | awk '/Requests\/sec/ {s += $2} END {printf "%.0f", s}'
    rm -f "$WORK"/wrk.*
}
echo "== boot decisions/s (/v1/boot/ipxe, 2,000 known machines, ${DUR}s) =="
serve_http "$WORK/sqlite" 18100
lite=$(wrk_all 18100); stop_http
printf '%-28s %8s req/s\n' "SQLite, 1 instance" "$lite"
declare -A boot
for n in 1 2 3; do
    url=$(newdb boot$n)
    ports=()
    for i in $(seq 1 "$n"); do serve_http "$WORK/pg$n-$i" $((18100 + i)) --database "$url"; ports+=($((18100 + i))); done
    boot[$n]=$(wrk_all "${ports[@]}"); stop_http
    printf '%-28s %8s req/s   (%.2f x SQLite)\n' "PostgreSQL, $n instance(s)" "${boot[$n]}" "$(echo "${boot[$n]} / $lite" | bc -l)"
done

# ---- 2. DHCP leases ---------------------------------------------------------------

# link I: server namespace bpis$I (198.18.0.1/15 on bpiIs) <-> client namespace bpic$I
# (198.18.0.2, perfdhcp as a relay: bootplane answers it as an allowed relay).
link() {
    local i=$1
    ip netns add "bpis$i"; ip netns add "bpic$i"; NS+=("bpis$i" "bpic$i")
    ip link add "bpi${i}s" type veth peer name "bpi${i}c"
    ip link set "bpi${i}s" netns "bpis$i"; ip link set "bpi${i}c" netns "bpic$i"
    ip -n "bpis$i" addr add 198.18.0.1/15 dev "bpi${i}s"; ip -n "bpis$i" link set "bpi${i}s" up; ip -n "bpis$i" link set lo up
    ip -n "bpic$i" addr add 198.18.0.2/15 dev "bpi${i}c"; ip -n "bpic$i" link set "bpi${i}c" up; ip -n "bpic$i" link set lo up
}
for i in 1 2 3; do link "$i"; done
cat > "$WORK/dhcp.yaml" <<YAML
server: { listen: 198.18.0.1:18080, advertise: "http://198.18.0.1:18080" }
dhcp: { mode: full, interface: is0, range: 198.18.1.1-198.19.255.254, netmask: 255.254.0.0, router: 198.18.0.1, lease_time: 1h, relays: [198.18.0.2] }
YAML
# perf_all N: one perfdhcp per link 1..N at once; prints summed leases/s.
perf_all() {
    local n=$1 load=()
    for i in $(seq 1 "$n"); do
        # A MAC base per link: two real clients never share a MAC.
        ip netns exec "bpic$i" perfdhcp -4 -l "bpi${i}c" -b "mac=02:0$i:00:00:00:00" -r "$RATE" -R 1000000 -p "$DUR" -W 200000 > "$WORK/perf.$i" 2>&1 &
        load+=($!)
    done
    wait "${load[@]}" || true
    cat "$WORK"/perf.* | awk '/^Rate:/ {s += $2; next} END {printf "%.0f", s}'
    rm -f "$WORK"/perf.*
}
kill_links() { for i in 1 2 3; do for p in $(ip netns pids "bpis$i"); do kill "$p" 2>/dev/null || true; done; done; sleep 1; }
serve_dhcp() { # I [--database URL]
    local i=$1; shift
    local dir="$WORK/dhcp$i"; rm -rf "$dir"; mkdir -p "$dir/data"; sed "s/is0/bpi${i}s/" "$WORK/dhcp.yaml" > "$dir/bootplane.yaml"
    [ -f "$WORK/key" ] && cp "$WORK/key" "$dir/data/secret.key"
    BOOTPLANE_TOKEN=bench-admin-token-0123 ip netns exec "bpis$i" "$BIN" serve --config "$dir/bootplane.yaml" --data-dir "$dir/data" "$@" 2>"$dir/log" &
    sleep 1.5
    [ -f "$WORK/key" ] || cp "$dir/data/secret.key" "$WORK/key"
}
# Kea 2.2 with its PostgreSQL lease backend (schema by kea-admin), one instance.
cat > "$WORK/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "bpi1s" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "postgresql", "name": "KEADB", "host": "$WORK/sock", "user": "postgres" },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/15", "pools": [ { "pool": "198.18.1.1 - 198.19.255.254" } ],
                   "option-data": [ { "name": "routers", "data": "198.18.0.1" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$WORK/kea.log" } ] } ]
} }
JSON
for RATE in $RATES; do
    echo "== DHCP leases/s (perfdhcp, new clients, offered ${RATE}/s per link, ${DUR}s) =="
    declare -A dh
    serve_dhcp 1; lite=$(perf_all 1); kill_links; rm -f "$WORK/key"
    printf '%-34s %8s leases/s\n' "bootplane, SQLite, 1 instance" "$lite"
    for n in 1 2 3; do
        db=dhcp${RATE}_$n; url=$(newdb "$db")
        for i in $(seq 1 "$n"); do serve_dhcp "$i" --database "$url"; done
        got=$(perf_all "$n"); kill_links; rm -f "$WORK/key"; dh[$n]=$got
        bound=$(psql -d "$db" -c "SELECT COUNT(*) FROM leases WHERE state = 'bound'")
        dup=$(psql -d "$db" -c "SELECT COUNT(*) FROM (SELECT mac FROM leases WHERE state = 'bound' GROUP BY mac HAVING COUNT(*) > 1) d")
        printf '%-34s %8s leases/s   (%.2f x SQLite; %s bound in the database, %s MACs bound twice)\n' \
            "bootplane, PostgreSQL, $n instance(s)" "$got" "$(echo "$got / ($lite + 0.001)" | bc -l)" "$bound" "$dup"
    done
    psql -d postgres -c "CREATE DATABASE kea$RATE"
    kea-admin db-init pgsql -h "$WORK/sock" -u postgres -n "kea$RATE" >/dev/null 2>&1
    sed "s/KEADB/kea$RATE/" "$WORK/kea.json" > "$WORK/kea-run.json"
    KEA_LOCKFILE_DIR=$WORK KEA_PIDFILE_DIR=$WORK ip netns exec bpis1 kea-dhcp4 -c "$WORK/kea-run.json" >/dev/null 2>&1 &
    sleep 2
    kea=$(perf_all 1); kill_links
    printf '%-34s %8s leases/s   (bootplane on PostgreSQL / Kea: 1 instance %.2f, 3 instances %.2f)\n' \
        "Kea 2.2, PostgreSQL, 1 instance" "$kea" "$(echo "${dh[1]} / ($kea + 0.001)" | bc -l)" "$(echo "${dh[3]} / ($kea + 0.001)" | bc -l)"
done
