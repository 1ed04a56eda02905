#!/usr/bin/env bash
# npm run bench:dispatcher: what libxdp's dispatcher costs heimdall-xdp's hot-answer path.
# In the lab (scripts/lab.sh), heimdall-xdp attached directly (A) and through the
# dispatcher (B) answer the same 100 hot names from XDP under kxdpgun at one offered
# rate; the rounds alternate A B, B A, ... in one sitting, and the result is the ratio
# of B's replies/s to A's in each round, with its median and spread. The machine's own
# noise sets how small a cost this can show: BENCH_B=direct runs A against A.
#
# The dispatcher needs bpffs (one is mounted for the run and named with LIBXDP_BPFFS,
# because 'ip netns exec' hides the host's) and a kernel that runs extension (freplace)
# programs; without them the script says so and stops.
#
# Environment: HX_LAB (lab prefix, default hxd), BENCH_ROUNDS (4), BENCH_SECONDS (5, per
# kxdpgun run), BENCH_QPS (offered, 1000000), BENCH_B (dispatcher).
set -euo pipefail
cd "$(dirname "$0")/../.."
HX_LAB=${HX_LAB:-hxd}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-4}
SECS=${BENCH_SECONDS:-5}
QPS=${BENCH_QPS:-1000000}
B=${BENCH_B:-dispatcher}
[[ $B == dispatcher || $B == direct ]] || die "BENCH_B must be dispatcher or direct"
OUT=${BENCH_OUT:-/var/tmp/heimdall-bench/dispatcher-$(date +%Y%m%d-%H%M%S)}

require_tools kxdpgun dnsperf dig nsd curl node
require_built
mkdir -p "$OUT"
BPFFS=/run/heimdall-bench-bpffs-$$
export LIBXDP_BPFFS=$BPFFS

cleanup() {
  local rc=$?
  stop_contender || true
  ip -n "$NS_A" link set dev "$IF_A" xdp off 2>/dev/null || true
  HX_LAB=$P bash scripts/lab.sh down >/dev/null 2>&1 || true
  umount "$BPFFS" 2>/dev/null || true
  rmdir "$BPFFS" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"
if [[ $B == dispatcher ]]; then
  why=$(node --input-type=module -e "
    const { loadAddon, BPF_PASS_OBJECT_PATH } = await import('$PWD/dist/native/addon.js');
    process.stdout.write(loadAddon().dispatcherUnavailable(BPF_PASS_OBJECT_PATH));")
  [[ -z $why ]] || die "cannot measure the dispatcher here: $why (BENCH_B=direct measures the noise floor instead)"
fi

for ((i = 0; i < 100; i++)); do echo "h$i.lab.example A"; done >"$OUT/hot.txt"
HX_LAB=$P bash scripts/lab.sh up 1000 >/dev/null
client_xdp_restore
lab_tune
say "lab $P up; $ROUNDS rounds of direct vs $B, kxdpgun ${SECS}s at $QPS q/s; raw results in $OUT"

# One side: heimdall-xdp attached as asked, warmed until the hot set is in XDP, kxdpgun.
side() { # how round side(a|b)
  local how=$1 r=$2 tag=$3-$1-$2 res
  HEIMDALL_EXTRA="--xdp-attach $how --no-af-xdp" start_contender xdp "$OUT/$tag" >&2
  local want='direct attach\)'
  [[ $how == dispatcher ]] && want='libxdp dispatcher, position 1 of 1\)'
  grep -qE "$want" "$CUR_LOG" || die "heimdall-xdp did not attach as $how: $(grep serving "$CUR_LOG")"
  in_client dnsperf -s "$SERVER" -d "$OUT/hot.txt" -n 5 -c 4 -q 100 -t 2 >/dev/null 2>&1 || true
  res=$(kx "$OUT/hot.txt" "$SECS" "$QPS" "$OUT/$tag/kxdpgun.txt")
  printf '{"round":%d,"side":"%s","attach":"%s","paths":{%s},"kx":%s}\n' "$r" "$3" "$how" "$(heimdall_paths)" "$res" >>"$OUT/results.jsonl"
  stop_contender
  sed -n 's/.*"replies_pps":\([0-9]*\).*/\1/p' <<<"$res"
}

ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then a=$(side direct "$r" a); b=$(side "$B" "$r" b); else b=$(side "$B" "$r" b); a=$(side direct "$r" a); fi
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", (a > 0 ? b / a : 0) }')
  ratios+=("$ratio")
  say "round $r: direct $a replies/s, $B $b replies/s, ratio $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -g | awk -v b="$B" '
  { v[NR] = $1 }
  END {
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s / direct, replies/s of the hot set from XDP: median %.3f (%.3f-%.3f over %d rounds); cost %.1f%%\n", b, med, v[1], v[NR], NR, (1 - med) * 100
  }' | tee "$OUT/summary.txt"
