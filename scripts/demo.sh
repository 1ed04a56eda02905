#!/usr/bin/env bash
# npm run demo: the lab demo. Builds if needed, brings up the three-namespace lab
# (client, appliance, NSD upstream), runs `heimdall-xdp attach` on the appliance, and
# asks the same name from the client until the XDP program answers it, showing after
# each answer which path produced it, with the counters to prove it.
#   demo.sh [--keep]    --keep leaves the lab and the service running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1
[[ $(id -u) -eq 0 ]] || die "must run as root (XDP and namespaces): sudo npm run demo"
[[ -f dist/bin.js && -f build/Release/heimdall.node && -f bpf/heimdall.bpf.o ]] || npm run --silent build

export HX_LAB=${HX_LAB:-hx}
LAB="bash scripts/lab.sh"
NS_A=$HX_LAB-appliance NS_C=$HX_LAB-client
LOG=$(mktemp)
PID=""

cleanup() {
  if ((KEEP == 0)); then
    [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    $LAB down
  fi
  rm -f "$LOG"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
metric() { ip netns exec "$NS_A" curl -s --max-time 2 http://127.0.0.1:9153/metrics | awk -v k="$1" '$1 == k { print $2; f=1 } END { if (!f) print 0 }'; }
paths() { printf '%s %s %s' "$(metric 'heimdall_responses_total{path="upstream"}')" "$(metric 'heimdall_responses_total{path="cache"}')" "$(metric 'heimdall_responses_total{path="xdp"}')"; }

step "lab: client -> appliance (heimdall-xdp) -> upstream (NSD)"
$LAB up 10000

# The lab's addresses (198.18.0.0/15, fd00::/8) are not in the default access list,
# which serves private networks only: the demo opens the service to them.
step "heimdall-xdp attach ${HX_LAB}a0 --upstream 198.18.1.2,[fd00:0:0:2::2] --allow 198.18.0.0/15,fd00::/8"
ip netns exec "$NS_A" node bin/heimdall-xdp.js attach "${HX_LAB}a0" --upstream '198.18.1.2,[fd00:0:0:2::2]' \
  --allow 198.18.0.0/15,fd00::/8 --metrics-listen 127.0.0.1:9153 >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q serving "$LOG" && break; kill -0 $PID 2>/dev/null || { cat "$LOG"; die "service did not start"; }; sleep 0.1; done
cat "$LOG"

step "the same question five times from the client (dig @198.18.0.1 www.lab.example A)"
for i in 1 2 3 4 5; do
  read -r u0 c0 x0 <<<"$(paths)"
  ans=$(ip netns exec "$NS_C" dig @198.18.0.1 +tries=1 +time=2 +noall +answer www.lab.example A | awk '{ printf "%s ttl=%s  ", $5, $2 }')
  # The XDP counter is read from the program at once; a worker publishes its counters
  # within a second of a query (src/engine/upkeep.ts): wait until one of the three moves.
  path="no path counted it within 3 s"
  for _ in $(seq 30); do
    read -r u1 c1 x1 <<<"$(paths)"
    if (( $(printf '%.0f' "$x1") > $(printf '%.0f' "$x0") )); then path="XDP (kernel, from the BPF hot map)"; break; fi
    if (( $(printf '%.0f' "$c1") > $(printf '%.0f' "$c0") )); then path="userspace cache (AF_XDP worker)"; break; fi
    if (( $(printf '%.0f' "$u1") > $(printf '%.0f' "$u0") )); then path="upstream (NSD), then cached"; break; fi
    sleep 0.1
  done
  printf '  ask %d: %s <- %s\n' "$i" "$ans" "$path"
done
echo "  (every AF_XDP worker answers from one shared cache, whichever rx queue an ask lands on;"
echo "   asks are counted across workers, so the third promotes the name into XDP)"

step "IPv6 with DNSSEC OK (kdig @fd00:0:0:1::1 +dnssec WwW.lab.example AAAA), asked four times: DO is part of the key"
for i in 1 2 3 4; do ip netns exec "$NS_C" kdig @fd00:0:0:1::1 +dnssec +timeout=2 +retry=0 +short WwW.lab.example AAAA; done | tail -1

step "heimdall-xdp cache ${HX_LAB}a0 lookup www.lab.example A (over the control socket)"
ip netns exec "$NS_A" node bin/heimdall-xdp.js cache "${HX_LAB}a0" lookup www.lab.example A | sed 's/^/  /'

step "heimdall-xdp stats ${HX_LAB}a0"
ip netns exec "$NS_A" node bin/heimdall-xdp.js stats "${HX_LAB}a0" | sed 's/^/  /'

step "XDP program counters (per-CPU, summed)"
ip netns exec "$NS_A" curl -s http://127.0.0.1:9153/metrics | grep -E '^heimdall_(xdp_packets_total\{outcome="(TX|USER_MISS|PASS_NOT_UDP)"\}|hot_entries|responses_total)'

if ((KEEP)); then
  step "left running: service pid $PID, lab $HX_LAB (stop: kill $PID; bash scripts/lab.sh down)"
  trap - EXIT
  rm -f "$LOG"
  exit 0
fi
step "SIGTERM: detach and leave the interface as it was"
kill -TERM "$PID"
wait "$PID" || true
PID=""
ip -n "$NS_A" link show "${HX_LAB}a0" | grep -q 'prog/xdp' && die "program still attached" || echo "  ${HX_LAB}a0: no XDP program"
