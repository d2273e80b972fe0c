#!/bin/bash
# Runs in the Flatcar PXE live system (bootplane): fetches this machine's own Ignition,
# writes Flatcar to the install disk with it, tells bootplane the disk is written, and
# reboots into the installed system.
set -euo pipefail

# shellcheck source=/dev/null
. /etc/bootplane/installer.env
# shellcheck source=/dev/null
. /etc/bootplane/machine.env
umask 077

# @include bp-curl.sh (shared by every machine script; inserted when it is served)

fetch() {
    bp_curl -fsSL --retry 10 --retry-delay 3 --retry-connrefused -o "$2.part" "$1"
    if [ -n "${3:-}" ]; then
        echo "$3  $2.part" | sha256sum -c --quiet -
    fi
    mv -f "$2.part" "$2"
}

fetch "$BOOTPLANE_IGNITION_URL" /var/tmp/ignition.json
args=(-d "$INSTALL_DISK" -i /var/tmp/ignition.json)
if [ -n "${IMAGE_URL:-}" ]; then
    # bootplane's bundle image, already verified by its sha256: no internet needed.
    fetch "$IMAGE_URL" /var/tmp/flatcar_production_image.bin.bz2 "${IMAGE_SHA256:-}"
    args+=(-f /var/tmp/flatcar_production_image.bin.bz2)
fi
flatcar-install "${args[@]}"
bash /opt/bootplane/written
systemctl reboot
