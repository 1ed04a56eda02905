#!/usr/bin/env bash
# npm run bench -- flood: a random-subdomain flood and a legitimate load at once, for
# heimdall-xdp and each peer (Unbound, dnsdist, Knot Resolver) in turn, in the lab.
#
#   flood       dnsperf from the client's address (198.18.0.2): unique names under the
#               zone, never asked before (NXDOMAIN at the upstream), FLOOD_QPS for SECS
#   legitimate  dnsperf from a second network (198.18.4.2, an extra address on the
#               client's veth): the benchmark's Zipf mix (hits and 5% new names that
#               exist) at LEGIT_QPS for SECS, every latency recorded
#
# Reported per contender: legitimate answers/s (responses other than SERVFAIL/REFUSED;
# a lost query is no answer), their p50/p99 (a lost query counts as slower than any
# answer), the flood's fate, and the packets the upstream received during the run (its
# veth's rx counter: UDP queries and TCP segments).
#
# Environment: HX_LAB (default hxf), BENCH_ROUNDS (1), BENCH_FLOOD_SECONDS (10),
# BENCH_FLOOD_QPS (10000), BENCH_LEGIT_QPS (2000), BENCH_FLOOD_CONTENDERS
# (xdp unbound dnsdist kresd), BENCH_OUT (default /var/tmp/heimdall-bench/flood-<time>).
# Results: $OUT/flood.jsonl and a Markdown table on stdout (and in $OUT/flood.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HX_LAB=${HX_LAB:-hxf}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-1}
SECS=${BENCH_FLOOD_SECONDS:-10}
FLOOD_QPS=${BENCH_FLOOD_QPS:-10000}
LEGIT_QPS=${BENCH_LEGIT_QPS:-2000}
CONTENDERS=(${BENCH_FLOOD_CONTENDERS:-xdp unbound dnsdist kresd})
OUT=${BENCH_OUT:-/var/tmp/heimdall-bench/flood-$(date +%Y%m%d-%H%M%S)}
LEGIT_SRC=198.18.4.2
IF_U=${P}u0 NS_U=$P-upstream

require_tools dnsperf dig nsd curl node
for c in "${CONTENDERS[@]}"; do
  case $c in
    unbound | dnsdist | kresd) command -v "$c" >/dev/null || die "$c missing: run 'bash scripts/setup.sh --bench' or leave it out of BENCH_FLOOD_CONTENDERS" ;;
  esac
done
require_built

mkdir -p "$OUT"
RESULTS=$OUT/flood.jsonl
: >"$RESULTS"

cleanup() {
  local rc=$?
  stop_contender || true
  ip -n "$NS_A" link set dev "$IF_A" xdp off 2>/dev/null || true
  HX_LAB=$P bash scripts/lab.sh down >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up_for_queries "$OUT"
# The second network: its address on the client's veth, and the appliance's route back.
ip -n "$NS_C" addr add "$LEGIT_SRC/24" dev "$IF_C"
ip -n "$NS_A" route add 198.18.4.0/24 dev "$IF_A"

# Unique names for one run: a tag of their own, so no contender has seen them.
flood_file() { # tag file
  awk -v tag="$1" -v n=$((FLOOD_QPS * SECS * 11 / 10)) 'BEGIN { srand(); for (i = 0; i < n; i++) printf "%s%dx%06x.lab.example A\n", tag, i, int(rand() * 16777216) }' >"$2"
}

run_one() { # round contender
  local round=$1 c=$2 dir=$OUT/run/r$1-$2 up0 up1
  start_contender "$c" "$dir"
  warm "$QDIR"
  flood_file "f$round$c" "$dir/flood.txt"
  up0=$(ip netns exec "$NS_U" cat "/sys/class/net/$IF_U/statistics/rx_packets")
  in_client dnsperf -s "$SERVER" -d "$dir/flood.txt" -l "$SECS" -Q "$FLOOD_QPS" -q 25000 -c 4 -t 2 >"$dir/flood.out" 2>&1 &
  local fpid=$!
  in_client dnsperf -a "$LEGIT_SRC" -s "$SERVER" -d "$QDIR/zipf-dp.txt" -l "$SECS" -Q "$LEGIT_QPS" -q 500 -c 2 -t 2 -b "$LAT_CLIENT_BUF_KB" -v >"$dir/legit.out" 2>&1 || true
  wait "$fpid" || true
  up1=$(ip netns exec "$NS_U" cat "/sys/class/net/$IF_U/statistics/rx_packets")
  local rss=0
  [[ $c == xdp ]] && rss=$(rss_kib "${CUR_PIDS[0]}")
  stop_contender
  # Legitimate: answered (not SERVFAIL/REFUSED), lost, latencies of the answered.
  awk '/^> / { n++; if ($2 == "T") lost++; else if ($2 == "SERVFAIL" || $2 == "REFUSED") bad++; else { good++; print $NF } }
       END { printf "%d %d %d\n", n, good + 0, lost + 0 > "/dev/stderr" }' "$dir/legit.out" 2>"$dir/legit.counts" | sort -g >"$dir/legit.lat"
  read -r n good lost <"$dir/legit.counts"
  awk -v c="$c" -v round="$round" -v secs="$SECS" -v n="$n" -v good="$good" -v lost="$lost" -v up=$((up1 - up0)) -v rss="$rss" -v flood="$dir/flood.out" '
    { v[NR] = $1 }
    function pct(p,   i) { i = int(p * n + 0.999999); if (i < 1) i = 1; return (i <= NR) ? sprintf("%.6f", v[i]) : "null" }
    END {
      while ((getline line < flood) > 0) {
        if (line ~ /Queries sent:/) { split(line, a, /[: ]+/); fs = a[4] + 0 }
        if (line ~ /Queries completed:/) { split(line, a, /[: ]+/); fc = a[4] + 0 }
        if (line ~ /SERVFAIL [0-9]+/) { match(line, /SERVFAIL [0-9]+/); fsf = substr(line, RSTART + 9, RLENGTH - 9) + 0 }
      }
      printf "{\"round\":%d,\"contender\":\"%s\",\"seconds\":%d,\"legit_sent\":%d,\"legit_answered\":%d,\"legit_lost\":%d,\"legit_answers_per_s\":%.0f,\"p50\":%s,\"p99\":%s,\"flood_sent\":%d,\"flood_completed\":%d,\"flood_servfail\":%d,\"upstream_packets\":%d,\"rss_kib\":%d}\n",
        round, c, secs, n, good, lost, good / secs, pct(0.5), pct(0.99), fs, fc, fsf, up, rss
    }' "$dir/legit.lat" >>"$RESULTS"
  say "round $round: $c: $(tail -1 "$RESULTS")"
}

printf '{"date":"%s","git":"%s","loadavg_start":"%s","flood_qps":%d,"legit_qps":%d,"seconds":%d}\n' \
  "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$FLOOD_QPS" "$LEGIT_QPS" "$SECS" >"$OUT/meta.json"
for ((round = 1; round <= ROUNDS; round++)); do
  for c in "${CONTENDERS[@]}"; do run_one "$round" "$c"; done
done
printf '{"loadavg_end":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.json"

{
  echo "| contender | legitimate answers/s | legitimate answered | legitimate p50 | legitimate p99 | flood answered (of which SERVFAIL) | upstream packets |"
  echo "|---|---|---|---|---|---|---|"
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    const label = { xdp: "heimdall-xdp", unbound: "Unbound", dnsdist: "dnsdist", kresd: "Knot Resolver" };
    const ms = (s) => (s === null ? "lost" : (s * 1000).toFixed(2) + " ms");
    for (const r of lines) {
      const pct = r.legit_sent ? ((100 * r.legit_answered) / r.legit_sent).toFixed(1) : "0";
      console.log(`| ${label[r.contender] ?? r.contender} | ${r.legit_answers_per_s} | ${pct}% of ${r.legit_sent} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.flood_completed} of ${r.flood_sent} (${r.flood_servfail}) | ${r.upstream_packets} |`);
    }' "$RESULTS"
} | tee "$OUT/flood.md"
say "raw results in $OUT"
