#!/usr/bin/env bash
# Benchmark: /v1/boot/ipxe with 10,000 machines in the store, driven by wrk on loopback.
# Reports requests/s and latency percentiles for three mixes: known machines booting
# their disk (the common case), unknown MACs (quarantine + discovered writes), and, for
# reference, nginx serving one static iPXE file (what a hand-made setup would do).
# Usage: bash bench/boot-ipxe.sh [DURATION_SECONDS]   (needs: wrk, nginx; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
WORK=$(mktemp -d)
chmod 755 "$WORK"   # nginx workers run as www-data
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"' EXIT
cargo build --release -q -p bootplane
BIN=target/release/bootplane

python3 - "$WORK/bootplane.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("server:\n  listen: 127.0.0.1:18080\n  events_retained: 200000\nbundles:\n"
            "  - {name: g, os: generic, kernel: {url: http://m/k}, initrd: {url: http://m/i}, args: 'console=ttyS0'}\nmachines:\n")
    for n in range(10000):
        mac = "02:10:00:%02x:%02x:%02x" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)
        f.write(f"  - {{name: m{n}, hostname: m{n}.lab, macs: ['{mac}'], bundle: g}}\n")
PY

cat > "$WORK/known.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local n = math.random(0, 9999)
  local mac = string.format("02:10:00:%02x:%02x:%02x", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/v1/boot/ipxe?mac=" .. mac .. "&arch=x86_64&platform=efi")
end
LUA
cat > "$WORK/unknown.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  local n = counter
  local mac = string.format("06:%02x:00:%02x:%02x:%02x", math.random(0, 255), math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/v1/boot/ipxe?mac=" .. mac .. "&arch=x86_64")
end
LUA

t0=$(date +%s.%N)
BOOTPLANE_TOKEN=bench-admin-token-0123 "$BIN" serve --config "$WORK/bootplane.yaml" --data-dir "$WORK/data" 2>"$WORK/server.log" &
until curl -sf localhost:18080/healthz >/dev/null; do sleep 0.1; done
echo "startup with 10,000 machines applied: $(echo "$(date +%s.%N) - $t0" | bc) s"

run() { # name, wrk args...
    local name=$1; shift
    local out; out=$(wrk --latency "$@")
    if grep -q "Non-2xx" <<<"$out"; then echo "$name: non-2xx answers:"; grep "Non-2xx" <<<"$out"; fi
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-28s %10s req/s   p50 %-8s p99 %-8s\n' "$name" "$rps" "$p50" "$p99"
}
run "bootplane known (local)" -t2 -c32 -d"${DUR}s" -s "$WORK/known.lua" http://127.0.0.1:18080
run "bootplane unknown (quar.)" -t2 -c32 -d"${DUR}s" -s "$WORK/unknown.lua" http://127.0.0.1:18080
echo "events dropped by the sink: $(curl -s localhost:18080/metrics | awk '/^bootplane_events_dropped_total/ {print $2}')"
SERVER_PID=$(pgrep -f "$BIN serve" | head -1)
echo "server RSS after load: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SERVER_PID/status") peak"

if command -v nginx >/dev/null; then
    mkdir -p "$WORK/www"
    curl -s "localhost:18080/v1/boot/ipxe?mac=02:10:00:00:00:01" > "$WORK/www/boot.ipxe"
    cat > "$WORK/nginx.conf" <<NGX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:18081; root $WORK/www; } }
NGX
    nginx -c "$WORK/nginx.conf"
    sleep 0.5
    run "nginx static file (ref.)" -t2 -c32 -d"${DUR}s" http://127.0.0.1:18081/boot.ipxe
fi
