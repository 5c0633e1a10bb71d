#!/usr/bin/env bash
# Set-up shared by the demo and the test commands: Debian packages (when missing) and npm ci.
# Safe to run again: it installs only what is missing and rebuilds dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
# podman runc debootstrap docker-compose uidmap containernetworking-plugins: the container tests
# (test/containers: images, docker-compose against podman's API, podman as a CNI runtime);
# containernetworking-plugins also for the CNI tests and bench/cni_latency.ts; bgpdump reads the
# MRT dumps in test/bgp/mrt.test.ts and test/node/node_status.netns.test.ts; iperf3 for
# bench/overlay.ts; pmacct's pmbmpd is the BMP station of test/bgp/bmp.bird.test.ts; the sqlite3
# shell holds the embedded store's write lock in test/reliability/sqlite_locked.test.ts;
# wireguard-go (userspace WireGuard, over TUN: this kernel has no wireguard module) and
# wireguard-tools' wg for test/node/wireguard.netns.test.ts.
PKGS=(iproute2 iputils-ping iptables ipset procps etcd-server etcd-client bird2 frr gobgpd exabgp tshark openssl iperf3
  podman runc debootstrap docker-compose uidmap containernetworking-plugins util-linux bgpdump pmacct radvd sqlite3
  wireguard-go wireguard-tools)
BINS=(ip bridge ping iptables ipset sysctl etcd etcdctl bird vtysh bfdd gobgpd exabgp tshark openssl iperf3
  podman runc debootstrap docker-compose newuidmap nsenter bgpdump pmbmpd radvd sqlite3 setpriv ss
  wireguard-go wg)
missing=0
for b in "${BINS[@]}"; do command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || [ -x "/usr/lib/frr/$b" ] || missing=1; done
[ -x /usr/lib/frr/bgpd ] || missing=1
[ -x /usr/lib/cni/portmap ] || missing=1
[ -x /usr/lib/cni/host-local ] || missing=1
if [ "$missing" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${PKGS[*]}"
    echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections 2>/dev/null || true
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/dev/null
  else
    echo "setup: not root: cannot install Debian packages (${PKGS[*]}); tests that need them will be skipped" >&2
  fi
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm run -s build
fi
