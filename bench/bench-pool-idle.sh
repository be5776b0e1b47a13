#!/usr/bin/env bash
# Memory per idle pooled upstream connection. sansproxy in reverse mode in front of the shared
# bench's nginx (plain, then TLS); 1000 client connections at once each send one request and
# close, so that up to 1000 upstream connections are parked in the shared pool when they
# leave. The same load runs against a proxy that parks nothing (--upstream-max-idle 0): the
# difference of the two resident sizes, over the connections parked (read from /metrics),
# is what one idle pooled connection costs (client-side churn is the same in both runs, so
# what the allocator keeps of it cancels out).
#
#   bench/bench-pool-idle.sh [--runs N] [--proxy PATH]
# Env: SHARED_BENCH, BENCH_STATE, PROXY_PORT (18888), POOL_CONNS (1000).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
N="${POOL_CONNS:-1000}"
ensure_origin; ensure_proxyload
METRICS_PORT=18890

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
parked() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^sansproxy_upstream_idle_connections/ {print $2}' | head -1; }

# run LABEL UPSTREAM MAX_IDLE: prints "rss_kb parked"
run() {
    local label="$1" up="$2" idle="$3" url
    start_bg pool "$BENCH_STATE/logs/pool-$label.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
        --reverse "$up" --upstream-ca "$BENCH_STATE/pki/origin-ca.pem" --upstream-max-idle "$idle" \
        --upstream-idle-timeout 120 --metrics "127.0.0.1:$METRICS_PORT"
    local pid=$BG_PID; PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "the proxy did not listen"
    url="http://127.0.0.1:$PROXY_PORT/1k"
    "$PROXYLOAD" --url "$url" --new-conn -c "$N" -d 3 >/dev/null
    sleep 1
    echo "$(rss_kb "$pid") $(parked)"
    stop_proxy || true
}

for r in $(seq 1 "$RUNS"); do
    for scheme in http https; do
        up="http://127.0.0.1:$ORIGIN_HTTP_PORT"
        [ "$scheme" = https ] && up="https://localhost:$ORIGIN_HTTPS_PORT"
        read -r kept_rss kept_n < <(run "$scheme-kept" "$up" "$N")
        read -r none_rss _ < <(run "$scheme-none" "$up" 0)
        per=$(python3 -c "print(round(($kept_rss - $none_rss) / max(float('$kept_n'), 1), 1))")
        echo "{\"scheme\":\"$scheme\",\"parked\":$kept_n,\"rss_kb_parked\":$kept_rss,\"rss_kb_none\":$none_rss,\"kb_per_idle_conn\":$per}"
    done
done
