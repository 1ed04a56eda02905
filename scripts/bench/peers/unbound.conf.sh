#!/usr/bin/env bash
# Unbound as a caching forwarder: unbound.conf.sh RUNDIR LISTEN UPSTREAM THREADS [PORT]
# (PORT 53 unless given: test/lab/differential.test.ts runs it beside heimdall-xdp.)
# No DNSSEC validation (the lab zone is unsigned and the other contenders do not
# validate either), SO_REUSEPORT with one socket per thread, caches far larger than the
# benchmark's 10,000-name mix, buffers sized for bursts.
set -euo pipefail
RUNDIR=$1 LISTEN=$2 UPSTREAM=$3 THREADS=$4 PORT=${5:-53}
cat <<CONF
server:
  verbosity: 0
  use-syslog: no
  logfile: ""
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$RUNDIR"
  pidfile: "$RUNDIR/unbound.pid"
  interface: $LISTEN
  port: $PORT
  do-ip6: no
  do-tcp: yes
  access-control: 198.18.0.0/15 allow
  num-threads: $THREADS
  so-reuseport: yes
  so-rcvbuf: 4m
  so-sndbuf: 4m
  msg-cache-slabs: 2
  rrset-cache-slabs: 2
  infra-cache-slabs: 2
  key-cache-slabs: 2
  msg-cache-size: 64m
  rrset-cache-size: 128m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  module-config: "iterator"
  qname-minimisation: no
  harden-referral-path: no
  minimal-responses: yes
  do-not-query-localhost: no
  statistics-interval: 0
  extended-statistics: no
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: $UPSTREAM
CONF
