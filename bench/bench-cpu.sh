#!/usr/bin/env bash
# Where a request's CPU goes. Under the keep-alive loads of ../shared/bench/bench-https.sh
# (1 KiB over HTTPS from its nginx; HTTP/1.1 over 50 connections, HTTP/2 over 5 connections
# of 10 streams), each process's CPU time per request (user + system, from /proc over the
# middle 4 s of 8: the proxy, nginx's worker, the load generator) and the time the cores sat
# idle, per request. The four add up to what a request costs the machine's cores, so the
# rate is cores / sum, and a proxy's share of it is what it can win. Set up, in turn:
#
#   direct          proxyload to nginx
#   forward         sansproxy intercepting (CONNECT, minted certificate), HTTP/2 to nginx
#   forward-h1      the same with --no-http2 (HTTP/1.1 to nginx; not run for HTTP/2 clients)
#   reverse         sansproxy --listen-tls in reverse mode, streams shared on upstream connections
#   reverse-own     the same with --no-shared-streams
#   haproxy         HAProxy 2.6 in reverse mode (../shared/bench/peers/haproxy.sh)
#
#   bench/bench-cpu.sh [--runs N] [--proxy PATH]
# Env: SHARED_BENCH, BENCH_STATE, PROXY_PORT (18888), CPU_TESTS ("h1 h2"),
#      CPU_SETUPS (all of the above), CPU_SYSCALLS=1 (also count each process's system calls
#      and context switches per request over the same 4 s, with `perf stat`: a diagnostic,
#      as counting them costs a little of the rate). Stops only the processes it started.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
ensure_origin; ensure_proxyload
command -v haproxy >/dev/null || die "haproxy is not installed (apt-get install haproxy)"
SYSCALLS="${CPU_SYSCALLS:-0}"
[ "$SYSCALLS" = 1 ] && { command -v perf >/dev/null || die "CPU_SYSCALLS=1 needs perf (apt-get install linux-perf)"; }
# A proxy left listening there would take a share of the connections (SO_REUSEPORT), and of
# the work, unmeasured.
port_busy "$PROXY_PORT" && die "something already listens on port $PROXY_PORT"
PKI="$BENCH_STATE/pki"
out="$BENCH_STATE/logs/cpu.jsonl"; : > "$out"
HZ=$(getconf CLK_TCK)
CORES=$(nproc)

nginx_pids() { pgrep -f "nginx: worker" | tr '\n' ' '; }

# count NAME PIDS...: with CPU_SYSCALLS=1, system calls and context switches of the processes
# over the next 4 s, in the background, into logs/cpu-count-NAME.txt (perf stat's CSV).
count() {
    local name="$1"; shift
    [ "$SYSCALLS" = 1 ] || return 0
    local pids; pids=$(echo "$@" | tr -s ' ' ',' | sed 's/,$//')
    [ -n "$pids" ] || return 0
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pids" \
        -o "$BENCH_STATE/logs/cpu-count-$name.txt" -- sleep 4 2>/dev/null &
    COUNTERS+=($!)
}

# counted NAME: "syscalls switches" from count's file, or "0 0".
counted() {
    local f="$BENCH_STATE/logs/cpu-count-$1.txt"
    [ "$SYSCALLS" = 1 ] && [ -f "$f" ] || { echo "0 0"; return; }
    awk -F, '$3 ~ /sys_enter/ {s = $1} $3 ~ /context-switches/ {c = $1} END {print s + 0, c + 0}' "$f"
}

# start SETUP: the proxy of SETUP, listening; sets PID (empty for direct) and URL, VIA.
start() {
    local setup="$1"
    PID=""; VIA=(--ca "$PKI/origin-ca.pem"); URL="https://127.0.0.1:$ORIGIN_HTTPS_PORT"
    case "$setup" in
        direct) return 0;;
        forward|forward-h1)
            local extra=(); [ "$setup" = forward-h1 ] && extra=(--no-http2)
            start_proxy forward "cpu-$setup" "$ORIGIN_HTTPS_PORT" "${extra[@]}"
            VIA=(--proxy "127.0.0.1:$PROXY_PORT" --ca "$PKI/mitm-ca.pem");;
        reverse|reverse-own)
            local extra=(); [ "$setup" = reverse-own ] && extra=(--no-shared-streams)
            start_proxy reverse "cpu-$setup" "$ORIGIN_HTTPS_PORT" "${extra[@]}"
            URL="https://127.0.0.1:$PROXY_PORT";;
        haproxy)
            start_proxy haproxy cpu-haproxy "$ORIGIN_HTTPS_PORT"
            URL="https://127.0.0.1:$PROXY_PORT";;
        *) die "unknown setup $setup";;
    esac
    PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "$setup did not listen"
}

# measure SETUP TEST: one 8 s load; appends its JSON line to $out.
measure() {
    local setup="$1" test="$2" args=(-c 50) lp n0 n1 l0 l1 i0 i1 p0=0 p1=0 j ng c
    [ "$test" = h2 ] && args=(--h2 -c 5 -m 10)
    start "$setup"
    ng=$(nginx_pids)
    "$PROXYLOAD" --url "$URL/1k" "${VIA[@]}" -d 8 "${args[@]}" > "$BENCH_STATE/logs/cpu-load.json" &
    lp=$!
    sleep 2
    rm -f "$BENCH_STATE"/logs/cpu-count-*.txt; COUNTERS=()
    i0=$(idle_ticks); n0=$(ticks $ng); l0=$(ticks $lp); [ -n "$PID" ] && p0=$(ticks "$PID")
    # shellcheck disable=SC2086
    count proxy $PID; count nginx $ng; count load $lp
    sleep 4
    i1=$(idle_ticks); n1=$(ticks $ng); l1=$(ticks $lp); [ -n "$PID" ] && p1=$(ticks "$PID")
    for c in "${COUNTERS[@]}"; do wait "$c" || true; done
    wait "$lp"
    j=$(tail -1 "$BENCH_STATE/logs/cpu-load.json")
    # (stop_pid's last kill fails for a process that went on TERM, as it should.)
    if [ -n "$PID" ]; then stop_pid "$PID" || true; fi
    # shellcheck disable=SC2046
    "$PY" - "$setup" "$test" "$j" "$HZ" "$CORES" "$((p1 - p0))" "$((n1 - n0))" "$((l1 - l0))" "$((i1 - i0))" \
        $(counted proxy) $(counted nginx) $(counted load) <<'PY' | tee -a "$out"
import json, sys
setup, test, j, hz, cores = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
proxy, nginx, load, idle = (int(x) for x in sys.argv[6:10])
counts = [int(float(x)) for x in sys.argv[10:16]]
n = j["rps"] * 4  # requests in the 4 s measured, at the run's mean rate
us = lambda t: round(t / hz * 1e6 / n, 2) if n else None
row = {"setup": setup, "test": test, "rps": j["rps"], "errors": j["errors"],
       "proxy_us": us(proxy), "nginx_us": us(nginx), "load_us": us(load), "idle_us": us(idle), "cores": cores}
if any(counts) and n:
    for i, who in enumerate(("proxy", "nginx", "load")):
        row[who + "_syscalls"] = round(counts[2 * i] / n, 2)
        row[who + "_switches"] = round(counts[2 * i + 1] / n, 3)
print(json.dumps(row))
PY
}

TESTS="${CPU_TESTS:-h1 h2}"
SETUPS="${CPU_SETUPS:-direct forward forward-h1 reverse reverse-own haproxy}"
for r in $(seq 1 "$RUNS"); do
    for test in $TESTS; do
        for setup in $SETUPS; do
            # An HTTP/2 client has nothing to say to a proxy that speaks only HTTP/1.1.
            [ "$setup" = forward-h1 ] && [ "$test" = h2 ] && continue
            measure "$setup" "$test"
        done
    done
done

"$PY" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
keys = list(dict.fromkeys((r["test"], r["setup"]) for r in rows))
print(f"{'test':4} {'setup':12} {'req/s':>8} {'proxy':>7} {'nginx':>7} {'load':>7} {'idle':>7} {'sum':>7}   (us per request, medians)")
for test, setup in keys:
    rs = [r for r in rows if (r["test"], r["setup"]) == (test, setup)]
    m = lambda k: statistics.median(r[k] for r in rs)
    total = m("proxy_us") + m("nginx_us") + m("load_us") + m("idle_us")
    print(f"{test:4} {setup:12} {m('rps'):8.0f} {m('proxy_us'):7.2f} {m('nginx_us'):7.2f} {m('load_us'):7.2f} {m('idle_us'):7.2f} {total:7.2f}")
if any("nginx_syscalls" in r for r in rows):
    print(f"\n{'test':4} {'setup':12} {'proxy':>13} {'nginx':>13} {'load':>13}   (system calls / context switches per request, medians)")
    for test, setup in keys:
        rs = [r for r in rows if (r["test"], r["setup"]) == (test, setup) and "nginx_syscalls" in r]
        if not rs:
            continue
        m = lambda k: statistics.median(r.get(k, 0) for r in rs)
        cells = [f"{m(w + '_syscalls'):6.2f}/{m(w + '_switches'):.3f}" if setup != "direct" or w != "proxy" else f"{'-':>13}"
                 for w in ("proxy", "nginx", "load")]
        print(f"{test:4} {setup:12} " + " ".join(f"{c:>13}" for c in cells))
PY
