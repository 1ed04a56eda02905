#!/usr/bin/env bash
# Writes an NSD configuration for the lab upstream: the generated lab.example zone,
# served on the given addresses, everything under one run directory.
#   nsd-conf.sh RUN_DIR ADDR...
set -euo pipefail
run=$1
shift
printf 'server:\n'
for a in "$@"; do printf '  ip-address: %s\n' "$a"; done
cat <<CONF
  port: 53
  username: ""
  chroot: ""
  zonesdir: "$run"
  pidfile: "$run/nsd.pid"
  database: ""
  xfrdfile: "$run/xfrd.state"
  zonelistfile: "$run/zone.list"
  logfile: "$run/nsd.log"
  server-count: 1
  hide-version: yes
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: lab.example
  zonefile: lab.example.zone
CONF
