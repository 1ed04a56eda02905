#!/usr/bin/env bash
# npm run bench:learning: what the measured Zipf run of `npm run bench` asks of
# heimdall-xdp (docs/BENCHMARKS.md, "The XDP path's learning burst"). Each run starts the
# service fresh, warms it exactly as the bench does, then sends the Zipf file with
# kxdpgun for LEARN_SECONDS at LEARN_QPS and prints, for that window (kxdpgun's own
# start-up included): replies/s, the service's counters that moved (who answered,
# promotions), and its threads' CPU: the main thread, the busiest other thread (the
# worker on kxdpgun's queue) and the rest together (V8's GC helpers, libuv's threads,
# the workers of other queues).
#
# Environment: HX_LAB (lab prefix, default hxl), LEARN_RUNS (5), LEARN_MODE (xdp or
# userspace: --no-xdp-answers), LEARN_QPS (700000), LEARN_SECONDS (4), LEARN_OUT (raw
# results; default /var/tmp/heimdall-learning/<time>), HEIMDALL_NODE_FLAGS (node's own
# options, e.g. --single-threaded-gc), HEIMDALL_EXTRA (more service flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HX_LAB=${HX_LAB:-hxl}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

RUNS=${LEARN_RUNS:-5}
MODE=${LEARN_MODE:-xdp}
QPS=${LEARN_QPS:-700000}
SECS=${LEARN_SECONDS:-4}
OUT=${LEARN_OUT:-/var/tmp/heimdall-learning/$(date +%Y%m%d-%H%M%S)}
[[ $MODE == xdp || $MODE == userspace ]] || die "LEARN_MODE must be xdp or userspace"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "LEARN_RUNS must be a positive integer"

require_tools kxdpgun dnsperf dig nsd curl node
require_built
mkdir -p "$OUT"

SAMPLER=
bench_cleanup_extra() {
  if [[ -n $SAMPLER ]]; then
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
  fi
}
trap_lab_cleanup

lab_up_for_queries "$OUT"

# CPU ticks (user + system) of every thread of a process: "tid ticks" lines. The fields
# are counted after the thread's name, which may hold spaces.
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    echo "${t##*/} $(sed 's/^.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
  done | sort
}
# The counters this report reads, as "name value" lines; nothing if the service was too
# busy to answer within 3 s (the run goes on; its figures then read as not moved).
counters() {
  in_appliance curl -s --max-time 3 "http://$METRICS/metrics" |
    awk '/^heimdall_responses_total\{/ || /^heimdall_hot_changes_total\{/ || /^heimdall_hot_entries / { print $1, $2 }' || true
}

for ((run = 1; run <= RUNS; run++)); do
  dir=$OUT/run-$run
  mkdir -p "$dir"
  assert_idle
  start_contender "$MODE" "$dir"
  pid=${CUR_PIDS[0]}
  warm "$QDIR"
  sleep 1
  counters >"$dir/before.txt"
  thread_ticks "$pid" >"$dir/ticks0.txt"
  # The counters over time, for a look at when the work happens (not summarised here).
  # It stops at its next turn once the stop file exists, so no scrape outlives the run.
  (while [[ ! -e $dir/stop ]]; do
    printf 'T %s\n' "$(date +%s.%N)"
    counters
    sleep 0.25
  done) >"$dir/series.txt" 2>/dev/null &
  SAMPLER=$!
  kx "$QDIR/zipf-kx.txt" "$SECS" "$QPS" "$dir/kxdpgun.txt" >"$dir/kx.json"
  thread_ticks "$pid" >"$dir/ticks1.txt"
  touch "$dir/stop"
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=
  counters >"$dir/after.txt"
  stop_contender
  hz=$(getconf CLK_TCK)
  # A thread started in the window counts from zero.
  cpu=$(join -a2 -e0 -o 0,1.2,2.2 "$dir/ticks0.txt" "$dir/ticks1.txt" | awk -v main="$pid" -v hz="$hz" '
    { d = $3 - $2; if ($1 == main) m = d; else { o += d; if (d > w) w = d } }
    END { printf "\"main_s\":%.2f,\"worker_s\":%.2f,\"others_s\":%.2f", m / hz, w / hz, (o - w) / hz }')
  moved=$(join <(sort "$dir/before.txt") <(sort "$dir/after.txt") | awk '
    { n = $1; gsub(/heimdall_|_total|"/, "", n); gsub(/[{}=]/, "_", n); sub(/_$/, "", n)
      d = (n ~ /^hot_entries/) ? $3 : $3 - $2; printf "%s\"%s\":%d", (k++ ? "," : ""), n, d }')
  rep=$(sed -n 's/.*"replies_pps":\([0-9]*\).*/\1/p' "$dir/kx.json")
  line="{\"run\":$run,\"mode\":\"$MODE\",\"replies_pps\":${rep:-0},$cpu,$moved}"
  echo "$line" | tee -a "$OUT/results.jsonl"
done
say "raw results in $OUT"
