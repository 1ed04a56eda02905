#!/usr/bin/env bash
# How the peers' settings in scripts/bench/lib.sh were chosen: each peer with 1, 2 and 3
# threads (Unbound num-threads, dnsdist UDP listeners, kresd processes), all sharing the
# address through SO_REUSEPORT, hot set under kxdpgun at two offered rates, twice each.
#
#   bash scripts/bench/peers/pretest.sh        (about 2 minutes; HX_LAB default hxp)
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HX_LAB=${HX_LAB:-hxp}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh
[[ $(id -u) -eq 0 ]] || die "must run as root"
OUT=${PRETEST_OUT:-/var/tmp/heimdall-bench/pretest-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
cleanup() {
  local rc=$?
  stop_contender || true
  bash scripts/lab.sh down >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node --import tsx scripts/bench/queries.ts "$OUT/queries" >/dev/null
bash scripts/lab.sh up 10000 >/dev/null
client_xdp_restore
lab_tune

row() { printf "$@" | tee -a "$OUT/pretest.md"; }
row '| peer | threads | %s |\n|---|---:|---:|---:|\n' "replies/s at 1M offered | replies/s at 500k offered"
for peer in unbound dnsdist kresd; do
  for n in 1 2 3; do
    UNBOUND_THREADS=$n DNSDIST_LISTENERS=$n KRESD_PROCS=$n
    start_contender "$peer" "$OUT/$peer-$n"
    warm "$OUT/queries"
    cells=()
    for q in 1000000 500000; do
      r=()
      for _ in 1 2; do
        r+=("$(kx "$OUT/queries/hot.txt" 2 "$q" "$OUT/$peer-$n/kx.txt" | sed -n 's/.*"replies_pps":\([0-9]*\).*/\1/p')")
      done
      cells+=("${r[0]}, ${r[1]}")
    done
    stop_contender
    row '| %s | %d | %s | %s |\n' "$peer" "$n" "${cells[0]}" "${cells[1]}"
  done
done
