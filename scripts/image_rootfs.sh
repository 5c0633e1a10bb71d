#!/bin/sh
# Makes the image's root file system in DIR from the Debian system it runs in (the Dockerfile's
# rootfs stage, with iproute2, iptables, ipset, procps, iputils-ping, wireguard-tools and
# wireguard-go installed), distroless-style:
# only the programs below, each with every shared library the loader resolves for it (ldd) and
# the links that lead to it (Debian's alternatives: iptables -> iptables-nft, ...), iptables'
# extensions, a few files of /etc and the merged-/usr top-level links. No package manager, no
# perl, no documentation. Usage: image_rootfs.sh DIR
set -eu
out=${1:?usage: image_rootfs.sh DIR}
mkdir -p "$out"

# What Ocelot runs (the agent, the CNI plugin, `ocelot demo`), what its scripts run
# (config/compose/apply.sh) and what the container tests run inside the image.
PROGRAMS="sh dash env ls cat dirname basename timeout sleep stat mkdir rm cp mv ln chmod echo
  true false id uname head tail tr wc sort readlink date printf sed grep mount umount unshare
  ip bridge tc ipset sysctl nsenter ping wg wireguard-go"

# A path with every link on the way to the file it names, each as it is (links stay links).
copy() {
  p=$1
  while :; do
    if [ ! -e "$out$p" ] && [ ! -L "$out$p" ]; then
      mkdir -p -m 755 "$out$(dirname "$p")"
      cp -a "$p" "$out$p"
    fi
    [ -L "$p" ] || break
    t=$(readlink "$p")
    case $t in /*) p=$t ;; *) p=$(dirname "$p")/$t ;; esac
  done
}

# The merged-/usr links first (/bin -> usr/bin, ...), so that paths through them land in /usr.
for d in /usr /usr/bin /usr/sbin /usr/lib /usr/lib64 /usr/local; do mkdir -p -m 755 "$out$d"; done
for l in /bin /sbin /lib /lib64; do if [ -L "$l" ]; then cp -a "$l" "$out/"; fi; done

elves=""
for prog in $PROGRAMS; do
  path=""
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin; do
    if [ -f "$d/$prog" ] && [ -x "$d/$prog" ]; then path=$d/$prog && break; fi
  done
  [ -n "$path" ] || { echo "image_rootfs.sh: $prog not found" >&2; exit 1; }
  copy "$path"
  elves="$elves $(readlink -f "$path")"
done
# iptables and ip6tables in both flavours, with their save/restore and Debian's alternatives.
for path in /usr/sbin/*tables* /usr/sbin/xtables*; do
  copy "$path"
  elves="$elves $(readlink -f "$path")"
done
xt=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/libxtables.so.12 2>/dev/null || ls -d /usr/lib/*/libxtables.so.* | head -1)")/xtables
mkdir -p -m 755 "$out$(dirname "$xt")"
cp -a "$xt" "$out$xt"
elves="$elves $xt/*.so /usr/local/bin/node $(find /opt/ocelot -name '*.node' | tr '\n' ' ')"

# The shared libraries of all of these, as the loader resolves them (each link on the way too).
for f in $elves; do
  ldd "$f" 2>/dev/null | sed -n 's/^.*=> \(\/[^ ]*\) (0x.*$/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*$/\1/p'
done | sort -u | while read -r lib; do copy "$lib"; done

# /etc: users, name service, protocol and service names (iptables' -p and --dport), iproute2's
# tables, the OS release; /var/run -> /run; the directories Ocelot writes.
for f in /etc/passwd /etc/group /etc/nsswitch.conf /etc/protocols /etc/services /etc/ethertypes \
  /etc/iproute2 /etc/os-release /usr/lib/os-release; do
  if [ -e "$f" ] || [ -L "$f" ]; then copy "$f"; fi
done
mkdir -p -m 755 "$out/usr/local/bin"
cp -a /usr/local/bin/node /usr/local/bin/ocelot /usr/local/bin/ocelot-cni /usr/local/bin/ocelot-ipam \
  "$out/usr/local/bin/"
mkdir -p -m 755 "$out/opt"
cp -a /opt/ocelot "$out/opt/"
mkdir -p "$out/tmp" "$out/root" "$out/run" "$out/var/lib/ocelot" "$out/var/log" \
  "$out/run/ocelot" "$out/etc/ocelot" "$out/proc" "$out/sys" "$out/dev"
ln -s ../run "$out/var/run"
chmod 1777 "$out/tmp"
chmod 700 "$out/root"
