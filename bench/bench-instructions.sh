#!/usr/bin/env bash
# What a proxied request costs the proxy in instructions, counted rather than timed. On these
# shared two-core machines the keep-alive rates and the CPU time per request move by a tenth
# or more from one run to the next (the direct baseline with them), which hides a change of a
# few per cent in the proxy's own work. Valgrind's callgrind counts the instructions the proxy
# executes in user space, the same from run to run within a per cent, at the price of running
# it some fifty times slower.
#
# The forward (MITM) proxy, one driver thread, under callgrind; proxyload sends SMALL and then,
# in a second run, LARGE requests of 1 KiB through it to the nginx origin of
# ../shared/bench/bench-https.sh (HTTP/1.1 over 5 connections, HTTP/2 over 5 connections of 10
# streams). What the larger run costs beyond the smaller, over the requests it made beyond
# them, is the cost of a request without the start-up (key generation, the entropy pool).
# Prints, per load, the instructions per request and the functions that take the most of
# them (self cost), and keeps callgrind's files in $BENCH_STATE/logs.
#
#   bench/bench-instructions.sh [--proxy PATH]
# Env: SHARED_BENCH, BENCH_STATE, PROXY_PORT (18888), INSTR_TESTS ("h1 h2"), INSTR_SMALL (500),
#      INSTR_LARGE (4000), INSTR_TOP (20). Kernel time is not counted: system calls are the
#      same per request whatever the proxy computes between them (bench-cpu.sh times them).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
ensure_origin; ensure_proxyload
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
port_busy "$PROXY_PORT" && die "something already listens on port $PROXY_PORT"
PKI="$BENCH_STATE/pki"
SMALL="${INSTR_SMALL:-500}"; LARGE="${INSTR_LARGE:-4000}"; TOP="${INSTR_TOP:-20}"

# run TEST N: the proxy under callgrind while proxyload makes N requests; prints the requests
# made and the callgrind file.
run() {
    local test="$1" n="$2" cg="$BENCH_STATE/logs/instr-$1-$2.callgrind" args=(-c 5)
    [ "$test" = h2 ] && args=(--h2 -c 5 -m 10)
    rm -f "$cg"
    start_bg "instr-$test-$n" "$BENCH_STATE/logs/instr-$test-$n.log" valgrind --tool=callgrind \
        --callgrind-out-file="$cg" "$PROXY_BIN" -q --threads 1 --listen "127.0.0.1:$PROXY_PORT" \
        --ca-cert "$PKI/mitm-ca.pem" --ca-key "$PKI/mitm-ca.key" --upstream-ca "$PKI/origin-ca.pem"
    local pid=$BG_PID
    wait_port "$PROXY_PORT" 60 || die "the proxy did not listen under valgrind"
    local j
    j=$(timeout 300 "$PROXYLOAD" --url "https://127.0.0.1:$ORIGIN_HTTPS_PORT/1k" --proxy "127.0.0.1:$PROXY_PORT" \
        --ca "$PKI/mitm-ca.pem" -d 240 --max-requests "$n" "${args[@]}" | tail -1)
    # SIGINT: the proxy shuts down and callgrind writes its file.
    kill -INT "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    [ -s "$cg" ] || die "callgrind wrote nothing for $test $n"
    echo "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["errors"] == 0, d; print(d["requests"])' "$j") $cg"
}

for test in ${INSTR_TESTS:-h1 h2}; do
    read -r n1 small < <(run "$test" "$SMALL")
    read -r n2 large < <(run "$test" "$LARGE")
    python3 - "$test" "$n1" "$small" "$n2" "$large" "$TOP" <<'PY'
import collections, re, subprocess, sys
test, n1, small, n2, large, top = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])

def self_cost(path):
    """Instructions per function (self cost), as callgrind_annotate lists them."""
    out = subprocess.run(['callgrind_annotate', '--inclusive=no', '--auto=no', '--threshold=100', path],
                         capture_output=True, text=True, check=True).stdout
    cost = collections.Counter()
    for line in out.splitlines():
        m = re.match(r'\s*([\d,]+) \([\s\d.]+%\)\s+(.*)$', line)
        if m and 'PROGRAM TOTALS' not in line:
            name = m.group(2).split(':', 1)[-1]
            name = re.sub(r' \[.*\]$', '', name)
            cost[re.sub(r' \([\d,]+x\)', '', name)] += int(m.group(1).replace(',', ''))
    return cost

lo, hi = self_cost(small), self_cost(large)
per = {name: (hi[name] - lo.get(name, 0)) / (n2 - n1) for name in hi}
total = sum(per.values())
print(f'{test}: {total:,.0f} instructions per request ({n2 - n1} requests beyond {n1})')
for name, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
    print(f'  {v:8,.0f} {100 * v / total:5.1f}%  {re.sub(r"<[^<>]*>", "", name)[-100:]}')
PY
done
