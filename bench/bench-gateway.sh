#!/usr/bin/env bash
# Reverse mode as a gateway, against HAProxy in the same run: each test runs direct to the
# origin (nginx of ../shared/bench), then through sansproxy in reverse mode (with shared
# upstream connections, per-core threads, the default; the same with --runtime
# work-stealing; and with --no-server-reuse), then through HAProxy 2.6 in reverse
# mode with `http-reuse always` (../shared/bench/peers/haproxy.sh). One backend for now.
#
#   bench/bench-gateway.sh [--runs N] [--proxy PATH]
#
# Tests (proxyload from ../shared/bench/tools, /1k, GW_SECS seconds each):
#   plain-ka    plain HTTP keep-alive, 50 connections
#   plain-new   plain HTTP, one request per new client connection, 10 loops
#   tls-new     HTTPS, one request per new client TLS connection (TLS terminated at the
#               proxy, TLS to the backend), 10 loops
# Env: SHARED_BENCH (../shared/bench), BENCH_STATE, PROXY_PORT (18888), GW_SECS (10).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
D="${GW_SECS:-10}"
ensure_origin; ensure_proxyload
PKI="$BENCH_STATE/pki"
out="$BENCH_STATE/logs/gateway.jsonl"; : > "$out"
PLAIN="http://127.0.0.1:$ORIGIN_HTTP_PORT"
TLS="https://127.0.0.1:$ORIGIN_HTTPS_PORT"

args_for() { case "$1" in
    plain-ka) echo "-c 50";;
    plain-new|tls-new) echo "--new-conn -c 10";; esac; }
upstream_for() { case "$1" in tls-new) echo "$TLS";; *) echo "$PLAIN";; esac; }
# kind test: start the gateway in front of the test's upstream; PROXY_PID is set.
start_gateway() {
    local kind="$1" test="$2" up; up="$(upstream_for "$test")"
    local tls=(); [ "$test" = tls-new ] && tls=(--listen-tls --cert "$PKI/origin-combined.pem" --upstream-ca "$PKI/origin-ca.pem")
    case "$kind" in
        sansproxy) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                       --reverse "$up" "${tls[@]}";;
        sansproxy-ws) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                       --reverse "$up" --runtime work-stealing "${tls[@]}";;
        sansproxy-noreuse) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                       --reverse "$up" --no-server-reuse "${tls[@]}";;
        haproxy) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" bash "$SHARED/peers/haproxy.sh" "$PROXY_PORT" "$up" "$BENCH_STATE";;
    esac
    PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "$kind did not listen"
}
for r in $(seq 1 "$RUNS"); do
    for test in plain-ka plain-new tls-new; do
        up="$(upstream_for "$test")"
        ca=(); [ "$test" = tls-new ] && ca=(--insecure)
        # shellcheck disable=SC2046
        load direct "$test" "$up" $(args_for "$test") "${ca[@]}"
        for kind in sansproxy sansproxy-ws sansproxy-noreuse haproxy; do
            start_gateway "$kind" "$test"
            url="http://127.0.0.1:$PROXY_PORT"; [ "$test" = tls-new ] && url="https://127.0.0.1:$PROXY_PORT"
            # shellcheck disable=SC2046
            load "$kind" "$test" "$url" $(args_for "$test") "${ca[@]}"
            stop_proxy || true
        done
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def rps(r):
    for k in ("rps", "req_per_sec", "requests_per_sec"):
        if k in r:
            return float(r[k])
    return float(r["requests"]) / float(r["secs"])
for test in ("plain-ka", "plain-new", "tls-new"):
    med = {}
    for label in ("direct", "sansproxy", "sansproxy-ws", "sansproxy-noreuse", "haproxy"):
        vals = [rps(r) for r in rows if r["test"] == test and r["label"] == label]
        med[label] = statistics.median(vals) if vals else float("nan")
    d = med["direct"]
    print(f"{test:9} req/s: direct {d:.0f}; " + ", ".join(f"{k} {v:.0f} ({v / d:.2f})" for k, v in med.items() if k != "direct")
          + f"; sansproxy/HAProxy {med['sansproxy'] / med['haproxy']:.2f}")
PY
