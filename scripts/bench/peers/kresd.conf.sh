#!/usr/bin/env bash
# Knot Resolver as a caching forwarder: kresd.conf.sh RUNDIR LISTEN UPSTREAM
# Every kresd process (one per core, the documented way to scale it) loads the same
# file; they share the listening address through SO_REUSEPORT and one LMDB cache.
# STUB forwarding: no DNSSEC validation, like the other contenders.
set -euo pipefail
RUNDIR=$1 LISTEN=$2 UPSTREAM=$3
cat <<CONF
net.listen('$LISTEN', 53, { kind = 'dns' })
net.ipv6 = false
trust_anchors.remove('.')
modules.unload('ta_update')
modules.unload('ta_signal_query')
modules.unload('priming')
modules.unload('detect_time_skew')
cache.open(256 * MB, 'lmdb://$RUNDIR/cache')
policy.add(policy.all(policy.STUB({ '$UPSTREAM' })))
log_level('warning')
CONF
