#!/usr/bin/env bash
# The main job: set-up on a fresh Debian 12 machine (as root), then the demo cluster.
# Extra arguments go to `ocelot demo` (e.g. --nodes 4 --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bin/ocelot demo "$@"
