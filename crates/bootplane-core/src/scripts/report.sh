#!/bin/bash
# Tells bootplane how this install ended (bootplane). With k3s, waits until the cluster
# sees this node Ready (or k3s has failed) first; a bootstrap server also hands over its cluster CA hash and
# kubeconfig so the other nodes can join securely. On failure it sends the failing
# unit's last log lines. Runs until one report is accepted, then never again.
set -uo pipefail

# shellcheck source=/dev/null
. /etc/bootplane/machine.env
if [ -r /etc/bootplane/k3s.env ]; then
    # shellcheck source=/dev/null
    . /etc/bootplane/k3s.env
fi

# @include bp-curl.sh (shared by every machine script; inserted when it is served)

STAMP=/var/lib/bootplane/reported
[ -e "$STAMP" ] && exit 0
umask 077
mkdir -p /var/lib/bootplane /run/bootplane

state=installed
unit=
if [ -n "${K3S_ROLE:-}" ]; then
    # `installed` is what the cluster observes: this node registered and Ready, read with
    # the node's own credentials (a server's admin kubeconfig; an agent's kubelet
    # kubeconfig, which k3s writes only after the server accepted its token and node
    # password). A unit being active says nothing: a refused agent retries forever.
    unit=k3s.service
    kubeconfig=/etc/rancher/k3s/k3s.yaml
    if [ "$K3S_ROLE" = agent ]; then
        unit=k3s-agent.service
        kubeconfig=/var/lib/rancher/k3s/agent/kubelet.kubeconfig
    fi
    state=failed
    refused=0
    for _ in $(seq 1 180); do
        if systemctl is-failed --quiet bootplane-k3s-install.service; then
            unit=bootplane-k3s-install.service
            break
        fi
        ready=$("$K3S_BIN_DIR/k3s" kubectl --kubeconfig "$kubeconfig" get node "$K3S_NODE_NAME" \
            -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2> /dev/null)
        if [ "$ready" = True ]; then state=installed; break; fi
        # k3s's own words for a refusal it will retry forever (wrong token, another node
        # password under this name, a CA that is not the token's, a server whose old etcd
        # member is still in the cluster: fatal, restarted every 5 s): after a minute of
        # them, report the failure with its log rather than wait out the quarter hour.
        if journalctl -u "$unit" -b --since -20s --no-pager -o cat 2> /dev/null |
            grep -qE 'Node password rejected|401 Unauthorized|token CA hash does not match|ETCD join failed'; then
            refused=$((refused + 1))
            [ "$refused" -ge 12 ] && break
        else
            refused=0
        fi
        sleep 5
    done
fi

ca=
if [ "$state" = installed ] && [ "${K3S_BOOTSTRAP:-0}" = 1 ]; then
    # The hash k3s itself puts into its secure token (K10<hash>::server:...). It is the
    # root's when server-ca.crt holds a chain, so hashing that file would break joins.
    ca=$(sed -n 's/^K10\([0-9a-f]\{64\}\)::.*/\1/p' /var/lib/rancher/k3s/server/token 2> /dev/null)
    if [ -z "$ca" ]; then
        echo "k3s is up but /var/lib/rancher/k3s/server/token holds no K10<ca-hash>:: token" >&2
        state=failed
        unit=k3s.service
    fi
fi
body="{\"state\":\"$state\",\"detail\":{\"hostname\":\"$(hostname)\"}"
if [ -n "$ca" ]; then
    kc=$(base64 -w0 /etc/rancher/k3s/k3s.yaml)
    body="$body,\"ca_hash\":\"$ca\",\"kubeconfig\":\"$kc\""
fi
if [ "$state" = failed ]; then
    log=$(journalctl -u "$unit" -n 40 --no-pager -o cat 2> /dev/null | base64 -w0)
    body="$body,\"unit\":\"$unit\",\"log_tail\":\"$log\""
fi
body="$body}"

auth=/run/bootplane/auth
printf 'Authorization: Bearer %s\n' "$BOOTPLANE_CREDENTIAL" > "$auth"
printf '%s' "$body" > /run/bootplane/report.json
for _ in $(seq 1 60); do
    code=$(bp_curl -sS -o /run/bootplane/report.out -w '%{http_code}' -X POST -H "@$auth" \
        -H 'Content-Type: application/json' --data-binary @/run/bootplane/report.json \
        "$BOOTPLANE_URL/v1/machines/$BOOTPLANE_MACHINE/report" || true)
    case "$code" in
        2??) touch "$STAMP"; exit 0 ;;
        # Refused: the credential is wrong or already used (by someone else, if not by
        # an earlier run of this unit), the machine is not being installed, or the
        # report itself was refused. Say so loudly; never pretend it was recorded.
        4??)
            echo "bootplane refused this machine's report (HTTP $code): $(cat /run/bootplane/report.out 2> /dev/null)" >&2
            echo "check \`bootplane machines show $BOOTPLANE_MACHINE\`" >&2
            exit 1
            ;;
        *) sleep 10 ;;
    esac
done
echo "could not report to $BOOTPLANE_URL (last HTTP $code)" >&2
exit 1
