#!/usr/bin/env bash
# WebSocket through sansproxy against a direct baseline, in the style of ../shared/bench:
#   1. echo: 1 KiB text messages over 50 connections, each awaiting its echo (messages/s, p50/p99)
#   2. stream: 1 GiB of 64 KiB binary messages, origin to client (MB/s) + the proxy's peak RSS
# Every proxied run is paired with a direct run in the same invocation; compare the ratios.
#
#   bench/bench-ws.sh [--runs N] [--proxy PATH] [-- EXTRA PROXY ARGS...]
#
# Env: WS_CONNS (50), WS_SECS (10), WS_SIZE (1024), WS_MIB (1024), WS_PORT (18090),
#      PROXY_PORT (18888), BENCH_STATE (${TMPDIR:-/tmp}/sansproxy-bench),
#      WS_VIA: how clients reach the origin through the proxy under test:
#        proxy   (default) sansproxy as an explicit proxy (the upgrade in absolute form);
#        reverse sansproxy in reverse mode, clients connecting to it as to the origin;
#        haproxy HAProxy in `mode http` as a reverse proxy (it parses the upgrade, then relays
#                bytes without reading frames): the reference for what relaying costs here.
# Talks to 127.0.0.1 only; stops only the processes it started (by process group).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
STATE="${BENCH_STATE:-${TMPDIR:-/tmp}/sansproxy-bench}"
RUNS=3; PROXY_BIN=""; EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2;;
        --proxy) PROXY_BIN="$2"; shift 2;;
        --) shift; EXTRA=("$@"); break;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
CONNS="${WS_CONNS:-50}"; SECS="${WS_SECS:-10}"; SIZE="${WS_SIZE:-1024}"; MIB="${WS_MIB:-1024}"
WS_PORT="${WS_PORT:-18090}"; PROXY_PORT="${PROXY_PORT:-18888}"
mkdir -p "$STATE"
OUT="$STATE/ws.jsonl"; : > "$OUT"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
PIDS=()
start_bg() { # LOG CMD...: own process group, remembered for cleanup
    local logf="$1"; shift
    setsid "$@" >"$logf" 2>&1 </dev/null &
    BG_PID=$!; PIDS+=("$BG_PID")
}
stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT INT TERM
wait_port() { local i; for i in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

log "building wsload and the proxy"
CARGO_TARGET_DIR="$STATE/wsload-target" cargo build -q --release --manifest-path "$HERE/wsload/Cargo.toml"
WSLOAD="$STATE/wsload-target/release/wsload"
if [ -z "$PROXY_BIN" ]; then
    cargo build -q --release -p proxy-cli --manifest-path "$ROOT/Cargo.toml"
    PROXY_BIN="$ROOT/target/release/sansproxy"
fi

start_bg "$STATE/ws-origin.log" "$WSLOAD" serve "$WS_PORT"; ORIGIN_PID=$BG_PID
wait_port "$WS_PORT" || { echo "the origin did not listen" >&2; exit 1; }
URL="ws://127.0.0.1:$WS_PORT"

VIA="${WS_VIA:-proxy}"
case "$VIA" in
    proxy) PURL="$URL"; PARG="127.0.0.1:$PROXY_PORT";;
    reverse|haproxy) PURL="ws://127.0.0.1:$PROXY_PORT"; PARG="-";;
    *) echo "WS_VIA is proxy, reverse or haproxy" >&2; exit 2;;
esac
if [ "$VIA" = haproxy ]; then
    cat > "$STATE/ws-haproxy.cfg" <<CFG
global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
frontend ws
    bind 127.0.0.1:$PROXY_PORT
    default_backend origin
backend origin
    server o 127.0.0.1:$WS_PORT
CFG
fi

start_proxy() {
    case "$VIA" in
        proxy) start_bg "$STATE/ws-proxy.log" "$PROXY_BIN" --listen "127.0.0.1:$PROXY_PORT" --no-intercept "${EXTRA[@]}";;
        reverse) start_bg "$STATE/ws-proxy.log" "$PROXY_BIN" --listen "127.0.0.1:$PROXY_PORT" --no-intercept \
            --mode "reverse:http://127.0.0.1:$WS_PORT" "${EXTRA[@]}";;
        haproxy) start_bg "$STATE/ws-proxy.log" haproxy -db -f "$STATE/ws-haproxy.cfg";;
    esac
    PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" || { echo "the proxy did not listen" >&2; cat "$STATE/ws-proxy.log" >&2; exit 1; }
}

for r in $(seq 1 "$RUNS"); do
    log "run $r/$RUNS: echo"
    "$WSLOAD" echo "$URL" - "$CONNS" "$SECS" "$SIZE" | sed 's/^{/{"label":"direct",/' | tee -a "$OUT"
    start_proxy
    "$WSLOAD" echo "$PURL" "$PARG" "$CONNS" "$SECS" "$SIZE" | sed 's/^{/{"label":"proxy",/' | tee -a "$OUT"
    stop_pid "$PROXY_PID"
    log "run $r/$RUNS: stream"
    "$WSLOAD" stream "$URL" - "$MIB" | sed 's/^{/{"label":"direct",/' | tee -a "$OUT"
    start_proxy
    line=$("$WSLOAD" stream "$PURL" "$PARG" "$MIB")
    echo "${line%\}},\"label\":\"proxy\",\"peak_rss_kib\":$(hwm_kb "$PROXY_PID")}" | tee -a "$OUT"
    stop_pid "$PROXY_PID"
done
stop_pid "$ORIGIN_PID"

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(test, label, key):
    vals = [r[key] for r in rows if r["test"] == test and r["label"] == label]
    return statistics.median(vals) if vals else float("nan")
echo_d, echo_p = med("ws-echo", "direct", "msgs_per_s"), med("ws-echo", "proxy", "msgs_per_s")
st_d, st_p = med("ws-stream", "direct", "MBps"), med("ws-stream", "proxy", "MBps")
rss = max(r.get("peak_rss_kib", 0) for r in rows)
print(f"echo  {rows[0]['size'] if rows else '?'} B x {rows[0]['conns'] if rows else '?'} conns: direct {echo_d:.0f} msg/s, proxy {echo_p:.0f} msg/s, ratio {echo_p / echo_d:.3f} (p50 {med('ws-echo','proxy','p50_ms'):.3f} ms vs {med('ws-echo','direct','p50_ms'):.3f} ms)")
print(f"stream 64 KiB messages: direct {st_d:.0f} MB/s, proxy {st_p:.0f} MB/s, ratio {st_p / st_d:.3f}; proxy peak RSS {rss / 1024:.1f} MiB")
PY
