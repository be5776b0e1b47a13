#!/usr/bin/env bash
# Reverse mode balancing three backends, against HAProxy 2.6 balancing the same three in the
# same run. The backends are one more nginx (one worker, like the shared origin) listening on
# three ports and serving the shared bench's files; "direct" is proxyload against one of them.
#
#   bench/bench-lb.sh [--runs N] [--proxy PATH]
#
# Tests (proxyload from ../shared/bench/tools, /1k, LB_SECS seconds each):
#   plain-ka    plain HTTP keep-alive, 50 connections
#   plain-new   one request per new client connection, 10 loops
#   tls-new     one request per new client TLS connection, 10 loops: TLS terminated at the
#               gateway (the origin's certificate), TLS to the three backends (the same nginx
#               on three more ports, with TLS)
# Gateways: sansproxy --lb round-robin, least-conn, p2c; HAProxy `balance roundrobin` and
# `balance leastconn` with `http-reuse always`.
# Env: SHARED_BENCH (../shared/bench), BENCH_STATE, PROXY_PORT (18888), LB_SECS (10),
# LB_TESTS ("plain-ka plain-new tls-new").
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
D="${LB_SECS:-10}"
ensure_origin; ensure_proxyload
PORTS=(18181 18182 18183)
TLS_PORTS=(18191 18192 18193)
PKI="$BENCH_STATE/pki"
start_backends lb-nginx
out="$BENCH_STATE/logs/lb.jsonl"; : > "$out"

args_for() { case "$1" in plain-ka) echo "-c 50";; plain-new) echo "--new-conn -c 10";; tls-new) echo "--new-conn -c 10 --insecure";; esac; }
haproxy_cfg() { # balance test: a config balancing the three backends
    local d; d=$(mktemp -d)
    local bind="bind 127.0.0.1:$PROXY_PORT" ports=("${PORTS[@]}") ssl=""
    if [ "$2" = tls-new ]; then
        bind="$bind ssl crt $PKI/origin-combined.pem alpn http/1.1"; ports=("${TLS_PORTS[@]}")
        ssl=" ssl verify required ca-file $PKI/origin-ca.pem sni str(localhost)"
    fi
    {
        echo "global"; echo "    maxconn 9000"
        echo "defaults"; echo "    mode http"; echo "    timeout connect 5s"; echo "    timeout client 300s"
        echo "    timeout server 300s"; echo "    timeout http-keep-alive 300s"; echo "    http-reuse always"
        echo "frontend fe"; echo "    $bind"; echo "    default_backend be"
        echo "backend be"; echo "    balance $1"
        for p in "${ports[@]}"; do echo "    server s$p 127.0.0.1:$p maxconn 0$ssl"; done
    } > "$d/haproxy.cfg"
    echo "$d/haproxy.cfg"
}
start_gateway() { # kind test
    local backends=() tls=()
    if [ "$2" = tls-new ]; then
        for p in "${TLS_PORTS[@]}"; do backends+=(--reverse "https://127.0.0.1:$p"); done
        tls=(--listen-tls --cert "$PKI/origin-combined.pem" --upstream-ca "$PKI/origin-ca.pem")
    else
        for p in "${PORTS[@]}"; do backends+=(--reverse "http://127.0.0.1:$p"); done
    fi
    case "$1" in
        sansproxy-*) start_bg gw "$BENCH_STATE/logs/lb-$1.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                         "${backends[@]}" --lb "${1#sansproxy-}" "${tls[@]}";;
        haproxy-*) start_bg gw "$BENCH_STATE/logs/lb-$1.log" haproxy -db -f "$(haproxy_cfg "${1#haproxy-}" "$2")";;
    esac
    PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "$1 did not listen"
}
KINDS=(sansproxy-round-robin sansproxy-least-conn sansproxy-p2c haproxy-roundrobin haproxy-leastconn)
for r in $(seq 1 "$RUNS"); do
    for test in ${LB_TESTS:-plain-ka plain-new tls-new}; do
        direct="http://127.0.0.1:${PORTS[0]}" url="http://127.0.0.1:$PROXY_PORT"
        [ "$test" = tls-new ] && direct="https://127.0.0.1:${TLS_PORTS[0]}" url="https://127.0.0.1:$PROXY_PORT"
        # shellcheck disable=SC2046
        load direct "$test" "$direct" $(args_for "$test")
        for kind in "${KINDS[@]}"; do
            start_gateway "$kind" "$test"
            # shellcheck disable=SC2046
            load "$kind" "$test" "$url" $(args_for "$test")
            stop_proxy || true
        done
    done
done
python3 - "$out" "${KINDS[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
kinds = sys.argv[2:]
def rps(r):
    for k in ("rps", "req_per_sec", "requests_per_sec"):
        if k in r:
            return float(r[k])
    return float(r["requests"]) / float(r["secs"])
for test in ("plain-ka", "plain-new", "tls-new"):
    med = {}
    for label in ["direct"] + kinds:
        vals = [rps(r) for r in rows if r["test"] == test and r["label"] == label]
        med[label] = statistics.median(vals) if vals else float("nan")
    d = med["direct"]
    print(f"{test:9} req/s: direct {d:.0f}; " + ", ".join(f"{k} {v:.0f} ({v / d:.2f})" for k, v in med.items() if k != "direct"))
PY
