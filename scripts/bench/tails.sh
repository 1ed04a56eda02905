#!/usr/bin/env bash
# npm run bench:tails: where a contender's latency tail comes from (issue 16, item 2).
#
# One contender in the lab (scripts/lab.sh), warmed as `npm run bench` warms it, then
# dnsperf at TAILS_QPS for TAILS_SECONDS per mix with every latency kept, while
#   - every heimdall-xdp thread is CPU-profiled (node --cpu-prof, one sample per
#     TAILS_PROFILE_US): garbage collection, the upkeep timer, the hot map's hand-over and
#     promotions, the prefetch poll, and idle time, each with its time;
#   - perf sched (when perf is installed and TAILS_SCHED is not 0) records when each
#     thread was runnable but not running: a wake-up that waited for a CPU.
# Then scripts/bench/tails.ts lays the three out on one clock (CLOCK_MONOTONIC) in
# windows of TAILS_WINDOW_MS and says what the slowest windows have more of than the
# others. The profiler and perf cost CPU themselves: the tail under them is not the tail
# without them; compare windows of one run, not runs with and without.
#
# Environment: HX_LAB (default hxt), TAILS_CONTENDER (userspace | xdp | unbound; the
# profile exists only for heimdall-xdp), TAILS_MIXES ("hot zipf"), TAILS_QPS (50000),
# TAILS_SECONDS (10), TAILS_WINDOW_MS (100), TAILS_PROFILE_US (250), TAILS_SCHED (1),
# TAILS_OUT (default /var/tmp/heimdall-tails/<time>), BENCH_QUERY_ARGS (queries.ts options).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HX_LAB=${HX_LAB:-hxt}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

NAME=${TAILS_CONTENDER:-userspace}
MIXES=(${TAILS_MIXES:-hot zipf})
QPS=${TAILS_QPS:-50000}
SECS=${TAILS_SECONDS:-10}
WINDOW_MS=${TAILS_WINDOW_MS:-100}
PROFILE_US=${TAILS_PROFILE_US:-250}
SCHED=${TAILS_SCHED:-1}
OUT=${TAILS_OUT:-/var/tmp/heimdall-tails/$(date +%Y%m%d-%H%M%S)}

require_tools kxdpgun dnsperf dig nsd curl node python3
case $NAME in userspace | xdp | unbound) ;; *) die "TAILS_CONTENDER must be userspace, xdp or unbound" ;; esac
if [[ $SCHED != 0 ]] && ! command -v perf >/dev/null; then
  say "perf not installed: no scheduling delays (bash scripts/setup.sh --bench installs it)"
  SCHED=0
fi
require_built

mkdir -p "$OUT/prof"
cleanup() {
  local rc=$?
  stop_contender || true
  ip -n "$NS_A" link set dev "$IF_A" xdp off 2>/dev/null || true
  bash scripts/lab.sh down >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2086 # BENCH_QUERY_ARGS is a list of queries.ts options
lab_up_for_queries "$OUT" ${BENCH_QUERY_ARGS:-}
declare -A FILE=([hot]=$QDIR/hot.txt [zipf]=$QDIR/zipf-dp.txt)

monotonic_ns() { python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC))'; }

say "$NAME: start, warm"
if [[ $NAME == unbound ]]; then
  start_contender "$NAME" "$OUT"
else
  # Profiles of every thread (workers inherit the options), written when it stops.
  HEIMDALL_NODE_FLAGS="--cpu-prof --cpu-prof-dir=$OUT/prof --cpu-prof-interval=$PROFILE_US" start_contender "$NAME" "$OUT"
fi
SERVER_PID=${CUR_PIDS[0]}
warm "$QDIR"

MANIFEST=$OUT/tails.json
# dnsperf runs LAT_WARMUP_S (lib.sh) longer than asked, and tails.ts leaves that start out:
# every dnsperf run here starts with a transient whatever answers it (lib.sh, dp()).
RUN_S=$(awk -v s="$SECS" -v w="$LAT_WARMUP_S" 'BEGIN { print s + w }')
printf '{"contender":"%s","git":"%s","qps":%d,"seconds":%s,"windowMs":%d,"warmupS":%s,"timeoutS":1,"pid":%d,"runs":[' \
  "$NAME" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$QPS" "$SECS" "$WINDOW_MS" "$LAT_WARMUP_S" "$SERVER_PID" >"$MANIFEST"
sep=
for mix in "${MIXES[@]}"; do
  [[ -n ${FILE[$mix]:-} ]] || die "unknown mix '$mix' (hot, zipf)"
  say "$mix: dnsperf ${QPS} q/s for ${SECS} s"
  sched_pid=
  if [[ $SCHED != 0 ]]; then
    # System-wide from a second before dnsperf to a second after it (perf is slow to start
    # on a loaded machine); its own messages kept beside the data.
    perf sched record -k CLOCK_MONOTONIC -o "$OUT/sched-$mix.data" -- sleep "$(awk -v s="$RUN_S" 'BEGIN { print s + 2 }')" >"$OUT/perf-$mix.log" 2>&1 &
    sched_pid=$!
    sleep 1
  fi
  start=$(monotonic_ns)
  in_client dnsperf -s "$SERVER" -d "${FILE[$mix]}" -l "$RUN_S" -Q "$QPS" -c 8 -T 1 -q 2000 -t 1 -v >"$OUT/dnsperf-$mix.txt" 2>&1 || true
  grep -q 'Run time (s):' "$OUT/dnsperf-$mix.txt" || die "dnsperf gave no result: $(tail -3 "$OUT/dnsperf-$mix.txt")"
  sched=null
  if [[ -n $sched_pid ]]; then
    wait "$sched_pid" || true
    perf sched timehist -i "$OUT/sched-$mix.data" >"$OUT/sched-$mix.txt" 2>>"$OUT/perf-$mix.log" || true
    rm -f "$OUT/sched-$mix.data"
    if [[ -s $OUT/sched-$mix.txt ]]; then
      sched="\"sched-$mix.txt\""
    else
      say "$mix: perf sched recorded nothing (see $OUT/perf-$mix.log): no scheduling delays"
    fi
  fi
  printf '%s{"mix":"%s","dnsperf":"dnsperf-%s.txt","startNs":%s,"sched":%s}' "$sep" "$mix" "$mix" "$start" "$sched" >>"$MANIFEST"
  sep=,
done
printf ']}\n' >>"$MANIFEST"
stop_contender
node --import tsx scripts/bench/tails.ts "$OUT" | tee "$OUT/tails.md"
say "raw data in $OUT"
