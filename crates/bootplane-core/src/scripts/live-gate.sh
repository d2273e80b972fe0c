#!/bin/bash
# Runs in a live ISO made by `bootplane media NAME --format live-iso`, before
# coreos-installer touches the disk (bootplane): asks bootplane the question a network
# boot asks, the boot decision for this machine. Only an `install` answer lets the
# install run, with that answer's one-time config URLs; any other answer (installed, disk
# already written, failed, unknown machine) or none at all stops here, so a stick left in
# the drive never reinstalls a machine, and the stick itself holds no secret.
set -uo pipefail

# shellcheck source=/dev/null
. /etc/bootplane/media.env
# @include bp-curl.sh (shared by every machine script; inserted when it is served)
umask 077
mkdir -p /run/bootplane /etc/coreos/installer.d
platform=pcbios
[ -d /sys/firmware/efi ] && platform=efi
url="$BOOTPLANE_URL/v1/boot/live?mac=$BOOTPLANE_MAC&uuid=$BOOTPLANE_UUID&arch=$(uname -m)&platform=$platform"
answer=/run/bootplane/live-answer
code=000
# The network may take a while; bootplane may be restarting.
for _ in $(seq 1 60); do
    code=$(bp_curl -sS -o "$answer" -w '%{http_code}' "$url" || true)
    [ "$code" = 200 ] && break
    sleep 5
done
if [ "$code" != 200 ]; then
    echo "bootplane: no answer from $BOOTPLANE_URL (HTTP $code); not installing" >&2
    exit 1
fi
declare -A a=()
while IFS='=' read -r k v; do
    case "$k" in '' | '#'*) continue ;; esac
    a[$k]=$v
done < "$answer"
if [ "${a[decision]:-}" != install ]; then
    echo "bootplane: ${a[note]:-no install answer}; not installing. Remove the boot media to boot the disk." >&2
    exit 1
fi
# The machine's credential, for the disk-written report, from this boot's one-time URL.
code=$(bp_curl -sS -o /run/bootplane/machine.env -w '%{http_code}' "${a[env_url]}" || true)
if [ "$code" != 200 ]; then
    echo "bootplane: the machine's environment was refused (HTTP $code); not installing" >&2
    exit 1
fi
install -m 0600 /run/bootplane/machine.env /etc/bootplane/machine.env
# `insecure-ignition`: what coreos-installer's own service adds for the
# `coreos.inst.ignition_url` of a network boot; the URL is this attempt's, from bootplane.
{
    printf 'dest-device: "%s"\n' "${a[dest_device]}"
    printf 'ignition-url: "%s"\n' "${a[ignition_url]}"
    printf 'insecure-ignition: true\n'
    [ -n "${a[image_url]:-}" ] && printf 'image-url: "%s"\n' "${a[image_url]}"
    [ "${a[insecure]:-}" = true ] && printf 'insecure: true\n'
} > /etc/coreos/installer.d/60-bootplane-attempt.yaml
echo "bootplane: installing ${a[machine]} on ${a[dest_device]}"
