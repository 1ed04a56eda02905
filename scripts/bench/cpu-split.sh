#!/usr/bin/env bash
# npm run bench:cpu-split: where the generator's CPU goes, per reply, for each contender
# (docs/BENCHMARKS.md, "The generator's CPU, symbol by symbol"). With CPUs apart the
# generators run on CPU 0, and every frame kxdpgun sends is taken in by the appliance's
# veth in its sending context, so the XDP program (the reflector's or heimdall-xdp's)
# runs there too: that CPU sets replies/s. Each run starts the contender fresh, warms it
# as the bench does, sends the mix with kxdpgun for SPLIT_SECONDS and samples CPU 0 with
# `perf record` (cpu-clock: this VM has no hardware counters) for 2 s in the middle.
# Each symbol's share of the samples, times the window, over the replies made in it, is
# its nanoseconds per reply. The report lists, per round, every contender's total and the
# symbols that differ most from the first contender's.
#
# Environment: HX_LAB (lab prefix, default hxs), SPLIT_MODES (contenders, default
# "reflector xdp"; the first is the baseline), SPLIT_MIX (zipf or hot), SPLIT_QPS
# (offered, default 2000000), SPLIT_SECONDS (6), SPLIT_ROUNDS (2), SPLIT_TOP (20 symbols),
# SPLIT_OUT (raw results; default /var/tmp/heimdall-cpu-split/<time>), SPLIT_LINES (1: also
# split the contender's XDP program by source line, bpf-lines.c and bpf-lines.py).
set -euo pipefail
export LC_ALL=C # sort and join must agree on the order of symbols
cd "$(dirname "$0")/../.."
export HX_LAB=${HX_LAB:-hxs}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

MODES=${SPLIT_MODES:-reflector xdp}
MIX=${SPLIT_MIX:-zipf}
QPS=${SPLIT_QPS:-2000000}
SECS=${SPLIT_SECONDS:-6}
ROUNDS=${SPLIT_ROUNDS:-2}
TOP=${SPLIT_TOP:-20}
OUT=${SPLIT_OUT:-/var/tmp/heimdall-cpu-split/$(date +%Y%m%d-%H%M%S)}
[[ $MIX == zipf || $MIX == hot ]] || die "SPLIT_MIX must be zipf or hot"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[0-9]+$ && $SECS -ge 5 ]] || die "SPLIT_ROUNDS must be a positive integer and SPLIT_SECONDS at least 5"
[[ -n $SERVER_CPUS ]] || die "needs CPUs apart (two CPUs or more, BENCH_SERVER_CPUS not 'all'): the split is of the generators' CPU"

require_tools kxdpgun dnsperf dig nsd perf
require_built
mkdir -p "$OUT"
# (Not LINES: bash keeps that one for the terminal's height and resets it.)
BY_LINE=${SPLIT_LINES:-0}
if [[ $BY_LINE == 1 ]]; then
  require_tools cc python3 bpftool
  cc -O1 -o "$OUT/bpf-lines" scripts/bench/bpf-lines.c -lbpf || die "cannot build scripts/bench/bpf-lines.c (libbpf-dev: run 'bash scripts/setup.sh')"
fi

# The highest id of a loaded XDP program named as the contenders' are (0: none).
last_prog_id() {
  bpftool prog show --json | python3 -c 'import json, sys; print(max((p["id"] for p in json.load(sys.stdin) if p.get("name") in ("heimdall_xdp", "reflector_xdp")), default=0))'
}

trap_lab_cleanup

lab_up_for_queries "$OUT"
file=$QDIR/zipf-kx.txt
[[ $MIX == hot ]] && file=$QDIR/hot.txt

# "symbol<TAB>ns per reply" for one run: perf's flat profile of CPU 0, each share scaled
# to the 2-s window and divided by the replies made in it (kxdpgun's rate times 2 s).
# JIT-compiled BPF programs carry their tag in the name; it is dropped so two loads of
# one program read as one symbol.
per_reply() { # dir replies_pps
  perf report -i "$1/cpu0.data" --no-children --sort sym --stdio -g none 2>/dev/null |
    awk -v pps="$2" '/^ *[0-9.]+%/ { p = $1; sub(/%/, "", p); $1 = ""; sub(/^ +/, ""); gsub(/bpf_prog_[0-9a-f]+_/, "bpf_prog_"); ns[$0] += p / 100 * 1e9 / pps }
      END { for (s in ns) printf "%s\t%.1f\n", s, ns[s] }' | sort
}

for ((round = 1; round <= ROUNDS; round++)); do
  for mode in $MODES; do
    dir=$OUT/$mode-$round
    mkdir -p "$dir"
    assert_idle
    rm -f "$dir/lines.txt" "$dir/lines-split.txt"
    [[ $BY_LINE == 1 ]] && before=$(last_prog_id)
    start_contender "$mode" "$dir"
    warm "$QDIR"
    sleep 1
    (
      sleep $(((SECS - 2) / 2))
      perf record -q -C "$GEN_CPUS" -F 4000 -o "$dir/cpu0.data" -- sleep 2 >"$dir/perf.log" 2>&1
    ) &
    rec=$!
    kx "$file" "$SECS" "$QPS" "$dir/kxdpgun.txt" >"$dir/kx.json"
    wait "$rec"
    if [[ $BY_LINE == 1 ]]; then
      # The contender's program: one of those names loaded since it started (none for a
      # peer without XDP).
      prog=$(last_prog_id)
      if ((prog > before)); then
        "$OUT/bpf-lines" "$prog" >"$dir/lines.txt" || { rm -f "$dir/lines.txt"; say "no line split for $mode in round $round"; }
      fi
    fi
    stop_contender
    pps=$(sed -n 's/.*"replies_pps":\([0-9]*\).*/\1/p' "$dir/kx.json")
    [[ ${pps:-0} -gt 0 ]] || die "$mode made no replies in round $round (see $dir/kxdpgun.txt)"
    per_reply "$dir" "$pps" >"$dir/split.tsv"
    if [[ -s $dir/lines.txt ]]; then
      perf script -i "$dir/cpu0.data" -F ip,sym 2>/dev/null >"$dir/samples.txt" &&
        python3 scripts/bench/bpf-lines.py "$dir/lines.txt" "$dir/samples.txt" "$pps" "$TOP" >"$dir/lines-split.txt" ||
        { rm -f "$dir/lines-split.txt"; say "no line split for $mode in round $round"; }
    fi
    echo "$pps" >"$dir/replies_pps"
  done
  base=${MODES%% *}
  {
    printf 'round %d, %s mix, ns of CPU %s per reply\n' "$round" "$MIX" "$GEN_CPUS"
    for mode in $MODES; do
      printf '  %-10s %7d replies/s %7.0f ns\n' "$mode" "$(cat "$OUT/$mode-$round/replies_pps")" \
        "$(awk -F'\t' '{ t += $2 } END { print t }' "$OUT/$mode-$round/split.tsv")"
    done
    for mode in $MODES; do
      [[ $mode == "$base" ]] && continue
      printf '  %s - %s, the %d largest differences:\n' "$mode" "$base" "$TOP"
      join -t $'\t' -a1 -a2 -e 0 -o 0,1.2,2.2 "$OUT/$base-$round/split.tsv" "$OUT/$mode-$round/split.tsv" |
        awk -F'\t' '{ d = $3 - $2; printf "%+8.1f\t%7.1f\t%7.1f\t%s\n", d, $2, $3, $1 }' |
        sort -t $'\t' -k1,1 -g -r | awk -F'\t' -v top="$TOP" 'NR <= top { printf "    %s ns (%s -> %s)  %s\n", $1, $2, $3, $4 }'
    done
    for mode in $MODES; do
      [[ -s $OUT/$mode-$round/lines-split.txt ]] || continue
      printf '  %s, its XDP program by source line (ns per reply, share of the CPU):\n' "$mode"
      sed 's/^/    /' "$OUT/$mode-$round/lines-split.txt"
    done
  } | tee -a "$OUT/report.txt"
done
say "raw results in $OUT"
