# shellcheck shell=bash
# Shared by scripts/bench/run.sh and scripts/bench/soak.sh: the lab's names, the
# contenders (start / stop, one at a time on the appliance's client-facing veth at
# 198.18.0.1:53, all forwarding to the lab's NSD at 198.18.1.2) and the two load
# generators (kxdpgun for throughput, dnsperf at a fixed rate for latency).
#
# Every process started here is remembered by PID and stopped by PID; every XDP program
# attached here is cleared here.

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
say() { printf 'bench: %s\n' "$*" >&2; }

# Root (namespaces, XDP, AF_XDP) and the tools named, or a line saying what to do.
require_tools() { # tool...
  [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, XDP, AF_XDP)"
  local t
  for t in "$@"; do command -v "$t" >/dev/null || die "$t missing: run 'bash scripts/setup.sh --bench'"; done
}

# The BPF objects rebuilt if stale, and dist/ as new as src/: a benchmark of old code
# would be a wrong answer, not a slow one.
require_built() {
  make -s -C bpf >/dev/null || die "BPF build failed"
  [[ -f dist/cli.js ]] || die "dist/ missing: run 'npm run build'"
  if [[ -n $(find src -name '*.ts' -newer dist/cli.js -print -quit) ]]; then
    die "dist/ is older than src/: run 'npm run build'"
  fi
}

P=${HX_LAB:-hxb}
[[ $P =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "HX_LAB must be 1-6 lowercase letters or digits, starting with a letter"
NS_C=$P-client NS_A=$P-appliance
IF_C=${P}c0 IF_A=${P}a0
SERVER=198.18.0.1 UPSTREAM=198.18.1.2
METRICS=127.0.0.1:9153

# What each contender is, for the report.
declare -A LABEL=(
  [reflector]="XDP_TX reflector (ceiling)"
  [lookup-floor]="XDP_TX reflector + one table line per query (bpf/reflector.bpf.c, REFLECT_LOOKUP)"
  [xdp]="heimdall-xdp, XDP path"
  [userspace]="heimdall-xdp, userspace path (--no-xdp-answers)"
  [unbound]="Unbound"
  [dnsdist]="dnsdist"
  [kresd]="Knot Resolver"
)

# heimdall-xdp splits its hot map evenly between its engines (two workers and the main
# thread's): 30,000 entries let each promote the whole 10,000-name mix. The default (10%
# of the 100,000-entry cache) would cap each at 3,333.
HEIMDALL_HOT_SIZE=${HEIMDALL_HOT_SIZE:-30000}

# Peers' settings, chosen by scripts/bench/peers/pretest.sh (see docs/BENCHMARKS.md):
# with 3 each measured a little ahead of 2 and clearly ahead of 1 on this 2-core machine.
UNBOUND_THREADS=${UNBOUND_THREADS:-3}
DNSDIST_LISTENERS=${DNSDIST_LISTENERS:-3}
KRESD_PROCS=${KRESD_PROCS:-3}

# PIDs of the running contender's processes, and its log.
CUR_PIDS=()
CUR_NAME=
CUR_LOG=

# CPUs apart (docs/BENCHMARKS.md, "CPUs apart"). kxdpgun pins its one thread to CPU 0,
# and the XDP program (heimdall-xdp's or the reflector's) and the kernel's receive path
# for what it sends run in its context there. The generators (kxdpgun, dnsperf, dig)
# stay on GEN_CPUS; every contender's own threads and the lab's NSD run on SERVER_CPUS,
# the rest: as a benchmark keeps its load generator apart from what it measures, and as
# an operator keeps a server's threads off the cores that take the NIC's packets
# (heimdall-xdp's --cpus; the peers under taskset). Without it the scheduler put the
# contenders' threads on the generator's CPU part of the time, woken from its softirq,
# and the generator sent what they left it. BENCH_SERVER_CPUS=all pins nothing (so does
# a one-CPU machine); BENCH_SERVER_CPUS=<list> picks the contenders' CPUs (keep CPU 0,
# the generators', out of it).
GEN_CPUS=0
if [[ ${BENCH_SERVER_CPUS:-} == all ]] || (($(nproc) < 2)); then
  SERVER_CPUS=
else
  SERVER_CPUS=${BENCH_SERVER_CPUS:-1-$(($(nproc) - 1))}
fi
[[ -z $SERVER_CPUS || $SERVER_CPUS =~ ^[0-9,-]+$ ]] || die "BENCH_SERVER_CPUS must be a CPU list (e.g. 1-3) or 'all'"
# A contender's command line under the server CPUs (nothing when not pinning).
SERVER_PIN=()
[[ -n $SERVER_CPUS ]] && SERVER_PIN=(taskset -c "$SERVER_CPUS")

in_client() {
  if [[ -n $SERVER_CPUS ]]; then
    ip netns exec "$NS_C" taskset -c "$GEN_CPUS" "$@"
  else
    ip netns exec "$NS_C" "$@"
  fi
}
in_appliance() { ip netns exec "$NS_A" "$@"; }

# kxdpgun leaves its XDP program on the client's veth: take it off and put the lab's
# pass program back (the client end needs XDP for native XDP_TX replies to arrive).
client_xdp_restore() {
  ip -n "$NS_C" link set dev "$IF_C" xdp off 2>/dev/null || true
  ip -n "$NS_C" link set dev "$IF_C" xdpdrv obj bpf/xdp_pass.bpf.o sec xdp
}

# Lab settings every contender runs under. XPS: the appliance's kernel stack sends all
# replies on tx queue 0 of its veth, which a veth delivers on rx queue 0 of the peer.
# kxdpgun (one thread on veth) has its AF_XDP socket on queue 0 only, and without this
# it never sees the half of a kernel-stack server's replies that the socket hash puts
# on queue 1 (measured: exactly half of Unbound's replies went missing). AF_XDP sends
# on its own queue and XDP_TX on the queue of the CPU it runs on, so heimdall-xdp and
# the reflector are not affected.
lab_tune() {
  local all
  all=$(printf '%x' $(((1 << $(nproc)) - 1)))
  in_appliance sh -c "echo $all > /sys/class/net/$IF_A/queues/tx-0/xps_cpus && echo 0 > /sys/class/net/$IF_A/queues/tx-1/xps_cpus"
}

# The query files in OUT/queries (more arguments: queries.ts options), then the lab up
# with a zone that holds every name they ask, the client's pass program and the lab's
# tuning. Sets QDIR and ZONE_SIZE.
lab_up_for_queries() { # out [queries.ts options...]
  local out=$1
  shift
  QDIR=$out/queries
  node --import tsx scripts/bench/queries.ts "$QDIR" "$@" >"$out/queries.json"
  ZONE_SIZE=$(sed -n 's/.*"zoneSize":\([0-9]*\).*/\1/p' "$out/queries.json")
  say "lab $P up (zone of $ZONE_SIZE names)"
  HX_LAB=$P bash scripts/lab.sh up "$ZONE_SIZE" >/dev/null
  client_xdp_restore
  lab_tune
  pin_upstream
}

# The lab's NSD (its main process and the servers it forked) on the server CPUs.
pin_upstream() {
  [[ -n $SERVER_CPUS ]] || return 0
  local main pid
  main=$(cat "/run/heimdall-lab-$P/nsd/nsd.pid")
  for pid in "$main" $(pgrep -P "$main"); do taskset -a -cp "$SERVER_CPUS" "$pid" >/dev/null; done
}

# On exit, INT or TERM: the running contender stopped and the lab down, the exit status
# kept. A script with more to undo defines bench_cleanup_extra, which runs first.
trap_lab_cleanup() {
  trap _lab_cleanup EXIT
  trap 'exit 130' INT TERM
}
_lab_cleanup() {
  local rc=$?
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra || true; fi
  stop_contender || true
  HX_LAB=$P bash scripts/lab.sh down >/dev/null 2>&1 || true
  exit $rc
}

# Answers a query for a name in the zone within the timeout (seconds), or fails.
wait_answer() {
  local deadline=$((SECONDS + ${1:-20})) pid
  while ((SECONDS < deadline)); do
    if in_client dig +tries=1 +time=1 @"$SERVER" www.lab.example A 2>/dev/null | grep -q 'status: NOERROR'; then
      return 0
    fi
    for pid in "${CUR_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
    sleep 0.2
  done
  return 1
}

start_bg() { # log cmd...: in the appliance namespace; ip netns exec execs, so $! is the server
  local log=$1
  shift
  # Not through a shell function: a backgrounded function is a subshell, and its PID
  # would not be the server's.
  ip netns exec "$NS_A" "$@" >"$log" 2>&1 &
  CUR_PIDS+=($!)
}

# Nothing of the last contender may remain: no XDP program on the appliance's veth and
# nothing on port 53 there, or the next contender's figures would be someone else's.
assert_idle() {
  if ip -n "$NS_A" link show dev "$IF_A" | grep -q 'prog/xdp'; then
    die "an XDP program is still attached to $IF_A: $(ip -n "$NS_A" link show dev "$IF_A" | grep -o 'prog/xdp.*')"
  fi
  local busy
  busy=$(in_appliance ss -Hlun 'sport = :53')
  [[ -z $busy ]] || die "port 53 is still in use in $NS_A: $busy"
}

start_contender() { # name rundir
  local name=$1 dir=$2 i
  assert_idle
  mkdir -p "$dir"
  CUR_NAME=$name CUR_PIDS=() CUR_LOG=$dir/$name.log
  case "$name" in
    reflector)
      ip -n "$NS_A" link set dev "$IF_A" xdpdrv obj bpf/reflector.bpf.o sec xdp
      : >"$CUR_LOG"
      ;;
    lookup-floor)
      ip -n "$NS_A" link set dev "$IF_A" xdpdrv obj bpf/reflector_lookup.bpf.o sec xdp
      : >"$CUR_LOG"
      ;;
    xdp | userspace)
      local extra=() deadline
      [[ $name == userspace ]] && extra=(--no-xdp-answers)
      [[ -n $SERVER_CPUS ]] && extra+=(--cpus "$SERVER_CPUS")
      # HEIMDALL_EXTRA: more flags, split on spaces (scripts/bench/dispatcher.sh).
      # shellcheck disable=SC2086
      # The edge policy on, as it ships: the lab's prefixes allowed (the default list
      # refuses them), and rate limiting at its highest rate, so that every answer pays
      # for its bucket while none of the generator's (one /24, a flood by design) is cut.
      # HEIMDALL_NODE_FLAGS: node's own options (scripts/bench/tails.sh profiles with them).
      start_bg "$CUR_LOG" node ${HEIMDALL_NODE_FLAGS:-} bin/heimdall-xdp.js attach "$IF_A" --upstream "$UPSTREAM" --metrics-listen "$METRICS" \
        --hot-size "$HEIMDALL_HOT_SIZE" --allow 198.18.0.0/15,fd00::/8 --rrl "${HEIMDALL_RRL:-1000000}" "${extra[@]}" ${HEIMDALL_EXTRA:-}
      deadline=$((SECONDS + 30))
      until grep -q serving "$CUR_LOG"; do
        kill -0 "${CUR_PIDS[0]}" 2>/dev/null || die "heimdall-xdp exited: $(cat "$CUR_LOG")"
        ((SECONDS < deadline)) || die "heimdall-xdp not serving after 30 s: $(cat "$CUR_LOG")"
        sleep 0.1
      done
      ;;
    unbound)
      bash scripts/bench/peers/unbound.conf.sh "$dir" "$SERVER" "$UPSTREAM" "$UNBOUND_THREADS" >"$dir/unbound.conf"
      start_bg "$CUR_LOG" "${SERVER_PIN[@]}" unbound -d -c "$dir/unbound.conf"
      ;;
    dnsdist)
      bash scripts/bench/peers/dnsdist.conf.sh "$SERVER" "$UPSTREAM" "$DNSDIST_LISTENERS" >"$dir/dnsdist.conf"
      start_bg "$CUR_LOG" "${SERVER_PIN[@]}" dnsdist -C "$dir/dnsdist.conf" --supervised --disable-syslog
      ;;
    kresd)
      rm -rf "$dir/kresd"
      mkdir -p "$dir/kresd"
      bash scripts/bench/peers/kresd.conf.sh "$dir/kresd" "$SERVER" "$UPSTREAM" >"$dir/kresd.conf"
      for ((i = 0; i < KRESD_PROCS; i++)); do
        start_bg "$dir/kresd-$i.log" "${SERVER_PIN[@]}" kresd -n -q -c "$dir/kresd.conf" "$dir/kresd"
      done
      ;;
    *) die "unknown contender '$name'" ;;
  esac
  wait_answer 30 || die "$name does not answer: $(cat "$CUR_LOG" 2>/dev/null | tail -5)"
}

stop_contender() {
  [[ -n $CUR_NAME ]] || return 0
  if [[ $CUR_NAME == reflector || $CUR_NAME == lookup-floor ]]; then
    ip -n "$NS_A" link set dev "$IF_A" xdp off 2>/dev/null || true
  fi
  local pid _
  for pid in "${CUR_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CUR_PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$CUR_NAME (pid $pid) did not stop on SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      # A killed heimdall-xdp leaves its program: remove it (never a foreign one).
      [[ $CUR_NAME == xdp || $CUR_NAME == userspace ]] && in_appliance node bin/heimdall-xdp.js detach "$IF_A" >/dev/null 2>&1 || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  CUR_PIDS=() CUR_NAME=
}

# The service's Prometheus counters that say which path answered (heimdall-xdp only).
heimdall_paths() {
  in_appliance curl -s --max-time 3 "http://$METRICS/metrics" |
    awk '/^heimdall_responses_total\{path="[a-z]+"\} / { match($1, /"[a-z]+"/); p = substr($1, RSTART + 1, RLENGTH - 2); printf "%s\"%s\":%s", (n++ ? "," : ""), p, $2 }
         /^heimdall_hot_entries / { printf "%s\"hot_entries\":%s", (n++ ? "," : ""), $2 }
         END { printf "\n" }'
}

# RSS of a PID in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Warms a contender's cache: the 10,000 names three times (the third ask promotes into
# the hot map), then the hot set five times, then two seconds of the Zipf mix from
# kxdpgun at a rate every contender keeps up with. The last step is there because
# kxdpgun sends from one source on one queue: a server that keeps a cache per thread
# or per queue (heimdall-xdp's workers; Unbound's message cache is shared, its
# per-thread parts are not) would otherwise measure its warm-up in the first
# throughput run instead of its throughput. Every contender gets the same. The first
# pass is 10,000 misses from one client: at most 200 of them in flight, below
# heimdall-xdp's default share of the upstream for one client network (256 per engine,
# --upstream-client-share), which at 500 refused 1,000-3,000 of them with SERVFAIL, so
# that it started the rounds with less of the mix cached than the peers.
warm() { # qdir
  in_client dnsperf -s "$SERVER" -d "$1/warm.txt" -n 3 -c 4 -q 200 -t 2 >/dev/null 2>&1 || true
  in_client dnsperf -s "$SERVER" -d "$1/hot.txt" -n 5 -c 4 -q 100 -t 2 >/dev/null 2>&1 || true
  in_client timeout 30 kxdpgun -t 2 -Q 100000 -i "$1/zipf-kx.txt" "$SERVER" >/dev/null 2>&1 || true
  client_xdp_restore
}

# kxdpgun for seconds at an offered rate; prints one JSON object of what it measured.
kx() { # file seconds qps rawlog
  local file=$1 secs=$2 qps=$3 raw=$4
  in_client timeout $((${secs%.*} + 60)) kxdpgun -t "$secs" -Q "$qps" -i "$file" "$SERVER" >"$raw" 2>&1 || true
  client_xdp_restore
  awk -v qps="$qps" '
    /^total queries:/ { sent = $3; gsub(/[()]/, "", $4); sent_pps = $4 }
    /^total replies:/ { rep = $3; gsub(/[()]/, "", $4); rep_pps = $4 }
    /^responded / { sub(/:$/, "", $2); rc = rc sprintf("%s\"%s\":%s", (nrc++ ? "," : ""), $2, $3) }
    /XDP threads/ { th = $6; sub(/,$/, "", th) }
    END {
      if (sent == "") { print "{\"error\":\"kxdpgun gave no result\"}"; exit }
      printf "{\"offered\":%d,\"sent\":%d,\"sent_pps\":%d,\"replies\":%d,\"replies_pps\":%d,\"answered\":%.4f,\"threads\":%d,\"rcodes\":{%s}}\n",
        qps, sent, sent_pps, rep, rep_pps, (sent ? rep / sent : 0), th, rc
    }' "$raw"
}

# dnsperf at a fixed rate, every latency printed (-v); prints one JSON object with the
# percentiles of the queries after a warm-up, a lost query counting as slower than any
# answer. The warm-up (LAT_WARMUP_S, 0.5 s: its responses are dropped from the figures)
# exists because every dnsperf run here starts with a transient: responses ~2,000 to
# ~5,500 (40-110 ms in) take 0.5-3.7 ms whatever answers them, the XDP_TX reflector
# included, which is 2% of a 3-second run and so decides its p99.
#
# The client's own receive buffers (LAT_CLIENT_BUF_KB, dnsperf -b, 4 MiB; the kernel caps it
# at net.core.rmem_max): with the default 208 KiB a socket holds ~270 small replies, ~40 ms
# of its share of 50k q/s over 8 sockets, and dnsperf's one receiving thread, sharing the
# two CPUs with the server under test, was sometimes off them that long. Its socket then
# dropped the replies (UdpRcvbufErrors in the client namespace), and dnsperf counted them as
# queries the server lost: 15-708 a run in 6 of 11 hand trials against the userspace path,
# none in 6 with the larger buffer (docs/BENCHMARKS.md). What the client still drops is
# counted (client_dropped: the growth of its namespace's UDP receive-buffer errors over the
# whole run, warm-up included; null if they could not be read), so a lost query is told
# apart from one the server did not answer.
LAT_WARMUP_S=${LAT_WARMUP_S:-0.5}
LAT_CLIENT_BUF_KB=${LAT_CLIENT_BUF_KB:-4096}
client_rcvbuf_errors() { # the client namespace's UDP (v4 + v6) receive-buffer drops so far
  in_client cat /proc/net/snmp /proc/net/snmp6 2>/dev/null | awk '
    /^Udp: / { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") col = i; h = 1 } else n += $col }
    /^Udp6RcvbufErrors/ { n += $2 }
    END { if (col) print n + 0 }'
}
dp() { # file seconds qps rawlog
  local file=$1 secs=$2 qps=$3 raw=$4
  local skip drops0 drops1 cdrop=null
  skip=$(awk -v q="$qps" -v w="$LAT_WARMUP_S" 'BEGIN { printf "%d", q * w }')
  drops0=$(client_rcvbuf_errors)
  in_client dnsperf -s "$SERVER" -d "$file" -l "$(awk -v s="$secs" -v w="$LAT_WARMUP_S" 'BEGIN { print s + w }')" \
    -Q "$qps" -c 8 -T 1 -q 2000 -t 1 -b "$LAT_CLIENT_BUF_KB" -v >"$raw" 2>&1 || true
  drops1=$(client_rcvbuf_errors)
  [[ $drops0 =~ ^[0-9]+$ && $drops1 =~ ^[0-9]+$ ]] && cdrop=$((drops1 - drops0))
  grep -q 'Queries sent:' "$raw" || { echo '{"error":"dnsperf gave no result"}'; return; }
  awk -v skip="$skip" '/^> / && ++n > skip { if ($2 == "T") lost++; else if ($NF ~ /^[0-9.]+$/) print $NF }
                       END { print "lost", lost + 0 > "/dev/stderr" }' "$raw" 2>"$raw.lost" | sort -g |
    awk -v qps="$qps" -v raw="$raw" -v skip="$skip" -v lostfile="$raw.lost" -v cdrop="$cdrop" '
      { v[NR] = $1 }
      function pct(p,   i) { i = int(p * total + 0.999999); if (i < 1) i = 1; return (i <= NR) ? sprintf("%.6f", v[i]) : "null" }
      END {
        getline line < lostfile; split(line, a, " "); lost = a[2] + 0
        total = NR + lost
        while ((getline line < raw) > 0) {
          if (line ~ /Queries per second:/) { split(line, a, ":"); achieved = a[2] + 0 }
          if (line ~ /Queries sent:/) { split(line, a, /[: ]+/); sent = a[4] + 0 }
        }
        printf "{\"offered\":%d,\"sent\":%d,\"warmup_skipped\":%d,\"measured\":%d,\"answered\":%d,\"lost\":%d,\"client_dropped\":%s,\"achieved_qps\":%.0f,\"p50\":%s,\"p99\":%s,\"p999\":%s,\"max\":%s}\n",
          qps, sent, skip, total, NR, lost, cdrop, achieved, pct(0.5), pct(0.99), pct(0.999), (NR ? sprintf("%.6f", v[NR]) : "null")
      }'
  rm -f "$raw.lost"
}
