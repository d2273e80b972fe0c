#!/usr/bin/env bash
# Benchmark: a 1 GiB artifact served on loopback to 1, 10 and 100 concurrent curl
# clients, by bootplane (/artifacts/{bundle}/{role}, sendfile fast path) and by Debian's
# nginx (sendfile on), in one run. Clients come from 10 source addresses (127.0.1.1-10,
# curl --interface), so no per-source cap is measured, and every download is checked
# (HTTP 200, and its XXH3 digest against the file's: a truncated or refused download
# fails): any failure prints FAILED, no ratio, and the script exits 1. Prints aggregate
# throughput and bootplane's peak RSS.
# Usage: bash bench/artifacts.sh [SIZE_MIB] [CONCURRENCIES]   (needs nginx, curl, xxhash)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
CONC=${2:-"1 10 100"}
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
WORK=$(mktemp -d); chmod 755 "$WORK"
NGINX_PID=
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() { jobs -p | xargs -r kill 2>/dev/null || true; if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/rel" "$WORK/www"
head -c "$((MIB * 1048576))" /dev/urandom > "$WORK/rel/image"
cd "$WORK"
BOOTPLANE_DATA_DIR=$WORK/data "$BIN" bundle import rel --name bench --os generic >/dev/null
ln "$WORK/rel/image" "$WORK/www/image"
cat > bootplane.yaml <<YAML
server: { listen: 127.0.0.1:18085 }
YAML
BOOTPLANE_TOKEN=bench-admin-token-0123 "$BIN" serve --config bootplane.yaml --data-dir "$WORK/data" 2>/dev/null &
BP=$!
cat > nginx.conf <<NGX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; server { listen 127.0.0.1:18086; root $WORK/www; } }
NGX
nginx -c "$WORK/nginx.conf"; NGINX_PID=$(cat "$WORK/nginx.pid")
until curl -sf 127.0.0.1:18085/healthz >/dev/null; do sleep 0.1; done

WANT=$(xxhsum -H3 < "$WORK/rel/image" | cut -d' ' -f1)
# One client: from source 127.0.1.(K mod 10 + 1); prints the digest of what it got, or
# FAIL (curl -f: any non-2xx; pipefail: a broken transfer).
cat > fetch.sh <<'SH'
set -o pipefail
curl -sf --interface "127.0.1.$(($1 % 10 + 1))" "$2" | xxhsum -H3 | cut -d' ' -f1 || echo FAIL
SH
FAILED=0
load() { # url, n -> MB/s aggregate, or FAILED when any download was not the file
    local url=$1 n=$2 t0 t1 good
    t0=$(date +%s.%N)
    good=$(seq "$n" | xargs -P "$n" -I{} bash fetch.sh {} "$url" | grep -cx "$WANT" || true)
    t1=$(date +%s.%N)
    if [ "$good" != "$n" ]; then echo "FAILED($good/$n)"; return; fi
    echo "$n * $MIB * 1.048576 / ($t1 - $t0)" | bc -l
}
printf '%-8s %14s %14s %8s\n' clients "bootplane MB/s" "nginx MB/s" ratio
for n in $CONC; do
    b=$(load "http://127.0.0.1:18085/artifacts/bench/image" "$n")
    g=$(load "http://127.0.0.1:18086/image" "$n")
    case "$b$g" in
        *FAILED*) printf '%-8s FAILED: intact downloads bootplane %s, nginx %s (no figure)\n' "$n" "$b" "$g"; FAILED=1 ;;
        *) printf '%-8s %14.0f %14.0f %8.2f\n' "$n" "$b" "$g" "$(echo "$b / $g" | bc -l)" ;;
    esac
done
echo "bootplane peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$BP/status)"
exit "$FAILED"
