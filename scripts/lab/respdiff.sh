#!/usr/bin/env bash
# A third-party check of heimdall-xdp's answers: CZ-NIC's respdiff compares every answer the
# service gives (XDP path, as shipped) with Unbound's, both caching forwarders in front of
# the lab's NSD, for a few thousand questions asked four times each (upstream, cache and,
# after promotion, the XDP map). docs/CORE.md, "Answers against Unbound", has the result.
#
#   RESPDIFF=/path/to/respdiff bash scripts/lab/respdiff.sh
#
# respdiff is not part of this project: point RESPDIFF at a checkout of it
# (https://gitlab.nic.cz/knot/respdiff). Its Python modules come from Debian:
#   apt-get install python3-dnspython python3-lmdb python3-dpkt python3-numpy python3-scipy python3-tabulate
# Environment: HX_LAB (lab prefix, default hxr), RESPDIFF_OUT (default
# /var/tmp/heimdall-respdiff/<time>). Takes about a minute; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HX_LAB=${HX_LAB:-hxr}
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh

[[ -n ${RESPDIFF:-} && -f ${RESPDIFF:-}/orchestrator.py ]] || die "set RESPDIFF to a checkout of respdiff (https://gitlab.nic.cz/knot/respdiff)"
PY=/usr/bin/python3
$PY -c 'import dns, lmdb, dpkt, numpy, scipy, tabulate' 2>/dev/null ||
  die "respdiff's modules are missing: apt-get install python3-dnspython python3-lmdb python3-dpkt python3-numpy python3-scipy python3-tabulate"
require_tools unbound dig nsd node
require_built
OUT=${RESPDIFF_OUT:-/var/tmp/heimdall-respdiff/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

UB_PID=
cleanup() {
  local rc=$?
  [[ -n $UB_PID ]] && kill "$UB_PID" 2>/dev/null || true
  stop_contender || true
  HX_LAB=$P bash scripts/lab.sh down >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The questions: every special name of the lab zone with thirteen types, every third h
# name (A, some AAAA), 200 names the zone does not have; four times each, every other
# round in mixed case, shuffled with a fixed seed.
$PY - "$OUT/queries.txt" <<'EOF'
import random, sys
random.seed(20261202)
special = ['www', 'alias', 'alias2', 'mail', 'mx1', 'v4only', 'short', 'ten', 'ns1', 'big', 'nosuch', 'a.b.nosuch', 'nothere']
types = ['A', 'AAAA', 'MX', 'TXT', 'NS', 'SOA', 'CNAME', 'SRV', 'DNSKEY', 'DS', 'PTR', 'CAA', 'HINFO']
base = [(f'{n}.lab.example.', t) for n in special for t in types] + [('lab.example.', t) for t in types]
for i in range(0, 1000, 3):
    base.append((f'h{i}.lab.example.', 'A'))
    if i % 9 == 0:
        base.append((f'h{i}.lab.example.', 'AAAA'))
base += [(f'miss{i}.lab.example.', 'A') for i in range(200)]
mixed = lambda s: ''.join(c.upper() if c.isalpha() and random.random() < 0.5 else c for c in s)
lines = [f'{mixed(n) if r % 2 else n} {t}' for r in range(4) for n, t in base]
random.shuffle(lines)
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
EOF

cat >"$OUT/respdiff.cfg" <<EOF
[sendrecv]
timeout = 5
jobs = 4
time_delay_min = 0
time_delay_max = 0
max_timeouts = 20

[servers]
names = heimdall, unbound

[heimdall]
ip = $SERVER
port = 53
transport = udp

[unbound]
ip = $SERVER
port = 5300
transport = udp

[diff]
target = heimdall
criteria = opcode, rcode, flags, question, answertypes, answerrrsigs, answer, authority, edns

[report]
field_weights = timeout, malformed, opcode, question, rcode, flags, answertypes, answerrrsigs, answer, authority, additional, edns, nsid
EOF

say "lab $P up"
HX_LAB=$P bash scripts/lab.sh up 1000 >/dev/null
client_xdp_restore
mkdir -p "$OUT/unbound"
bash scripts/bench/peers/unbound.conf.sh "$OUT/unbound" "$SERVER" "$UPSTREAM" 1 5300 >"$OUT/unbound/unbound.conf"
ip netns exec "$NS_A" unbound -d -c "$OUT/unbound/unbound.conf" >"$OUT/unbound/log" 2>&1 &
UB_PID=$!
start_contender xdp "$OUT"
in_client dig +tries=3 +time=1 -p 5300 @"$SERVER" www.lab.example A | grep -q 'status: NOERROR' || die "Unbound does not answer: $(cat "$OUT/unbound/log")"

DB=$OUT/db
(cd "$RESPDIFF" && $PY qprep.py "$DB" <"$OUT/queries.txt") >"$OUT/qprep.log" 2>&1
(cd "$RESPDIFF" && in_client $PY orchestrator.py -c "$OUT/respdiff.cfg" "$DB") >"$OUT/orchestrator.log" 2>&1
(cd "$RESPDIFF" && $PY msgdiff.py -c "$OUT/respdiff.cfg" "$DB") >"$OUT/msgdiff.log" 2>&1
(cd "$RESPDIFF" && $PY diffsum.py -c "$OUT/respdiff.cfg" "$DB") >"$OUT/report.txt" 2>"$OUT/diffsum.log"
cat "$OUT/report.txt"
say "heimdall-xdp answered, by path: $(heimdall_paths)"
say "raw results in $OUT"
