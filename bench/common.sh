# The start every bench script of this folder shares: sourced, with the script's arguments.
# Reads `--runs N` (RUNS, default 3) and `--proxy PATH` (PROXY_BIN, built from this checkout
# when not given), sets HERE, ROOT and SHARED, and sources ../shared/bench/lib.sh.
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
RUNS=3; PROXY_BIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2;;
        --proxy) PROXY_BIN="$2"; shift 2;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
# shellcheck source=/dev/null
source "$SHARED/lib.sh"
# lib.sh's cleanup (the EXIT trap) expects errexit off: its `kill ... || kill ...` fails for a
# process already gone, which under `set -e` made every script here exit 1 after its summary.
trap 'set +e; cleanup_all' EXIT INT TERM
if [ -z "$PROXY_BIN" ]; then
    cargo build -q --release -p proxy-cli --manifest-path "$ROOT/Cargo.toml"
    PROXY_BIN="$ROOT/target/release/sansproxy"
fi

# ticks PID...: user + system clock ticks of the processes, all threads (from /proc).
ticks() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}
# idle_ticks: idle + iowait clock ticks of all cores together.
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }

# start_proxy KIND LABEL ORIGIN_PORT [SANSPROXY-ARGS...]: a proxy of KIND on $PROXY_PORT, its
# output in $BENCH_STATE/logs/LABEL.log (BG_PID):
#   forward   sansproxy intercepting (clients CONNECT and trust the MITM CA)
#   reverse   sansproxy as a TLS reverse proxy (the origin's certificate) to the origin's
#             HTTPS ORIGIN_PORT, re-encrypting
#   haproxy   HAProxy 2.6 doing the same as reverse (../shared/bench/peers/haproxy.sh)
# The other arguments go to sansproxy.
start_proxy() {
    local kind="$1" label="$2" origin_port="$3" pki="$BENCH_STATE/pki" logf; shift 3
    logf="$BENCH_STATE/logs/$label.log"
    case "$kind" in
        forward)
            start_bg "$label" "$logf" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                --ca-cert "$pki/mitm-ca.pem" --ca-key "$pki/mitm-ca.key" --upstream-ca "$pki/origin-ca.pem" "$@";;
        reverse)
            start_bg "$label" "$logf" "$PROXY_BIN" -q --listen "127.0.0.1:$PROXY_PORT" \
                --mode "reverse:https://localhost:$origin_port" --listen-tls --cert "$pki/origin-combined.pem" \
                --upstream-ca "$pki/origin-ca.pem" "$@";;
        haproxy)
            start_bg "$label" "$logf" bash "$SHARED/peers/haproxy.sh" "$PROXY_PORT" \
                "https://127.0.0.1:$origin_port" "$BENCH_STATE";;
        *) die "unknown proxy $kind";;
    esac
}

# load LABEL TEST URL PROXYLOAD-ARGS...: proxyload for D seconds against URL/1k, its JSON
# line tagged with LABEL and TEST, appended to $out.
load() {
    local label="$1" test="$2" url="$3"; shift 3
    local j
    j=$(timeout $((D + 60)) "$PROXYLOAD" -d "$D" --url "$url/1k" "$@" | tail -1)
    echo "{\"label\":\"$label\",\"test\":\"$test\",${j#\{}" | tee -a "$out"
}

# start_backends NAME: one nginx (one worker, as the origin has) serving the origin's files on
# each port of PORTS (plain) and TLS_PORTS (TLS, the origin's certificate), its state in
# $BENCH_STATE/NAME; returns once every port listens. The bench scripts' "three backends".
start_backends() {
    local ng="$BENCH_STATE/$1" p
    mkdir -p "$ng/logs" "$ng/tmp"
    {
        echo "worker_processes 1; worker_rlimit_nofile 19000; pid $ng/nginx.pid;"
        echo "error_log $ng/logs/error.log warn;"
        echo "events { worker_connections 20000; multi_accept on; }"
        echo "http { access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;"
        echo "  keepalive_timeout 300s; keepalive_requests 10000000; default_type application/octet-stream;"
        echo "  client_body_temp_path $ng/tmp; proxy_temp_path $ng/tmp; fastcgi_temp_path $ng/tmp;"
        echo "  uwsgi_temp_path $ng/tmp; scgi_temp_path $ng/tmp;"
        echo "  server {"
        for p in "${PORTS[@]}"; do echo "    listen 127.0.0.1:$p reuseport backlog=4096;"; done
        for p in "${TLS_PORTS[@]}"; do echo "    listen 127.0.0.1:$p ssl backlog=4096;"; done
        echo "    ssl_certificate $BENCH_STATE/pki/origin.pem; ssl_certificate_key $BENCH_STATE/pki/origin.key;"
        echo "    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;"
        echo "    root $BENCH_STATE/www; location / { }"
        echo "  }"
        echo "}"
    } > "$ng/nginx.conf"
    start_bg "$1" "$ng/logs/nginx.out" nginx -p "$ng" -c "$ng/nginx.conf" -g "daemon off;"
    for p in "${PORTS[@]}" "${TLS_PORTS[@]}"; do wait_port "$p" 30 || die "the backends' nginx did not listen on $p"; done
}
