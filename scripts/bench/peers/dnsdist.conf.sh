#!/usr/bin/env bash
# dnsdist as a caching forwarder: dnsdist.conf.sh LISTEN UPSTREAM LISTENERS
# One UDP listener thread per LISTENERS on the same address with SO_REUSEPORT, 4 MiB
# socket buffers (the default 208 KiB overflows in bursts at 50k q/s here), recvmmsg /
# sendmmsg batches of 32, a packet cache larger than the benchmark's mix, no console,
# ACL on the lab's range.
set -euo pipefail
LISTEN=$1 UPSTREAM=$2 LISTENERS=$3
cat <<CONF
setACL({'198.18.0.0/15'})
setUDPSocketBufferSizes(4194304, 4194304)
setUDPMultipleMessagesVectorSize(32)
setLocal('$LISTEN:53', { reusePort = true })
CONF
for ((i = 1; i < LISTENERS; i++)); do echo "addLocal('$LISTEN:53', { reusePort = true })"; done
cat <<CONF
newServer({ address = '$UPSTREAM:53', checkName = 'www.lab.example.', checkInterval = 5 })
pc = newPacketCache(200000, { maxTTL = 86400, minTTL = 0, temporaryFailureTTL = 60, staleTTL = 60 })
getPool(''):setCache(pc)
setSecurityPollSuffix('')
CONF
