#!/usr/bin/env bash
# Takes a fresh Debian 12 machine to a built heimdall-xdp: system packages (idempotent),
# npm dependencies, then the BPF object, the addon and the TypeScript.
#   bash scripts/setup.sh            everything the tests and the lab demo need
#   bash scripts/setup.sh --bench    also the peers the benchmark compares against
set -euo pipefail

die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
say() { printf 'setup: %s\n' "$*"; }

cd "$(dirname "$0")/.."

BENCH=0
for a in "$@"; do
  case "$a" in
    --bench) BENCH=1 ;;
    *) die "unknown option '$a' (use --bench or nothing)" ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and the tests load BPF): sudo bash scripts/setup.sh"
[[ -d /sys/fs/bpf ]] || die "this kernel exposes no BPF filesystem (/sys/fs/bpf): it needs CONFIG_BPF_SYSCALL and XDP support"
command -v node >/dev/null || die "node is missing: install Node.js 20 or newer first"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || die "Node.js 20 or newer is required (found $(node --version))"

# What the build, the tests and the lab use: compiler and BPF toolchain, the libraries
# the addon links, iproute2 for namespaces, DNS clients and load tools, and NSD for the
# lab's upstream; bind9-utils signs the lab's DNSSEC zone (dnssec-keygen, dnssec-signzone);
# xdp-tools has xdp-loader, which loads the lab's stand-in firewall through libxdp; Unbound is
# the reference the differential test compares every answer with (test/lab/differential.test.ts);
# python3 runs the differential test's client and the bench's line split (bpf-lines.py).
PKGS=(clang llvm make g++ pkg-config python3 libbpf-dev libxdp-dev xdp-tools bpftool iproute2 iputils-ping
      ethtool tcpdump curl nftables bind9-dnsutils bind9-utils knot-dnsutils dnsperf nsd unbound vagrant)
if ((BENCH)); then
  # linux-perf: the scheduling delays of npm run bench:tails (perf sched).
  PKGS+=(dnsdist knot-resolver linux-perf)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: check the package mirror"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
else
  say "system packages present"
fi

# Debian starts the servers it installs; the lab and the benchmark start their own
# copies inside namespaces, so the system units are stopped and kept off.
for unit in nsd unbound dnsdist kresd@1; do
  if systemctl list-unit-files "${unit}.service" >/dev/null 2>&1; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || die "cannot mount the BPF filesystem on /sys/fs/bpf"

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund >/dev/null || die "npm ci failed"
fi

say "building (BPF object, addon, TypeScript)"
npm run --silent build >/dev/null || { npm run build; die "build failed"; }
say "ready"
