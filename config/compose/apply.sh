#!/bin/sh
# Applies cluster.yaml (beside this script) with the ToR's address for @TOR_IP@, retrying while
# the datastore starts: 60 tries, each bounded to 20 s. Usage: apply.sh TOR_IP. The datastore is
# $OCELOT_DATASTORE. Run once by docker-compose.yml's ocelot-init and by the containerlab topology.
set -u
tor=${1:?usage: apply.sh TOR_IP}
here=$(dirname "$0")
i=0
while [ "$i" -lt 60 ]; do
  if sed "s/@TOR_IP@/$tor/" "$here/cluster.yaml" | timeout 20 ocelot apply -f -; then exit 0; fi
  i=$((i + 1))
  sleep 1
done
echo "apply.sh: the datastore did not take cluster.yaml in 60 tries" >&2
exit 1
