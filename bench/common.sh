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

# load LABEL TEST URL PROXYLOAD-ARGS...: proxyload for D seconds against URL/1k, its JSON
# line tagged with LABEL and TEST, appended to $out.
load() {
    local label="$1" test="$2" url="$3"; shift 3
    local j
    j=$(timeout $((D + 60)) "$PROXYLOAD" -d "$D" --url "$url/1k" "$@" | tail -1)
    echo "{\"label\":\"$label\",\"test\":\"$test\",${j#\{}" | tee -a "$out"
}
