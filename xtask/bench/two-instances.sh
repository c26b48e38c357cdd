#!/usr/bin/env bash
# Two wxlogin instances on one Postgres, as behind a load balancer: wrk drives each instance
# with half the connections at once (what a round-robin balancer does), and the same load goes
# to one instance for comparison. docs/deployment.md records its output.
#
#   cargo build --release -p wxlogin-server
#   bash xtask/bench/two-instances.sh [postgres://postgres@127.0.0.1:5432/postgres] [seconds]
#
# Needs wrk, curl and psql; creates and drops the database wxlogin_two_instances.
set -euo pipefail
cd "$(dirname "$0")/../.."

admin_url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
secs=${2:-8}
bin=target/release/wxlogin
lua=xtask/bench/wrk.lua
db=wxlogin_two_instances
app=wxtwoinstances000
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

[ -x "$bin" ] || { echo "build it first: cargo build --release -p wxlogin-server" >&2; exit 1; }
psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
db_url="${admin_url%/*}/$db"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_any() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return; sleep 0.1; done; echo "$1 not up" >&2; exit 1; }
wait_up() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return; sleep 0.1; done; echo "$1 not up" >&2; exit 1; }

mock_port=$(free_port)
WXLOGIN_MOCK_APP_SECRET=two-secret "$bin" mock-wechat --addr "127.0.0.1:$mock_port" --app-id "$app" \
  >"$tmp/mock.log" 2>&1 &
pids+=($!)
mock="http://127.0.0.1:$mock_port"
wait_any "$mock/"

ports=()
for i in 1 2; do
  port=$(free_port)
  WXLOGIN__SERVER__ADDR="127.0.0.1:$port" WXLOGIN__DATABASE__URL="$db_url" \
    WXLOGIN__WECHAT__MODE=http WXLOGIN__WECHAT__BASE_URL="$mock" \
    WXLOGIN__WECHAT__APP_ID="$app" WXLOGIN__WECHAT__APP_SECRET=two-secret \
    "$bin" >"$tmp/server-$i.log" 2>&1 &
  pids+=($!)
  ports+=("$port")
  wait_up "http://127.0.0.1:$port/readyz"
done

# Codes for wrk: single use, one file per run and instance.
mint() { # prefix count -> lines "<TAB>code=..."
  curl -fs "$mock/mock/codes/batch" -H 'Content-Type: application/json' \
    -d "{\"openIdPrefix\":\"$1\",\"count\":$2,\"users\":$2}" |
    python3 -c 'import json,sys; [print("\tcode="+c) for c in json.load(sys.stdin)["codes"]]'
}

# wrk against each target at once; prints the summed requests/s and the worst p99.
drive() { # name method path type file once codes_per_instance targets...
  local name=$1 method=$2 path=$3 type=$4 file=$5 once=$6 n=$7; shift 7
  local conns=$((64 / $#)) out=() wrks=()
  for port in "$@"; do
    local f=$file
    if [ "$once" = 1 ]; then f="$tmp/codes-$name-$port"; mint "o-$name-$port-" "$n" >"$f"; fi
    out+=("$tmp/wrk-$name-$port")
    WXBENCH_METHOD=$method WXBENCH_PATH=$path WXBENCH_TYPE=$type WXBENCH_FILE=$f \
      WXBENCH_ONCE=$once WXBENCH_THREADS=1 \
      wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$lua" "http://127.0.0.1:$port" >"${out[-1]}" 2>&1 &
    wrks+=($!)
  done
  for pid in "${wrks[@]}"; do wait "$pid" || true; done
  python3 - "$name" "$#" "${out[@]}" <<'PY'
import re, sys
name, n, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rps = 0.0; p99 = 0.0; errors = 0
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v); x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x * 1000 if m.group(2) == "s" else x
for f in files:
    t = open(f).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    p99 = max(p99, ms(re.search(r"99%\s+(\S+)", t).group(1)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t); errors += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    errors += sum(map(int, m.groups())) if m else 0
print(f"| {name} | {n} | {rps:,.0f} | {p99:.1f} ms | {errors} |")
PY
}

n=$((4000 * secs))
echo "| endpoint | instances | req/s (sum) | worst p99 | errors |"
echo "|---|---:|---:|---:|---:|"
for targets in "${ports[0]}" "${ports[0]} ${ports[1]}"; do
  # shellcheck disable=SC2086
  drive healthz GET /healthz "" "" 0 0 $targets
  # shellcheck disable=SC2086
  drive onLogin POST /onLogin application/x-www-form-urlencoded "" 1 "$n" $targets
done
