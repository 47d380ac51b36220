#!/bin/bash
# Two sidecar binaries measured at once, each against its own stubs, so
# that whatever else loads the machine loads both alike: CPU (from
# /proc/PID/schedstat) and page faults over the window. Run it a few times
# with the order swapped.
#
#   bench/paired.sh OLD NEW [SECONDS [SIZE_OR_BODY_FILE [CONTAINERS]]]
#
# SIZE_OR_BODY_FILE: bytes of a synthetic body (default 1000000: L), or a
# body file (tests/fixtures/node_exporter.prom: S). CLIENT_EVERY_SECOND set
# to curl options (e.g. "-H Accept-Encoding:gzip") adds a client asking
# once a second. Needs `cargo build --release` in bench/ (stub_exporter).
# The sidecars listen on a bare port, the one form every version accepts.
set -eu
A=$1; B=$2; SECONDS_=${3:-30}; SIZE=${4:-1000000}; COUNT=${5:-3}
STUB="$(dirname "$0")/target/release/stub_exporter"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { # binary base_port
  local body=(--size "$SIZE")
  [ -f "$SIZE" ] && body=(--body "$SIZE")
  "$STUB" --count "$COUNT" "${body[@]}" --base_port "$2" >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.3
  local args=()
  for i in $(seq 0 $((COUNT - 1))); do args+=(-m "c$i:$(($2 + i))"); done
  "$1" "${args[@]}" -e "$(($2 + 100))" >/dev/null 2>&1 &
  pids+=($!)
  started=$!
}
BASE_A=$((20000 + RANDOM % 4000)); BASE_B=$((BASE_A + 5000))
start "$A" $BASE_A; PID_A=$started
start "$B" $BASE_B; PID_B=$started
sleep 4
if [ -n "${CLIENT_EVERY_SECOND:-}" ]; then
  for port in $((BASE_A + 100)) $((BASE_B + 100)); do
    (while true; do curl -s $CLIENT_EVERY_SECOND "http://127.0.0.1:$port/metrics" >/dev/null; sleep 1; done) &
    pids+=($!)
  done
fi
cpu() { awk '{print $1}' "/proc/$1/schedstat"; }
faults() { awk '{print $10}' "/proc/$1/stat"; }
a0=$(cpu $PID_A); b0=$(cpu $PID_B); fa0=$(faults $PID_A); fb0=$(faults $PID_B)
sleep "$SECONDS_"
a1=$(cpu $PID_A); b1=$(cpu $PID_B); fa1=$(faults $PID_A); fb1=$(faults $PID_B)
printf '%s %.2f mc %d faults | %s %.2f mc %d faults\n' \
  "$A" "$(echo "($a1 - $a0) / 1000000 / $SECONDS_" | bc -l)" $((fa1 - fa0)) \
  "$B" "$(echo "($b1 - $b0) / 1000000 / $SECONDS_" | bc -l)" $((fb1 - fb0))
