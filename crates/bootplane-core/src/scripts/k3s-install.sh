#!/bin/bash
# Installs k3s on this node once (bootplane). Reads the machine's one-time credential
# from machine.env and the pinned release from k3s.env, fetches this node's join
# material from bootplane, installs the k3s binary (verified), and leaves k3s to its
# own unit. A stamp file makes every later boot skip this entirely.
set -euo pipefail

# shellcheck source=/dev/null
. /etc/bootplane/machine.env
# shellcheck source=/dev/null
. /etc/bootplane/k3s.env

STAMP=/var/lib/bootplane/k3s-installed
[ -e "$STAMP" ] && exit 0
umask 077
mkdir -p /var/lib/bootplane /etc/rancher/k3s /run/bootplane

# @include bp-curl.sh (shared by every machine script; inserted when it is served)

# fetch URL FILE [SHA256]: download with retries, verify, then move into place.
fetch() {
    bp_curl -fsSL --retry 10 --retry-delay 3 --retry-connrefused -o "$2.part" "$1"
    if [ -n "${3:-}" ]; then
        echo "$3  $2.part" | sha256sum -c --quiet -
    fi
    mv -f "$2.part" "$2"
}

# The credential goes in a header file so it never shows in the process list.
auth=/run/bootplane/auth
printf 'Authorization: Bearer %s\n' "$BOOTPLANE_CREDENTIAL" > "$auth"

# Join material. Joiners wait here (HTTP 503) until the bootstrap server reported.
join=/run/bootplane/join
code=000
for _ in $(seq 1 360); do
    code=$(bp_curl -sS -o "$join" -w '%{http_code}' -H "@$auth" \
        "$BOOTPLANE_URL/v1/machines/$BOOTPLANE_MACHINE/join" || true)
    case "$code" in
        200) break ;;
        000 | 502 | 503 | 504) sleep 10 ;;
        *) echo "bootplane refused the join material (HTTP $code)" >&2; exit 1 ;;
    esac
done
if [ "$code" != 200 ]; then
    echo "gave up waiting for join material (last HTTP $code)" >&2
    exit 1
fi
sed -n 's/^K3S_TOKEN=//p' "$join" > /etc/rancher/k3s/token
if grep -q '^K3S_AGENT_TOKEN=' "$join"; then
    sed -n 's/^K3S_AGENT_TOKEN=//p' "$join" > /etc/rancher/k3s/agent-token
fi
rm -f "$join"

# The pinned k3s binary: from bootplane (air-gapped) or the GitHub release, checked
# against the release's own sha256sum file.
case "$(uname -m)" in
    x86_64) arch=amd64; bin=k3s ;;
    aarch64) arch=arm64; bin=k3s-arm64 ;;
    *) echo "k3s: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
mkdir -p "$K3S_BIN_DIR"
if [ -n "${K3S_BINARY_URL:-}" ]; then
    fetch "$K3S_BINARY_URL" "$K3S_BIN_DIR/k3s" "${K3S_BINARY_SHA256:-}"
else
    release="https://github.com/k3s-io/k3s/releases/download/${K3S_VERSION//+/%2B}"
    fetch "$release/sha256sum-$arch.txt" /run/bootplane/k3s.sha256
    sum=$(awk -v f="$bin" '$2 == f { print $1 }' /run/bootplane/k3s.sha256)
    if [ -z "$sum" ]; then
        echo "no checksum for $bin in $release/sha256sum-$arch.txt" >&2
        exit 1
    fi
    fetch "$release/$bin" "$K3S_BIN_DIR/k3s" "$sum"
fi
chmod 0755 "$K3S_BIN_DIR/k3s"

# Air-gapped images: k3s picks the archive's format from its file name, so name it by
# its magic bytes (zstd, gzip, or plain tar).
if [ -n "${K3S_IMAGES_URL:-}" ]; then
    images=/var/lib/rancher/k3s/agent/images/k3s-airgap-images
    mkdir -p "${images%/*}"
    fetch "$K3S_IMAGES_URL" "$images.download" "${K3S_IMAGES_SHA256:-}"
    case "$(head -c4 "$images.download" | od -An -tx1 | tr -d ' \n')" in
        28b52ffd) mv -f "$images.download" "$images.tar.zst" ;;
        1f8b*) mv -f "$images.download" "$images.tar.gz" ;;
        *) mv -f "$images.download" "$images.tar" ;;
    esac
fi

# fcos: k3s needs its SELinux policy, and its binary the label that policy defines.
if [ "${K3S_SELINUX:-0}" = 1 ]; then
    if ! rpm -q k3s-selinux > /dev/null 2>&1; then
        pkg=k3s-selinux
        if [ -n "${K3S_SELINUX_RPM_URL:-}" ]; then
            fetch "$K3S_SELINUX_RPM_URL" /var/tmp/k3s-selinux.rpm "${K3S_SELINUX_RPM_SHA256:-}"
            pkg=/var/tmp/k3s-selinux.rpm
        fi
        rpm-ostree install --idempotent --apply-live --allow-inactive "$pkg"
    fi
    restorecon -v "$K3S_BIN_DIR/k3s"
fi

touch "$STAMP"
