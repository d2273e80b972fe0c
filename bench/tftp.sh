#!/usr/bin/env bash
# Benchmark: 200 concurrent TFTP transfers of ipxe.efi (~1 MiB) from bootplane, tftpd-hpa
# and dnsmasq's TFTP, each in turn on port 69 of the same namespace, fetched from a
# second namespace, each client from its own address as a rack's machines are (client K
# asks server address 198.19.1.K from 198.19.2.K: /32 routes with that source on both
# sides), so no per-client limit is measured. Two client kinds: tftp-hpa's `tftp` (plain
# RFC 1350, 512-byte lock-step) and `atftp` with blksize 1468 (what PXE firmware
# negotiates). Prints wall time, aggregate throughput and server CPU; checks every file's
# checksum: when any transfer is missing or corrupt it prints FAILED, no ratio is
# printed, and the script exits 1.
# TFTP_SOURCES=1 sends every transfer from one address (bootplane then refuses past its
# per-client cap, and the bench fails: the check at work).
# Usage (root): bash bench/tftp.sh [CONCURRENCY]
# Needs: tftpd-hpa, dnsmasq-base, tftp-hpa, atftp; a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
cargo build --release -q -p bootplane
BIN=$PWD/target/release/bootplane
S=bptftp-srv; C=bptftp-cli
WORK=
NAMESPACES=("$S" "$C")
# shellcheck source=lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
bench_cleanup
WORK=$(mktemp -d); chmod 755 "$WORK"
mkdir -p "$WORK/root"
# Real copies: tftpd-hpa chroots into its root, where Debian's symlink to /boot dangles.
cp -L /usr/lib/ipxe/ipxe.efi /usr/lib/ipxe/undionly.kpxe "$WORK/root/"
chmod -R a+rX "$WORK/root"
SUM=$(sha256sum "$WORK/root/ipxe.efi" | cut -d' ' -f1)
SIZE=$(stat -c %s "$WORK/root/ipxe.efi")
ip netns add $S; ip netns add $C
ip link add bpts0 type veth peer name bptc0
ip link set bpts0 netns $S; ip link set bptc0 netns $C
ip -n $S addr add 198.19.0.1/24 dev bpts0; ip -n $S link set bpts0 up; ip -n $S link set lo up
ip -n $C addr add 198.19.0.2/24 dev bptc0; ip -n $C link set bptc0 up; ip -n $C link set lo up
[ "$N" -le 250 ] || { echo "at most 250 clients (one address each)" >&2; exit 2; }
for k in $(seq "$N"); do
    ip -n $S addr add "198.19.1.$k/32" dev bpts0
    ip -n $C addr add "198.19.2.$k/32" dev bptc0
    ip -n $C route add "198.19.1.$k/32" dev bptc0 src "198.19.2.$k"
    ip -n $S route add "198.19.2.$k/32" dev bpts0 src "198.19.1.$k"
done
FAILED=0
SOURCES=${TFTP_SOURCES:-$N}
targets() { # one line per transfer: its number and the server address it asks (its source)
    for k in $(seq "$N"); do echo "$k 198.19.1.$(((k - 1) % SOURCES + 1))"; done
}

# CPU time of the server process, in 1/100 s. tftpd-hpa forks a child per transfer
# that it does not wait for, so its figure misses the children and is not compared.
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }

fetch_all() { # client-kind -> prints seconds
    local kind=$1 t0 t1 pid c0
    rm -rf "$WORK/out"; mkdir -p "$WORK/out"
    pid=$(ip netns pids $S | head -1); c0=$(ticks "$pid")
    t0=$(date +%s.%N)
    # shellcheck disable=SC2016  # the client's own sh expands $0..$3
    if [ "$kind" = tftp-hpa ]; then
        targets | xargs -P "$N" -n2 sh -c 'ip netns exec "$0" tftp -m binary "$3" -c get ipxe.efi "$1/out/$2" >/dev/null 2>&1 || :' "$C" "$WORK"
    else
        targets | xargs -P "$N" -n2 sh -c 'ip netns exec "$0" atftp --option "blksize 1468" -g -r ipxe.efi -l "$1/out/$2" "$3" >/dev/null 2>&1 || :' "$C" "$WORK"
    fi
    t1=$(date +%s.%N)
    local cpu; cpu=$(echo "($(ticks "$pid") - $c0) / 100" | bc -l)
    local ok; ok=$(sha256sum "$WORK"/out/* 2>/dev/null | grep -c "$SUM" || true)
    local secs; secs=$(echo "$t1 - $t0" | bc -l)
    if [ "$ok" != "$N" ]; then
        printf '  %-9s FAILED: %d of %d transfers intact (no figure)\n' "$kind" "$ok" "$N"
        FAILED=1
        return
    fi
    printf '  %-9s %3d/%d intact  %6.2f s  %7.1f MB/s  server CPU %5.2f s (%.2f ms per MB)\n' "$kind" "$ok" "$N" "$secs" "$(echo "$ok * $SIZE / $secs / 1000000" | bc -l)" "$cpu" "$(echo "$cpu * 1000 / ($ok * $SIZE / 1000000)" | bc -l)"
    echo "$2 $kind $secs $ok $cpu" >> "$WORK/results"
}

run_server() { # name, then the command to start it in the server namespace
    local name=$1; shift
    ip netns exec $S "$@" 2>/dev/null &
    sleep 1
    echo "$name"
    fetch_all tftp-hpa "$name"
    fetch_all atftp "$name"
    for p in $(ip netns pids $S); do kill "$p" 2>/dev/null || true; done
    sleep 1
}

cat > "$WORK/bootplane.yaml" <<YAML
server: { listen: 198.19.0.1:18080 }
tftp: { enabled: true, listen: 0.0.0.0:69, root: $WORK/root }
YAML
run_server bootplane env BOOTPLANE_TOKEN=bench-admin-token-0123 "$BIN" serve --config "$WORK/bootplane.yaml" --data-dir "$WORK/bp"
run_server tftpd-hpa in.tftpd -L -u root -a 0.0.0.0:69 -s "$WORK/root"
run_server dnsmasq dnsmasq --no-daemon --port=0 --user=root --interface=bpts0 \
    --enable-tftp --tftp-root="$WORK/root" --tftp-max=1000

if [ "$FAILED" != 0 ]; then
    echo "FAILED: some transfers were refused or incomplete; no ratio is printed"
    exit 1
fi
for kind in tftp-hpa atftp; do
    bp=$(awk -v k=$kind '$1=="bootplane" && $2==k {print $3}' "$WORK/results")
    bpc=$(awk -v k=$kind '$1=="bootplane" && $2==k {print $5}' "$WORK/results")
    for other in tftpd-hpa dnsmasq; do
        o=$(awk -v n=$other -v k=$kind '$1==n && $2==k {print $3}' "$WORK/results")
        oc=$(awk -v n=$other -v k=$kind '$1==n && $2==k {print $5}' "$WORK/results")
        printf '%-9s client: bootplane is %.2fx as fast as %s' "$kind" "$(echo "$o / $bp" | bc -l)" "$other"
        if [ "$other" = dnsmasq ]; then printf ', using %.2fx its CPU time' "$(echo "$bpc / ($oc + 0.01)" | bc -l)"; fi
        echo
    done
done
