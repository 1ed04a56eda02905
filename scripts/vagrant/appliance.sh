#!/usr/bin/env bash
# Vagrant provisioning of the appliance VM: heimdall-xdp on the client-facing NIC as a
# systemd service forwarding to the upstream VM.
set -euo pipefail
iface=$(ip -o -4 addr show | awk '$4 ~ /^198\.18\.0\.10\// { print $2; exit }')
[[ -n $iface ]] || { echo "appliance: no interface with 198.18.0.10" >&2; exit 1; }
cat >/etc/systemd/system/heimdall-xdp.service <<UNIT
[Unit]
Description=heimdall-xdp caching DNS forwarder on $iface
After=network-online.target
Wants=network-online.target

[Service]
WorkingDirectory=/vagrant
ExecStart=/usr/bin/node /vagrant/bin/heimdall-xdp.js attach $iface --upstream 198.18.1.20 --allow 198.18.0.0/15,fd00::/8 --metrics-listen 198.18.0.10:9153
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now heimdall-xdp
