#!/usr/bin/env bash
# SOCKS5 against an HTTP CONNECT: a 1 GiB download with curl through each, in the same run, for
# plain HTTP and intercepted HTTPS, each paired with a direct download. Plain HTTP is also
# fetched with bulk_client.py, which does both handshakes by hand and then reads alike (curl's
# own SOCKS5 path copies each byte once more than its CONNECT path). The proxy's CPU time
# per download is recorded too. Uses the origin of ../shared/bench (nginx serving /1g;
# `setup-origin.sh` there once) and its MITM CA.
#
#   bench/bench-modes.sh [--runs N] [--proxy PATH]
#
# Env: SHARED_BENCH (../shared/bench), BENCH_STATE (as there), PROXY_PORT (18888),
#      BULK_MAX_SECS (120). Stops only the processes it started.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
MAXT="${BULK_MAX_SECS:-120}"
ensure_origin
PKI="$BENCH_STATE/pki"
out="$BENCH_STATE/logs/modes.jsonl"; : > "$out"
HTTP_URL="http://127.0.0.1:$ORIGIN_HTTP_PORT/1g"
HTTPS_URL="https://127.0.0.1:$ORIGIN_HTTPS_PORT/1g"

cpu_s() { # pid: user + system CPU seconds so far
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}
speed() { # curl args...: MB/s of the download, and its size
    curl -s -o /dev/null --max-time "$MAXT" -w '%{speed_download} %{size_download}' "$@" \
        | awk '{printf "%.1f %d", $1/1e6, $2}'
}
# mode: socks5 or connect; the proxy listens on $PROXY_PORT in that mode, intercepting TLS.
start_mode() {
    local mode="$1" arg=()
    [ "$mode" = socks5 ] && arg=(--mode socks5)
    start_bg "modes-$mode" "$BENCH_STATE/logs/proxy-modes-$mode.log" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
        "${arg[@]}" --ca-cert "$PKI/mitm-ca.pem" --ca-key "$PKI/mitm-ca.key" --upstream-ca "$PKI/origin-ca.pem"
    PROXY_PID=$BG_PID
    wait_port "$PROXY_PORT" 30 || die "the proxy did not listen"
}
for r in $(seq 1 "$RUNS"); do
    for scheme in http https; do
        url="$HTTP_URL"; [ "$scheme" = https ] && url="$HTTPS_URL"
        read -r mbps size <<< "$(speed --cacert "$PKI/origin-ca.pem" "$url")"
        echo "{\"test\":\"$scheme\",\"label\":\"direct\",\"MBps\":$mbps,\"bytes\":$size}" | tee -a "$out"
        if [ "$scheme" = http ]; then
            read -r mbps size <<< "$(python3 "$HERE/bulk_client.py" direct 0 127.0.0.1 "$ORIGIN_HTTP_PORT" /1g)"
            echo "{\"test\":\"http-raw\",\"label\":\"direct\",\"MBps\":$mbps,\"bytes\":$size}" | tee -a "$out"
        fi
        # Alternate which goes first, so that neither always runs on a machine the other
        # has just warmed (or loaded).
        modes="connect socks5"; [ $((r % 2)) = 0 ] && modes="socks5 connect"
        for mode in $modes; do
            start_mode "$mode"
            if [ "$mode" = socks5 ]; then via=(--socks5-hostname "127.0.0.1:$PROXY_PORT")
            else via=(-p -x "http://127.0.0.1:$PROXY_PORT"); fi
            read -r mbps size <<< "$(speed "${via[@]}" --cacert "$PKI/mitm-ca.pem" "$url")"
            echo "{\"test\":\"$scheme\",\"label\":\"$mode\",\"MBps\":$mbps,\"bytes\":$size,\"peak_rss_kib\":$(hwm_kb "$PROXY_PID"),\"proxy_cpu_s\":$(cpu_s "$PROXY_PID")}" | tee -a "$out"
            if [ "$scheme" = http ]; then
                before=$(cpu_s "$PROXY_PID")
                read -r mbps size <<< "$(python3 "$HERE/bulk_client.py" "$mode" "$PROXY_PORT" 127.0.0.1 "$ORIGIN_HTTP_PORT" /1g)"
                echo "{\"test\":\"http-raw\",\"label\":\"$mode\",\"MBps\":$mbps,\"bytes\":$size,\"proxy_cpu_s\":$(python3 -c "print(round($(cpu_s "$PROXY_PID") - $before, 2))")}" | tee -a "$out"
            fi
            stop_proxy || true
        done
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for test in ("http", "https", "http-raw"):
    pick = lambda label, key="MBps": [r[key] for r in rows if r["test"] == test and r["label"] == label]
    med = lambda label: statistics.median(pick(label))
    d = med("direct")
    c, s = med("connect"), med("socks5")
    cpu = lambda label: statistics.median(pick(label, "proxy_cpu_s"))
    short = [r for r in rows if r["test"] == test and r["bytes"] < 1 << 30]
    client = "bulk_client.py" if test.endswith("raw") else "curl"
    print(f"{test:8} 1 GiB ({client}): direct {d:.0f} MB/s, CONNECT {c:.0f} ({c / d:.3f}), SOCKS5 {s:.0f} ({s / d:.3f}); "
          f"SOCKS5/CONNECT {s / c:.3f}; proxy CPU {cpu('connect'):.2f} / {cpu('socks5'):.2f} s"
          f"{'; INCOMPLETE transfers' if short else ''}")
PY
