#!/usr/bin/env bash
# Where a bulk transfer's CPU goes. 1 GiB over HTTPS with curl through a proxy (../shared/bench's
# origin: nginx's /1g for a download, HTTP/2 both sides; the aux origin's /upload for an upload,
# HTTP/1.1 to the origin), and the same download direct: the rate, and the CPU seconds of the
# proxy, the origin and curl over the transfer, and how long the two cores sat idle meanwhile.
# The direct download shows what the bytes cost without the proxy; a proxied transfer can only
# go as fast as the cores do all three processes' work.
#
# The proxies (BULK_CPU_SETUPS, all by default):
#   forward   sansproxy intercepting (curl -x, the MITM CA)
#   reverse   sansproxy as a TLS reverse proxy to the origin (its certificate, re-encrypting)
#   haproxy   HAProxy 2.6 doing the same as `reverse` (../shared/bench/peers/haproxy.sh)
#
#   bench/bench-bulk-cpu.sh [--runs N] [--proxy PATH]
# Env: SHARED_BENCH, BENCH_STATE, PROXY_PORT (18888), BULK_CPU_TESTS ("dl ul"),
#      BULK_CPU_SETUPS ("forward reverse haproxy"), PROXY_ARGS (extra flags for sansproxy).
#      Stops only the processes it started.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
ensure_origin
case " ${BULK_CPU_SETUPS:-haproxy} " in *" haproxy "*)
    command -v haproxy >/dev/null || die "haproxy is not installed (apt-get install haproxy)";; esac
port_busy "$PROXY_PORT" && die "something already listens on port $PROXY_PORT"
PKI="$BENCH_STATE/pki"
HZ=$(getconf CLK_TCK)
out="$BENCH_STATE/logs/bulk-cpu.jsonl"; : > "$out"

# transfer LABEL TEST: one 1 GiB transfer through the proxy LABEL names (or direct); appends its
# JSON line to $out.
transfer() {
    local label="$1" test="$2" path origin origin_port what p0=0 p1=0 o0 o1 i0 i1 rate cpu args=() url
    if [ "$test" = dl ]; then
        path=/1g; origin_port=$ORIGIN_HTTPS_PORT; origin=$(pgrep -f "nginx: worker" | tr '\n' ' '); what=speed_download
    else
        path=/upload; origin_port=$AUX_HTTPS_PORT; origin=$(pgrep -f aux_origin.py | tr '\n' ' '); what=speed_upload
        args=(-T "$BENCH_STATE/www/1g")
    fi
    url="https://localhost:$origin_port$path"
    PID=""
    case "$label" in
        direct)
            args+=(--cacert "$PKI/origin-ca.pem");;
        forward)
            # shellcheck disable=SC2086
            start_proxy forward "bulk-cpu-$label" "$origin_port" ${PROXY_ARGS:-}
            args+=(-x "http://127.0.0.1:$PROXY_PORT" --cacert "$PKI/mitm-ca.pem");;
        reverse|haproxy)
            # shellcheck disable=SC2086
            start_proxy "$label" "bulk-cpu-$label" "$origin_port" ${PROXY_ARGS:-}
            url="https://localhost:$PROXY_PORT$path"; args+=(--cacert "$PKI/origin-ca.pem");;
        *) die "unknown setup $label";;
    esac
    if [ "$label" != direct ]; then
        PID=$BG_PID
        wait_port "$PROXY_PORT" 30 || die "$label did not listen"
    fi
    # shellcheck disable=SC2086
    o0=$(ticks $origin); i0=$(idle_ticks); [ -n "$PID" ] && p0=$(ticks "$PID")
    rate=$( { /usr/bin/time -f "%U %S" curl -s -o /dev/null --max-time 120 -w "%{$what}" "${args[@]}" "$url"; } 2> "$BENCH_STATE/logs/bulk-cpu-curl.time")
    # shellcheck disable=SC2086
    o1=$(ticks $origin); i1=$(idle_ticks); [ -n "$PID" ] && p1=$(ticks "$PID")
    if [ -n "$PID" ]; then stop_pid "$PID" || true; fi
    cpu=$(awk '{print $1 + $2}' "$BENCH_STATE/logs/bulk-cpu-curl.time")
    awk -v l="$label" -v t="$test" -v r="$rate" -v p=$((p1 - p0)) -v o=$((o1 - o0)) -v i=$((i1 - i0)) -v c="$cpu" -v hz="$HZ" \
        'BEGIN { printf "{\"label\": \"%s\", \"test\": \"%s\", \"MBps\": %.0f, \"proxy_s\": %.2f, \"origin_s\": %.2f, \"curl_s\": %.2f, \"idle_s\": %.2f}\n", l, t, r / 1e6, p / hz, o / hz, c, i / hz }' |
        tee -a "$out"
}

for r in $(seq 1 "$RUNS"); do
    for test in ${BULK_CPU_TESTS:-dl ul}; do
        for setup in ${BULK_CPU_SETUPS:-forward reverse haproxy}; do transfer "$setup" "$test"; done
        [ "$test" = dl ] && transfer direct dl
    done
done

"$PY" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"{'test':4} {'through':8} {'MB/s':>6} {'proxy':>6} {'origin':>6} {'curl':>6} {'idle':>6}   (seconds per GiB, medians)")
for key in dict.fromkeys((r["test"], r["label"]) for r in rows):
    rs = [r for r in rows if (r["test"], r["label"]) == key]
    m = lambda k: statistics.median(r[k] for r in rs)
    print(f"{key[0]:4} {key[1]:8} {m('MBps'):6.0f} {m('proxy_s'):6.2f} {m('origin_s'):6.2f} {m('curl_s'):6.2f} {m('idle_s'):6.2f}")
PY
