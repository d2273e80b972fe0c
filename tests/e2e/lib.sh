# shellcheck shell=bash
# Shared by the e2e scenarios: a test LAN in a network namespace (bridge br0, bootplane,
# QEMU machines on taps), VM helpers, the bootplane API, and results as data.
# A scenario sets NET (a /24 of 198.18.0.0/15), sources this file, then calls
# e2e_init NAME. Every namespace, tap and process is removed on exit, also on failure.
# Results: one JSON object per check in $RESULTS (scenario, check, pass, detail), and
# "PASS x" / "FAIL x: why" lines on stdout, ended by "N passed, N failed".

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BOOTPLANE_BIN:-$E2E_ROOT/target/debug/bootplane}
PASSED=0; FAILED=0
QEMU_PIDS=()
ACCEL=(-accel tcg)
# Under KVM the iPXE option ROM resets the VM on this machine kind; TCG boots it.
[ -n "${E2E_KVM:-}" ] && [ -w /dev/kvm ] && ACCEL=(-accel kvm)

e2e_init() { # scenario-name: work directory, namespace prefix, cleanup trap, results file
    SCENARIO=$1
    [ -x "$BIN" ] || (cd "$E2E_ROOT" && cargo build -q -p bootplane --features live-iso)
    BASE_NS=bpe2e$$
    NS=${BASE_NS}f
    WORK=$(mktemp -d "/tmp/bootplane-e2e-$SCENARIO.XXXXXX")
    RESULTS=${E2E_RESULTS:-$WORK/results.jsonl}
    trap e2e_cleanup EXIT
}
e2e_cleanup() {
    for p in "${QEMU_PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
    for ns in $(ip netns list | awk -v b="$BASE_NS" 'index($1, b) == 1 {print $1}'); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    # Every child is dead now; reap them so bash prints no job notices.
    wait 2>/dev/null
    # Disk images a scenario mounted to read them.
    findmnt -rn -o TARGET | awk -v w="$WORK/" 'index($1, w) == 1' | sort -r | xargs -r umount 2>/dev/null
    losetup -n -O NAME,BACK-FILE | awk -v w="$WORK/" 'index($2, w) == 1 {print $1}' | xargs -r -n1 losetup -d 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
record() { # check pass(true|false) detail
    python3 -c 'import json,sys; print(json.dumps({"scenario": sys.argv[1], "check": sys.argv[2], "pass": sys.argv[3] == "true", "detail": sys.argv[4]}))' \
        "$SCENARIO" "$1" "$2" "$3" >> "$RESULTS"
}
ok() { echo "PASS $1"; PASSED=$((PASSED + 1)); record "$1" true "${2:-}"; }
ko() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); record "$1" false "$2"; }
note() { echo "  $*"; }
finish() { echo "$PASSED passed, $FAILED failed"; [ "$FAILED" = 0 ]; }
inns() { ip netns exec "$NS" "$@"; }
# The admin API: the LAN listener, or E2E_ADMIN (a scenario with HTTPS on moves it to
# server.admin_listen on the namespace's loopback, off the LAN).
api() { inns curl -sf -H "Authorization: Bearer e2e-admin-token-0123" "${E2E_ADMIN:-http://$NET.1:8080}$1"; }
bootplane() { BOOTPLANE_TOKEN=e2e-admin-token-0123 inns "$BIN" "$@" --server "${E2E_ADMIN:-http://$NET.1:8080}"; }

start_lan() { # namespace $NS with bridge br0 at $NET.1/24
    ip netns add "$NS"
    inns ip link set lo up
    inns ip link add br0 address 02:b0:00:00:00:01 type bridge  # fixed: a new tap must not change it under running VMs
    inns ip addr add "$NET.1/24" dev br0
    inns ip link set br0 up
}
start_bootplane() { # config data-dir: `serve` in $NS, waits for /healthz
    BOOTPLANE_TOKEN=e2e-admin-token-0123 ip netns exec "$NS" "$BIN" serve --config "$1" --data-dir "$2" 2>>"$WORK/server.log" &
    disown  # stopped by the namespace cleanup; no job notice
    for _ in $(seq 50); do api /healthz >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

boot_vm() { # name mac firmware(bios|uefi|uefi-sb|uefi-http) disk [uuid [second-disk]] -> QEMU in the background
    # Network boot only (-boot n), NIC e1000 (BIOS, iPXE ROM) or OVMF's own PXE client.
    local name=$1 mac=$2 fw=$3 disk=$4 uuid=${5:-} second=${6:-}
    local extra=()
    [ -n "$uuid" ] && extra=(-uuid "$uuid")
    [ -n "$second" ] && extra+=(-drive "file=$second,format=raw,if=virtio")
    local nic=(-device "e1000,netdev=n0,mac=$mac")
    # OVMF's own virtio-net driver: under Secure Boot an unsigned option ROM would not load.
    [ "$fw" != bios ] && nic=(-device "virtio-net-pci,netdev=n0,mac=$mac,romfile=")
    start_qemu "$name" "$fw" 1024 -boot n "${nic[@]}" -drive "file=$disk,format=raw,if=virtio" "${extra[@]}"
}
boot_machine() { # name mac firmware disk: network first, then the disk, on every boot
    # (bootindex), as a rack whose machines network-boot first; the disk is
    # /dev/disk/by-id/virtio-NAME inside. BIOS: the NIC's iPXE ROM; UEFI: OVMF's PXE.
    local name=$1 mac=$2 fw=$3 disk=$4 rom=""
    [ "$fw" = uefi ] && rom=",romfile="
    start_qemu "$name" "$fw" 2048 -device "virtio-net-pci,netdev=n0,mac=$mac,bootindex=1$rom" \
        -drive "if=none,id=d0,file=$disk,format=raw" -device "virtio-blk-pci,drive=d0,serial=$name,bootindex=2"
}
start_qemu() { # name firmware memory-MiB qemu-args...
    local name=$1 fw=$2 mem=$3 tap=tap$RANDOM
    shift 3
    inns ip tuntap add "$tap" mode tap
    inns ip link set "$tap" master br0 up
    local fwargs=()
    if [ "$fw" = uefi-sb ]; then
        # Secure Boot on, Microsoft's keys enrolled (Debian ovmf: secboot code, ms vars);
        # the secure flash needs SMM, so q35.
        [ -f "$WORK/$name.vars" ] || cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$WORK/$name.vars"
        # shellcheck disable=SC2054  # QEMU's own comma-separated values
        fwargs=(-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on
            -drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
            -drive "if=pflash,format=raw,unit=1,file=$WORK/$name.vars")
    elif [ "$fw" = uefi ] || [ "$fw" = uefi-http ]; then
        [ -f "$WORK/$name.vars" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$WORK/$name.vars" 2>/dev/null || cp /usr/share/OVMF/OVMF_VARS.fd "$WORK/$name.vars"
        local code=/usr/share/OVMF/OVMF_CODE_4M.fd; [ -f "$code" ] || code=/usr/share/OVMF/OVMF_CODE.fd
        fwargs=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" -drive "if=pflash,format=raw,unit=1,file=$WORK/$name.vars")
        # UEFI HTTP boot only: OVMF's PXE and IPv6 switched off through its fw_cfg knobs
        # (OvmfPkg/RUNTIME_CONFIG.md), so the HTTPv4 boot option is the only network one.
        # shellcheck disable=SC2054  # QEMU's own comma-separated values
        [ "$fw" = uefi-http ] && fwargs+=(-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=no
            -fw_cfg name=opt/org.tianocore/IPv6Support,string=no)
    fi
    local cmd=(ip netns exec "$NS" qemu-system-x86_64 "${ACCEL[@]}" -m "$mem" -display none -serial "file:$WORK/$name.serial"
        -monitor "unix:$WORK/$name.mon,server,nowait" "${fwargs[@]}"
        -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" "$@")
    # The same machine again, as a power driver switches it on (vm_outlet): its tap,
    # disk and firmware variables are kept.
    printf 'exec' > "$WORK/$name.cmd"; printf ' %q' "${cmd[@]}" >> "$WORK/$name.cmd"
    # Not through a shell function: $! must be QEMU itself (ip netns exec execs it).
    "${cmd[@]}" >"$WORK/$name.qemu" 2>&1 &
    QEMU_PIDS+=($!)
    echo $! > "$WORK/$name.pid"
}
# vm_alive name: its QEMU runs (a zombie is off: the power is gone).
vm_alive() {
    local pid st
    pid=$(cat "$WORK/$1.pid" 2>/dev/null) || return 1
    st=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st:0:1}" != Z ]
}
# vm_outlet: writes $WORK/vm-power, a PDU for the VMs start_qemu made (`on NAME` starts
# the machine again as first started, `off NAME` cuts its power, `status NAME`), for a
# machine's `power: { command: ... }`, run by bootplane inside $NS.
vm_outlet() {
    cat > "$WORK/vm-power" <<PDU
#!/bin/bash
op=\$1 name=\$2 work=$WORK
WORK=\$work
$(declare -f vm_alive stop_vm)
pidf=\$work/\$name.pid
case \$op in
status) if vm_alive "\$name"; then echo on; else echo off; fi ;;
off) stop_vm "\$name" ;;
on) vm_alive "\$name" && exit 0
    [ -f "\$work/\$name.cmd" ] || { echo "no machine \$name" >&2; exit 1; }
    rm -f "\$pidf"
    setsid bash -c 'echo \$\$ > "\$1"; exec bash "\$2"' _ "\$pidf" "\$work/\$name.cmd" </dev/null >"\$work/\$name.qemu" 2>&1 &
    for _ in \$(seq 50); do [ -s "\$pidf" ] && exit 0; sleep 0.1; done
    echo "\$name did not start" >&2; exit 1 ;;
*) echo "usage: vm-power on|off|status NAME" >&2; exit 2 ;;
esac
PDU
    chmod +x "$WORK/vm-power"
}
# stop_vm name: cuts its power, whoever started it (start_qemu or its power driver), and
# returns once it is gone; also the PDU's `off`.
stop_vm() {
    local pid
    pid=$(cat "$WORK/$1.pid" 2>/dev/null) || return 0
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null  # reaped here when this shell started it
    while vm_alive "$1"; do sleep 0.1; done
    return 0
}
stop_last_vm() { kill -9 "${QEMU_PIDS[-1]}" 2>/dev/null; wait "${QEMU_PIDS[-1]}" 2>/dev/null; return 0; }

machine_field() { # name field
    api "/v1/machines/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}
state_of() { machine_field "$1" state; }
attempts_of() { machine_field "$1" install_attempts; }
wait_state() { # name state timeout
    local t=0
    while [ "$t" -lt "$3" ]; do
        [ "$(state_of "$1")" = "$2" ] && return 0
        sleep 2; t=$((t + 2))
    done
    return 1
}
decisions() { # name -> decisions served to it, oldest first
    api "/v1/events?machine=$1&limit=1000" | python3 -c 'import json,sys; print(" ".join(e["detail"].get("decision","") for e in json.load(sys.stdin) if e["kind"]=="boot.script"))'
}
serial_tail() { tail -c "${2:-600}" "$WORK/$1.serial" 2>/dev/null | tr -d '\r' | tr -c '[:print:]\n' '?'; }
