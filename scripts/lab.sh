#!/usr/bin/env bash
# The three-host lab of docs/ARCHITECTURE.md, as network namespaces on this machine:
#
#   hx-client  hxc0 198.18.0.2/24 fd00:0:0:1::2  ──veth──  hxa0 198.18.0.1/24 fd00:0:0:1::1  hx-appliance
#   hx-appliance hxa1 198.18.1.1/24 fd00:0:0:2::1 ──veth──  hxu0 198.18.1.2/24 fd00:0:0:2::2  hx-upstream (NSD)
#
# No default routes: the client reaches only the appliance, the appliance only the
# upstream. The appliance's client-facing veth has 2 rx queues (one worker per queue).
# The client's end runs a pass-through XDP program, so native XDP_TX replies arrive.
#
#   lab.sh up [ZONE_SIZE] | down | status | exec <client|appliance|upstream> CMD...
#
# HX_LAB (default hx, at most 6 characters) prefixes every name, so a test can build its
# own lab beside an operator's: namespaces $HX_LAB-client ..., interfaces ${HX_LAB}c0,
# ${HX_LAB}a0, ${HX_LAB}a1, ${HX_LAB}u0. HX_LAB_QUEUES (default 2, at most 16) sets the
# rx/tx queues of the client-facing veth pair (one worker per queue).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'lab: %s\n' "$*" >&2; exit 1; }

P=${HX_LAB:-hx}
[[ $P =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "HX_LAB must be 1-6 lowercase letters or digits, starting with a letter"
QUEUES=${HX_LAB_QUEUES:-2}
[[ $QUEUES =~ ^([1-9]|1[0-6])$ ]] || die "HX_LAB_QUEUES must be 1..16"
NS_CLIENT=$P-client
NS_APPLIANCE=$P-appliance
NS_UPSTREAM=$P-upstream
IF_C=${P}c0 IF_A=${P}a0 IF_AU=${P}a1 IF_U=${P}u0
RUN=/run/heimdall-lab-$P
CLIENT4=198.18.0.2 APPLIANCE4=198.18.0.1 CLIENT6=fd00:0:0:1::2 APPLIANCE6=fd00:0:0:1::1
APPLIANCE_UP4=198.18.1.1 UPSTREAM4=198.18.1.2 APPLIANCE_UP6=fd00:0:0:2::1 UPSTREAM6=fd00:0:0:2::2

ns_of() {
  case "$1" in
    client) echo $NS_CLIENT ;;
    appliance) echo $NS_APPLIANCE ;;
    upstream) echo $NS_UPSTREAM ;;
    *) die "unknown host '$1' (client, appliance or upstream)" ;;
  esac
}

addr() { # ns dev v4 v6
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$1" -6 addr add "$4/64" dev "$2" nodad
  ip -n "$1" link set "$2" up
}

nsd_stop() {
  if [[ -f $RUN/nsd/nsd.pid ]]; then
    local pid
    pid=$(cat "$RUN/nsd/nsd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RUN/nsd/nsd.pid"
  fi
}

down() {
  nsd_stop
  for ns in $NS_CLIENT $NS_APPLIANCE $NS_UPSTREAM; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$RUN"
}

up() {
  local zone_size=${1:-10000}
  [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, XDP)"
  command -v nsd >/dev/null || die "nsd missing: run 'bash scripts/setup.sh'"
  [[ -f bpf/xdp_pass.bpf.o ]] || die "bpf/xdp_pass.bpf.o missing: run 'npm run build'"
  down
  mkdir -p "$RUN/nsd"
  for ns in $NS_CLIENT $NS_APPLIANCE $NS_UPSTREAM; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ip -n $NS_CLIENT link add $IF_C numrxqueues "$QUEUES" numtxqueues "$QUEUES" type veth \
    peer name $IF_A netns $NS_APPLIANCE numrxqueues "$QUEUES" numtxqueues "$QUEUES"
  ip -n $NS_APPLIANCE link add $IF_AU type veth peer name $IF_U netns $NS_UPSTREAM
  addr $NS_CLIENT $IF_C $CLIENT4 $CLIENT6
  addr $NS_APPLIANCE $IF_A $APPLIANCE4 $APPLIANCE6
  addr $NS_APPLIANCE $IF_AU $APPLIANCE_UP4 $APPLIANCE_UP6
  addr $NS_UPSTREAM $IF_U $UPSTREAM4 $UPSTREAM6
  # A veth peer only delivers XDP_TX frames when it runs XDP itself.
  ip -n $NS_CLIENT link set dev $IF_C xdpdrv obj bpf/xdp_pass.bpf.o sec xdp

  bash scripts/lab/zone.sh "$zone_size" >"$RUN/nsd/lab.example.zone"
  bash scripts/lab/nsd-conf.sh "$RUN/nsd" $UPSTREAM4 $UPSTREAM6 >"$RUN/nsd/nsd.conf"
  ip netns exec $NS_UPSTREAM nsd -c "$RUN/nsd/nsd.conf" || die "nsd did not start: see $RUN/nsd/nsd.log"
  # Wait for the upstream to answer, which also resolves the neighbours on the way.
  for _ in $(seq 50); do
    if ip netns exec $NS_APPLIANCE dig +tries=1 +time=1 +short @$UPSTREAM4 www.lab.example A >/dev/null 2>&1 &&
       ip netns exec $NS_APPLIANCE dig +tries=1 +time=1 +short @$UPSTREAM6 www.lab.example A >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  ip netns exec $NS_APPLIANCE dig +tries=1 +time=1 +short @$UPSTREAM4 www.lab.example A | grep -q . || die "upstream does not answer"
  ip netns exec $NS_CLIENT ping -c1 -W1 $APPLIANCE4 >/dev/null 2>&1 || true
  ip netns exec $NS_CLIENT ping -6 -c1 -W1 $APPLIANCE6 >/dev/null 2>&1 || true
  echo "lab up: client $NS_CLIENT ($CLIENT4, $CLIENT6) -> appliance $NS_APPLIANCE $IF_A ($APPLIANCE4, $APPLIANCE6) -> upstream $NS_UPSTREAM NSD ($UPSTREAM4, $UPSTREAM6)"
}

status() {
  for ns in $NS_CLIENT $NS_APPLIANCE $NS_UPSTREAM; do
    if ip netns list | grep -qw "$ns"; then
      echo "== $ns"
      ip -n "$ns" -br addr | grep -v '^lo'
      ip -n "$ns" link show | grep -o 'prog/xdp id [0-9]* name [a-z_]*' || true
    else
      echo "== $ns: down"
    fi
  done
  if [[ -f $RUN/nsd/nsd.pid ]] && kill -0 "$(cat $RUN/nsd/nsd.pid)" 2>/dev/null; then
    echo "== nsd running (pid $(cat $RUN/nsd/nsd.pid))"
  else
    echo "== nsd not running"
  fi
}

upstream_stop() { nsd_stop; }
upstream_start() {
  [[ -f $RUN/nsd/nsd.conf ]] || die "lab is not up"
  ip netns exec $NS_UPSTREAM nsd -c "$RUN/nsd/nsd.conf" || die "nsd did not start: see $RUN/nsd/nsd.log"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  upstream-stop) upstream_stop ;;
  upstream-start) upstream_start ;;
  status) status ;;
  exec) shift; [[ $# -ge 2 ]] || die "usage: lab.sh exec <client|appliance|upstream> CMD..."; ns=$(ns_of "$1"); shift; exec ip netns exec "$ns" "$@" ;;
  *) die "usage: lab.sh up [ZONE_SIZE] | down | status | upstream-stop | upstream-start | exec <client|appliance|upstream> CMD..." ;;
esac
