# shellcheck shell=bash
# Shared by the benches that build network namespaces (sourced, never run).
# bench_cleanup: kills every process in each of NAMESPACES (an array), deletes the
# namespaces and WORK. Set as the EXIT trap; also safe to call before anything exists.
# shellcheck disable=SC2317  # run by the EXIT trap
bench_cleanup() {
    local ns p
    for ns in "${NAMESPACES[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}
