#!/usr/bin/env bash
# Reverse mode to an HTTPS backend that speaks HTTP/2 (nginx of ../shared/bench, ALPN h2):
# every client's requests on carriers (the default: one upstream HTTP/2 connection carries
# the streams of every client connection, one per driver thread) against
# --no-shared-streams (each client connection's requests on upstream connections of its
# own, handed to the next client connection when idle), with HAProxy 2.6 in the same run
# (HTTP/1.1 to the backend, `http-reuse always`). Client TLS is terminated at the proxy.
#
#   bench/bench-carriers.sh [--runs N] [--proxy PATH]
#
# Tests (proxyload from ../shared/bench/tools, /1k, GW_SECS seconds each):
#   tls-ka    HTTPS keep-alive, HTTP/1.1 clients, 50 connections
#   tls-new   HTTPS, one request per new client TLS connection, 10 loops
# Env: SHARED_BENCH (../shared/bench), BENCH_STATE, PROXY_PORT (18888), GW_SECS (10),
# CARRIER_KINDS (default "sansproxy sansproxy-own haproxy").
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
D="${GW_SECS:-10}"
ensure_origin; ensure_proxyload
PKI="$BENCH_STATE/pki"
out="$BENCH_STATE/logs/carriers.jsonl"; : > "$out"
UP="https://127.0.0.1:$ORIGIN_HTTPS_PORT"
KINDS="${CARRIER_KINDS:-sansproxy sansproxy-own haproxy}"
args_for() { case "$1" in tls-ka) echo "-c 50";; tls-new) echo "--new-conn -c 10";; esac; }
start_gateway() {
    local kind="$1"
    local tls=(--listen-tls --cert "$PKI/origin-combined.pem" --upstream-ca "$PKI/origin-ca.pem")
    case "$kind" in
        sansproxy) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                       --reverse "$UP" "${tls[@]}";;
        sansproxy-own) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                       --reverse "$UP" --no-shared-streams "${tls[@]}";;
        haproxy) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" bash "$SHARED/peers/haproxy.sh" "$PROXY_PORT" "$UP" "$BENCH_STATE";;
    esac
    PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "$kind did not listen"
}
for r in $(seq 1 "$RUNS"); do
    for test in tls-ka tls-new; do
        # shellcheck disable=SC2046
        load direct "$test" "$UP" $(args_for "$test") --insecure
        for kind in $KINDS; do
            start_gateway "$kind"
            # shellcheck disable=SC2046
            load "$kind" "$test" "https://127.0.0.1:$PROXY_PORT" $(args_for "$test") --insecure
            stop_proxy || true
        done
    done
done
python3 - "$out" "$KINDS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
kinds = sys.argv[2].split()
def rps(r):
    for k in ("rps", "req_per_sec", "requests_per_sec"):
        if k in r:
            return float(r[k])
    return float(r["requests"]) / float(r["secs"])
for test in ("tls-ka", "tls-new"):
    med = {}
    for label in ["direct"] + kinds:
        vals = [rps(r) for r in rows if r["test"] == test and r["label"] == label]
        med[label] = statistics.median(vals) if vals else float("nan")
    d = med["direct"]
    print(f"{test:8} req/s: direct {d:.0f}; " + ", ".join(f"{k} {v:.0f} ({v / d:.2f})" for k, v in med.items() if k != "direct"))
PY
