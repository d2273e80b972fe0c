#!/bin/bash
# Runs in an installer's live environment after the disk is written and before it
# reboots (bootplane): tells bootplane the disk holds the new system, so the next network
# boot is answered with local boot instead of a second install. Without that answer a
# machine that network-boots first would reinstall itself until its attempts ran out, so
# when bootplane cannot be told, this fails and the installer does not reboot.
# `written failed UNIT` instead reports the install failed, with UNIT's last log lines.
set -uo pipefail

# shellcheck source=/dev/null
. /etc/bootplane/machine.env
# @include bp-curl.sh (shared by every machine script; inserted when it is served)
umask 077
mkdir -p /run/bootplane
# The credential goes in a header file so it never shows in the process list.
auth=/run/bootplane/auth
printf 'Authorization: Bearer %s\n' "$BOOTPLANE_CREDENTIAL" > "$auth"
body='{"state":"written"}'
done_msg="bootplane: disk written, reported; rebooting into the installed system"
if [ "${1:-}" = failed ]; then
    unit=${2:-}
    log=$(journalctl -u "$unit" -n 40 --no-pager -o cat 2> /dev/null | base64 -w0)
    body="{\"state\":\"failed\",\"unit\":\"$unit\",\"log_tail\":\"$log\"}"
    done_msg="bootplane: the install failed in $unit; reported"
fi
printf '%s' "$body" > /run/bootplane/written.json
code=000
for _ in $(seq 1 30); do
    code=$(bp_curl -sS -o /run/bootplane/written.out -w '%{http_code}' -X POST -H "@$auth" \
        -H 'Content-Type: application/json' --data-binary @/run/bootplane/written.json \
        "$BOOTPLANE_URL/v1/machines/$BOOTPLANE_MACHINE/report" || true)
    case "$code" in
        2??) echo "$done_msg"; exit 0 ;;
        000 | 502 | 503 | 504) sleep 5 ;;
        *) break ;;
    esac
done
echo "bootplane refused the disk-written report (HTTP $code): $(cat /run/bootplane/written.out 2> /dev/null)" >&2
echo "not rebooting: the next network boot would install again. Check the machine in bootplane." >&2
exit 1
