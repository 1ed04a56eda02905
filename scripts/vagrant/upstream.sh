#!/usr/bin/env bash
# Vagrant provisioning of the upstream VM: NSD serving the lab zone on its lab addresses.
set -euo pipefail
cd /vagrant
run=/var/lib/heimdall-lab
mkdir -p "$run"
bash scripts/lab/zone.sh 10000 >"$run/lab.example.zone"
bash scripts/lab/nsd-conf.sh "$run" 198.18.1.20 fd00:0:0:2::20 >/etc/nsd/nsd.conf
systemctl enable nsd >/dev/null 2>&1 || true
systemctl restart nsd
