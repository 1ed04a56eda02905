#!/usr/bin/env bash
# Writes the lab's zone (lab.example) to stdout: names the tests and the benchmark ask
# for, a CNAME chain, a TXT set too large for 512 bytes, NODATA and NXDOMAIN material,
# and h0..h(N-1) for the benchmark's query mixes.
#   zone.sh [N]     (default N = 10000)
set -euo pipefail
N=${1:-10000}
cat <<ZONE
\$ORIGIN lab.example.
\$TTL 300
@       3600 IN SOA ns1.lab.example. hostmaster.lab.example. 2026112901 3600 600 86400 60
@       3600 IN NS  ns1.lab.example.
ns1          IN A    198.18.1.2
ns1          IN AAAA fd00:0:0:2::2
www          IN A    198.18.50.1
www          IN A    198.18.50.2
www          IN AAAA fd00:50::1
short   5    IN A    198.18.50.5
ten     10   IN A    198.18.50.10
alias        IN CNAME alias2
alias2       IN CNAME www
mail         IN MX   10 mx1.lab.example.
mx1          IN A    198.18.50.25
v4only       IN A    198.18.50.4
ZONE
for i in $(seq 1 40); do
  printf 'big          IN TXT "record %02d of a set that does not fit in a 512-byte UDP answer"\n' "$i"
done
for ((i = 0; i < N; i++)); do
  printf 'h%d IN A 198.18.%d.%d\n' "$i" $((100 + i / 250)) $((1 + i % 250))
done
