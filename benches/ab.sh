#!/usr/bin/env bash
# Two builds of vobiz-tunnel under the load benchmark, on a machine whose speed drifts (a
# shared virtual machine easily swings by a quarter within a minute, more than most changes
# are worth): runs them in alternation, A B A B ..., in short runs, and prints for each
# workload the median of the paired ratios B/A, for requests/s and for the proxy's CPU time
# per request, followed by every ratio so the spread shows.
#
#   cp target/release/vobiz-tunnel /tmp/vt-before     # a release build before the change
#   cargo build --release                              # ... and after it
#   benches/ab.sh /tmp/vt-before target/release/vobiz-tunnel [ROUNDS]
#
# ROUNDS defaults to 8. LOAD_ONLY (default a,b) and LOAD_SECS (default 2) work as for the
# bench (benches/load/main.rs); nginx is not run. Everything binds 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
rounds=${3:-8}
case $rounds in '' | *[!0-9]*) echo "ROUNDS must be a number: $rounds" >&2; exit 2 ;; esac
declare -A build
for side in A B; do
  path=$1; shift
  if [ ! -x "$path" ] || [ -d "$path" ]; then
    echo "not an executable: $path" >&2
    exit 2
  fi
  build[$side]=$(realpath "$path")
done

export LOAD_ONLY=${LOAD_ONLY:-a,b} LOAD_SECS=${LOAD_SECS:-2} LOAD_NGINX=0
cargo bench --quiet --bench load --no-run
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for round in $(seq "$rounds"); do
  for side in A B; do
    # Detail lines: "  a keep-alive, 16 conns   vt   58993 measured, ... proxy CPU 89.8 µs/request"
    LOAD_PROXY_BIN=${build[$side]} cargo bench --quiet --bench load |
      awk -v round="$round" -v side="$side" '
        /^  [a-d] / && / vt +[0-9]+ measured/ {
          for (i = 1; i <= NF; i++) {
            if ($i == "measured,") count = $(i - 1)
            if ($i == "CPU") cpu = $(i + 1)
          }
          print round, $1, side, count, cpu
        }' >>"$runs"
  done
  echo "round $round of $rounds done" >&2
done

# One line per round and workload with both sides: workload, requests ratio, CPU ratio.
pairs=$(awk '
  { key = $1 " " $2; if ($3 == "A") { a[key] = $4; ac[key] = $5 } else { b[key] = $4; bc[key] = $5 } }
  END { for (key in a) if ((key in b) && a[key] > 0 && ac[key] > 0) {
          split(key, k, " "); printf "%s %.3f %.3f\n", k[2], b[key] / a[key], bc[key] / ac[key] } }' "$runs")
if [ -z "$pairs" ]; then
  echo "no complete pair of runs: did the bench fail? (run it alone: cargo bench --bench load)" >&2
  exit 1
fi
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "B/A, medians of $rounds paired runs of ${LOAD_SECS} s (A: ${build[A]}, B: ${build[B]})"
for workload in $(echo "$pairs" | awk '{ print $1 }' | sort -u); do
  mine=$(echo "$pairs" | awk -v w="$workload" '$1 == w')
  requests=$(echo "$mine" | awk '{ print $2 }')
  cpu=$(echo "$mine" | awk '{ print $3 }')
  printf '%s  requests/s %s  CPU/request %s  (requests/s ratios: %s)\n' "$workload" \
    "$(echo "$requests" | median)" "$(echo "$cpu" | median)" "$(echo "$requests" | sort -n | tr '\n' ' ' | sed 's/ $//')"
done
