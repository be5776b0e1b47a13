#!/usr/bin/env bash
# Reverse mode as a gateway, against HAProxy in the same run: round robin over three backends
# (three ports of one nginx, started here with the origin's files and one worker, as the
# origin has), each test run direct to the first backend, then through sansproxy in reverse
# mode (shared upstream connections and per-core threads, the defaults; the same with
# --runtime work-stealing; and with --no-server-reuse), then through HAProxy 2.6 with a
# configuration written here: `balance roundrobin`, `http-reuse always`, and the same fields
# sansproxy adds by default (X-Forwarded-For, -Proto, -Host, RFC 7239 Forwarded; 2.6 has no
# `option forwarded`, so that one is set by hand), so that both send the backends the same
# requests.
#
#   bench/bench-gateway.sh [--runs N] [--proxy PATH]
#
# Tests (proxyload from ../shared/bench/tools, /1k, GW_SECS seconds each):
#   plain-ka    plain HTTP keep-alive, 50 connections
#   plain-new   plain HTTP, one request per new client connection, 10 loops
#   tls-new     HTTPS, one request per new client TLS connection (TLS terminated at the
#               proxy, TLS to the backends), 10 loops
# Env: SHARED_BENCH (../shared/bench), BENCH_STATE, PROXY_PORT (18888), GW_SECS (10),
#      GW_PORT (18181: backends on GW_PORT..+2 plain, GW_PORT+300..+302 TLS).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
D="${GW_SECS:-10}"
ensure_origin; ensure_proxyload
PKI="$BENCH_STATE/pki"
out="$BENCH_STATE/logs/gateway.jsonl"; : > "$out"
GW_PORT="${GW_PORT:-18181}"
PORTS=("$GW_PORT" $((GW_PORT + 1)) $((GW_PORT + 2)))
TLS_PORTS=($((GW_PORT + 300)) $((GW_PORT + 301)) $((GW_PORT + 302)))

start_backends gw-nginx

# The haproxy configuration for a test: TLS on the listener and to the backends for tls-new.
haproxy_cfg() {
    local test="$1" bind="bind 127.0.0.1:$PROXY_PORT" tls="" proto=http i
    if [ "$test" = tls-new ]; then
        bind="$bind ssl crt $PKI/origin-combined.pem alpn http/1.1"
        tls=" ssl verify required ca-file $PKI/origin-ca.pem sni str(localhost)"; proto=https
    fi
    cat <<CFG
global
    maxconn 9000
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    $bind
    option forwardfor
    http-request set-header Forwarded "for=%[src];proto=$proto;host=\\"%[req.hdr(host)]\\""
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend be
backend be
    balance roundrobin
CFG
    for i in 0 1 2; do
        if [ "$test" = tls-new ]; then
            echo "    server b$i 127.0.0.1:${TLS_PORTS[$i]}$tls maxconn 0"
        else
            echo "    server b$i 127.0.0.1:${PORTS[$i]} maxconn 0"
        fi
    done
}

args_for() { case "$1" in
    plain-ka) echo "-c 50";;
    plain-new|tls-new) echo "--new-conn -c 10";; esac; }
# The backends' URLs for sansproxy, and the first one's for the direct run.
reverse_for() {
    local i
    for i in 0 1 2; do
        if [ "$1" = tls-new ]; then echo "--reverse https://127.0.0.1:${TLS_PORTS[$i]}"
        else echo "--reverse http://127.0.0.1:${PORTS[$i]}"; fi
    done
}
direct_for() { if [ "$1" = tls-new ]; then echo "https://127.0.0.1:${TLS_PORTS[0]}"; else echo "http://127.0.0.1:${PORTS[0]}"; fi; }
# kind test: start the gateway in front of the test's backends; PROXY_PID is set.
start_gateway() {
    local kind="$1" test="$2"
    local tls=(); [ "$test" = tls-new ] && tls=(--listen-tls --cert "$PKI/origin-combined.pem" --upstream-ca "$PKI/origin-ca.pem")
    # shellcheck disable=SC2046
    local sans=("$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" $(reverse_for "$test") --lb round-robin "${tls[@]}")
    case "$kind" in
        sansproxy) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "${sans[@]}";;
        sansproxy-ws) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "${sans[@]}" --runtime work-stealing;;
        sansproxy-noreuse) start_bg gw "$BENCH_STATE/logs/gw-$kind.log" "${sans[@]}" --no-server-reuse;;
        haproxy)
            haproxy_cfg "$test" > "$BENCH_STATE/gw-haproxy.cfg"
            start_bg gw "$BENCH_STATE/logs/gw-$kind.log" haproxy -db -f "$BENCH_STATE/gw-haproxy.cfg";;
    esac
    PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "$kind did not listen"
}
for r in $(seq 1 "$RUNS"); do
    for test in plain-ka plain-new tls-new; do
        up="$(direct_for "$test")"
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
