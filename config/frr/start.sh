#!/bin/sh
# PID 1 of the FRR container: starts FRR as its init script does (watchfrr, zebra, bgpd, then
# frr.conf applied by vtysh -b) and stops it on SIGTERM, so `docker-compose down` is quick.
set -e
# A bind-mounted config (containerlab binds) may be root's: FRR reads it as the frr user.
chown frr:frr /etc/frr/frr.conf 2>/dev/null || true
/usr/lib/frr/frrinit.sh start
trap '/usr/lib/frr/frrinit.sh stop; exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
