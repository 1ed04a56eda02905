#!/usr/bin/env bash
# Writes a DNSSEC-signed zone for the lab's validation tests into DIR: secure.example
# with an A, a CNAME chain and a wildcard, signed with one ECDSA P-256 key (NSEC), and
# the trust anchor for delv (-a DIR/anchor.conf +root=secure.example).
#   signed-zone.sh DIR        -> DIR/secure.example.signed, DIR/anchor.conf
set -euo pipefail
die() { printf 'signed-zone: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 1 && -d $1 ]] || die "usage: signed-zone.sh DIR (an existing directory)"
command -v dnssec-keygen >/dev/null && command -v dnssec-signzone >/dev/null ||
  die "dnssec-keygen/dnssec-signzone missing: run 'bash scripts/setup.sh' (Debian package bind9-utils)"
cd "$1"
Z=secure.example
rm -f K$Z.+* $Z.zone $Z.signed anchor.conf dsset-$Z.
cat >$Z.zone <<ZONE
\$ORIGIN $Z.
\$TTL 300
@       3600 IN SOA ns1.$Z. hostmaster.$Z. 2026120101 3600 600 86400 60
@       3600 IN NS  ns1.$Z.
ns1          IN A   198.18.1.2
www          IN A   198.18.60.1
www          IN A   198.18.60.2
alias        IN CNAME alias2
alias2       IN CNAME www
*.wild       IN A   198.18.60.9
mail         IN MX  10 mx1.$Z.
mx1          IN A   198.18.60.25
ZONE
key=$(dnssec-keygen -q -K . -a ECDSAP256SHA256 -f KSK -n ZONE $Z)
printf '$INCLUDE %s.key\n' "$key" >>$Z.zone
# One key signs everything (-z: its KSK flag does not keep it to the DNSKEY set).
dnssec-signzone -q -K . -z -o $Z -f $Z.signed -s now-3600 -e now+2592000 $Z.zone "$key" >/dev/null
awk -v z="$Z." '$0 !~ /^;/ { for (i = 1; i <= NF; i++) if ($i == "DNSKEY") { k = ""; for (j = i + 4; j <= NF; j++) k = k $j;
  printf "trust-anchors {\n  %s static-key %s %s %s \"%s\";\n};\n", z, $(i + 1), $(i + 2), $(i + 3), k } }' "$key.key" >anchor.conf
grep -q static-key anchor.conf || die "no DNSKEY in $key.key"
