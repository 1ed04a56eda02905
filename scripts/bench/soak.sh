#!/usr/bin/env bash
# Memory soak: heimdall-xdp under dnsperf at a fixed rate for a bounded time, its RSS
# (VmRSS of the whole process: main thread, workers, UMEM) sampled at a fixed interval.
#
#   bash scripts/bench/soak.sh
#
# Environment: HX_LAB (lab prefix, default hxs), SOAK_SECONDS (300), SOAK_QPS (50000),
# SOAK_EVERY (10, seconds between samples), SOAK_MODE (userspace: --no-xdp-answers, so
# every query runs through the TypeScript workers, the code that could leak; or xdp),
# SOAK_OUT (default /var/tmp/heimdall-bench/soak-<time>).
#
# The query mix is the benchmark's Zipf mix for dnsperf (10,000 names, 5% misses on the
# first pass through the file), so the cache fills during the first seconds and then
# serves; the zone's TTL of 300 s makes entries expire and be fetched again at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HX_LAB=${HX_LAB:-hxs}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

SECS=${SOAK_SECONDS:-300}
QPS=${SOAK_QPS:-50000}
EVERY=${SOAK_EVERY:-10}
MODE=${SOAK_MODE:-userspace}
OUT=${SOAK_OUT:-/var/tmp/heimdall-bench/soak-$(date +%Y%m%d-%H%M%S)}
[[ $MODE == userspace || $MODE == xdp ]] || die "SOAK_MODE must be userspace or xdp"
require_tools dnsperf nsd curl node
[[ -f dist/cli.js ]] || die "dist/ missing: run 'npm run build'"

mkdir -p "$OUT"
LOAD_PID=
cleanup() {
  local rc=$?
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
  stop_contender || true
  bash scripts/lab.sh down >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up_for_queries "$OUT"

start_contender "$MODE" "$OUT"
PID=${CUR_PIDS[0]}
warm "$OUT/queries"
say "soak: $MODE path, $QPS q/s for $SECS s, RSS every $EVERY s (pid $PID)"

DROPS0=$(client_rcvbuf_errors)
ip netns exec "$NS_C" dnsperf -s "$SERVER" -d "$OUT/queries/zipf-dp.txt" -l "$SECS" -Q "$QPS" -c 8 -T 1 -q 2000 -t 1 -b "$LAT_CLIENT_BUF_KB" >"$OUT/dnsperf.txt" 2>&1 &
LOAD_PID=$!
T0=$SECONDS
: >"$OUT/rss.jsonl"
while kill -0 "$LOAD_PID" 2>/dev/null; do
  t=$((SECONDS - T0))
  paths=$(heimdall_paths)
  printf '{"t":%d,"rss_kib":%d,"hwm_kib":%d,%s}\n' "$t" "$(rss_kib "$PID")" \
    "$(awk '/^VmHWM:/ { print $2 }' "/proc/$PID/status")" "${paths:-\"paths\":null}" >>"$OUT/rss.jsonl"
  ((t >= SECS)) && break
  sleep "$EVERY"
done
wait "$LOAD_PID" || true
LOAD_PID=
# Replies the client's own sockets dropped (lib.sh dp()): counted apart from what the service lost.
DROPS1=$(client_rcvbuf_errors)
if [[ $DROPS0 =~ ^[0-9]+$ && $DROPS1 =~ ^[0-9]+$ ]]; then echo $((DROPS1 - DROPS0)) >"$OUT/client-dropped.txt"; fi
# One last sample after the load, then the summary.
printf '{"t":%d,"rss_kib":%d,"hwm_kib":%d,"after":true}\n' $((SECONDS - T0)) "$(rss_kib "$PID")" \
  "$(awk '/^VmHWM:/ { print $2 }' "/proc/$PID/status")" >>"$OUT/rss.jsonl"
stop_contender

node --import tsx scripts/bench/soak-report.ts "$OUT" "$MODE" "$QPS"
say "soak results in $OUT"
