#!/usr/bin/env bash
# Benchmark: /v1/boot/ipxe with 10,000 machines in the store, from many source addresses
# as a rack asks (SOURCES, default 64: one wrk per address, 2 connections each), never
# from one address a per-source limiter would measure instead. Mixes: known machines
# booting their disk (the common case), unknown MACs (quarantine + discovered writes),
# provisioned machines getting install answers (each source asks for its own machines,
# so every answer opens an attempt: the identity checks' path), and, for reference,
# nginx serving one static iPXE file to the same sources. Every answer is checked (200
# and an iPXE script; install answers carry a nonce): a mix with any other answer or a
# socket error prints FAILED and no figure, and the script exits 1.
# The per-source boot budget is lifted (server.boot_requests_per_minute) and said so:
# 64 sources at full speed are far past what one machine may ask.
# BOOTPLANE_BIN=path compares another build (e.g. an older commit's release binary);
# BOOT_REQUESTS_PER_MINUTE=N keeps the limit (then the bench fails: the check at work).
# Usage: bash bench/boot-ipxe.sh [DURATION_SECONDS]   (root; needs: wrk, nginx, iproute2)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
SOURCES=${SOURCES:-64}
S=bpboot_s$$ C=bpboot_c$$
WORK=$(mktemp -d)
chmod 755 "$WORK"   # nginx workers run as www-data
NAMESPACES=("$S" "$C")
# shellcheck source=lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
if [ -z "${BOOTPLANE_BIN:-}" ]; then
    cargo build --release -q -p bootplane
    BIN=$PWD/target/release/bootplane
else
    BIN=$BOOTPLANE_BIN
fi

# Two namespaces on a veth: the server answers on 198.18.1.K, and the client reaches
# each 198.18.1.K from its own 198.18.2.K (a /32 route with that source), so every wrk
# is a different source address to the server.
ip netns add "$S"
ip netns add "$C"
ip link add boots netns "$S" type veth peer name bootc netns "$C"
ip -n "$S" addr add 198.18.0.1/16 dev boots
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set boots up
ip -n "$C" link set bootc up
for k in $(seq "$SOURCES"); do
    ip -n "$S" addr add "198.18.1.$k/32" dev boots
    ip -n "$C" addr add "198.18.2.$k/32" dev bootc
    ip -n "$C" route add "198.18.1.$k/32" dev bootc src "198.18.2.$k"
done

LIMIT=${BOOT_REQUESTS_PER_MINUTE:-100000000}
python3 - "$WORK/bootplane.yaml" "$LIMIT" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("server:\n  listen: 0.0.0.0:18080\n  admin_listen: 127.0.0.1:18082\n  events_retained: 200000\n"
            f"  boot_requests_per_minute: {sys.argv[2]}\n  max_connections_per_source: 64\nbundles:\n"
            "  - {name: g, os: generic, kernel: {url: http://m/k}, initrd: {url: http://m/i}, args: 'cfg={{ ignition_url }}'}\nmachines:\n")
    for n in range(10000):
        mac = "02:10:00:%02x:%02x:%02x" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)
        f.write(f"  - {{name: m{n}, hostname: m{n}.lab, macs: ['{mac}'], bundle: g}}\n")
PY

# Checks every answer (wrk's response hook) and prints BAD <n> at the end.
check='
local threads = {}
bad = 0
function setup(t) table.insert(threads, t) end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "#!ipxe", 1, true) or (want and not string.find(body, want, 1, true)) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("bad") end
  io.write(string.format("BAD %d\n", n))
end'
mac_of='
function mac_of(n) return string.format("02:10:00:%02x:%02x:%02x", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end'
cat > "$WORK/known.lua" <<LUA
$check
$mac_of
math.randomseed(os.time())
request = function() return wrk.format("GET", "/v1/boot/ipxe?mac=" .. mac_of(math.random(0, 9999)) .. "&arch=x86_64&platform=efi") end
LUA
cat > "$WORK/unknown.lua" <<LUA
$check
counter = 0
function init(args) src = tonumber(args[1]) end
request = function()
  counter = counter + 1
  local mac = string.format("06:%02x:%02x:%02x:%02x:%02x", src, math.random(0, 255), math.floor(counter / 65536) % 256, math.floor(counter / 256) % 256, counter % 256)
  return wrk.format("GET", "/v1/boot/ipxe?mac=" .. mac .. "&arch=x86_64")
end
LUA
# Source K asks only for machines n with n % SOURCES == K-1: it is their first (so
# vouched-for) requester in DHCP-off mode, and every answer opens a fresh attempt.
cat > "$WORK/install.lua" <<LUA
$check
$mac_of
want = "nonce="
function init(args) src, sources = tonumber(args[1]), tonumber(args[2]) end
request = function()
  local n = (src - 1) + sources * math.random(0, math.floor(9999 / sources) - 1)
  return wrk.format("GET", "/v1/boot/ipxe?mac=" .. mac_of(n) .. "&arch=x86_64&platform=efi")
end
LUA
cat > "$WORK/static.lua" <<LUA
$check
LUA

t0=$(date +%s.%N)
BOOTPLANE_TOKEN=bench-admin-token-0123 ip netns exec "$S" "$BIN" serve --config "$WORK/bootplane.yaml" --data-dir "$WORK/data" 2>"$WORK/server.log" &
disown  # stopped by the namespace cleanup
until ip netns exec "$C" curl -sf 198.18.1.1:18080/healthz >/dev/null; do sleep 0.1; done
echo "startup with 10,000 machines applied: $(echo "$(date +%s.%N) - $t0" | bc) s"
echo "server.boot_requests_per_minute: $LIMIT (lifted unless BOOT_REQUESTS_PER_MINUTE is set: $SOURCES sources at full speed)"

FAILED=0
# run NAME PORT SCRIPT: one wrk per source for DUR seconds; sums req/s, takes the median
# of the sources' p50 and the worst source's p99.
run() {
    local name=$1 port=$2 script=$3 pids=() k
    for k in $(seq "$SOURCES"); do
        ip netns exec "$C" wrk --latency -t1 -c2 -d"${DUR}s" -s "$script" "http://198.18.1.$k:$port/" -- "$k" "$SOURCES" > "$WORK/wrk.$k" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    python3 - "$name" "$WORK" "$SOURCES" <<'PY' || FAILED=1
import re, sys
name, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
rps, p50, p99, bad, errors, served = 0.0, [], [], 0, 0, 0
for k in range(1, n + 1):
    out = open(f"{work}/wrk.{k}").read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    served += int(re.search(r"(\d+) requests in", out).group(1))
    for pct, acc in (("50", p50), ("99", p99)):
        v, u = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\b", out, re.M).groups()
        acc.append(float(v) * unit[u])
    bad += int(re.search(r"^BAD (\d+)", out, re.M).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(map(int, m.groups())) if m else 0
if bad or errors:
    print(f"{name:<30} FAILED: {bad} of {served} answers wrong or refused, {errors} socket errors (no figure)")
    sys.exit(1)
print(f"{name:<30} {rps:>10.0f} req/s  from {n} sources   p50 {sorted(p50)[n // 2]:.2f} ms  p99 {max(p99):.2f} ms (worst source)")
PY
}
# PERF=FILE: the server's profile during the known mix (`perf record`, PERF_ARGS= adds
# options, e.g. "--call-graph dwarf"; build with
# `cargo build --profile profiling -p bootplane` and pass BOOTPLANE_BIN= for its symbols).
if [ -n "${PERF:-}" ]; then
    # shellcheck disable=SC2086  # PERF_ARGS: several options
    perf record -q -F 2000 ${PERF_ARGS:-} -o "$PERF" -p "$(ip netns pids "$S" | head -1)" -- sleep "$DUR" 2>/dev/null &
    perf_pid=$!
fi
run "bootplane known (local boot)" 18080 "$WORK/known.lua"
[ -n "${PERF:-}" ] && { wait "$perf_pid"; echo "profile of the known mix: $PERF (perf report -i $PERF)"; }
run "bootplane unknown (quarantine)" 18080 "$WORK/unknown.lua"
echo "events dropped by the sink: $(ip netns exec "$C" curl -s 198.18.1.1:18080/metrics | awk '/^bootplane_events_dropped_total/ {print $2}')"
# Every machine in provision: the install path with its identity checks and attempt writes.
ip netns exec "$S" python3 - <<'PY'
import urllib.request
for n in range(10000):
    r = urllib.request.Request(f"http://127.0.0.1:18082/v1/machines/m{n}/provision", method="POST", headers={"Authorization": "Bearer bench-admin-token-0123"})
    urllib.request.urlopen(r, timeout=10).read()
PY
run "bootplane provisioned (install)" 18080 "$WORK/install.lua"
echo "server peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$(ip netns pids "$S" | head -1)/status")"

if command -v nginx >/dev/null; then
    mkdir -p "$WORK/www"
    ip netns exec "$C" curl -s "198.18.1.1:18080/v1/boot/ipxe?mac=02:10:00:00:00:01" > "$WORK/www/index.html"
    cat > "$WORK/nginx.conf" <<NGX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 0.0.0.0:18081; root $WORK/www; } }
NGX
    ip netns exec "$S" nginx -c "$WORK/nginx.conf"
    sleep 0.5
    run "nginx static file (ref.)" 18081 "$WORK/static.lua"
fi
exit "$FAILED"
