#!/usr/bin/env bash
# The docker target on a host that has nothing but Docker and restorecheck.
#
# For every source kind (basebackup tar/plain, pg_dump custom/plain, pg_dumpall, pgbackrest,
# barman, walg through the tests' stand-in, wale with file:// storage, command) x PostgreSQL
# 13/15/17, good and damaged (missing WAL, flipped bits, truncated): the backups are made by
# each major's own tools inside restorecheck/tools:N, then `restorecheck run` restores each one
# with `[check.target] kind = "docker"` inside a mount namespace in which this host's
# PostgreSQL and backup tools are hidden (restorecheck-cli/tests/docker-isolated/
# without-host-tools.sh), and the verdict is compared with the expected one and, on
# PostgreSQL 15 (the only one installed here), with the same check through `kind = "local"`
# run outside the namespace. Prints one line per cell and a summary; exit 0 when all match.
#
# Usage (root): scripts/test-docker-isolated.sh [harness options]
#   --majors 13,15,17   --only CELL,...   --jobs N (default 2)   --fixtures DIR (reuse)   --keep
# Environment: RESTORECHECK=/path/to/restorecheck (default: cargo build -p restorecheck-cli,
# target/debug/restorecheck).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test-docker-isolated: must run as root (unshare -m)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "test-docker-isolated: no Docker engine reachable" >&2; exit 2; }
command -v unshare >/dev/null || { echo "test-docker-isolated: unshare (util-linux) missing" >&2; exit 2; }
t0=$SECONDS
# restorecheck/postgres:N, then restorecheck/tools:N (pgBackRest, Barman, WAL-E); cached by tag.
docker/build-tool-images.sh --kinds tools 13 15 17
if [ -z "${RESTORECHECK:-}" ]; then
  cargo build -q -p restorecheck-cli
  dir=${CARGO_TARGET_DIR:-target}
  case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
  RESTORECHECK=$dir/debug/restorecheck
fi
[ -x "$RESTORECHECK" ] || { echo "test-docker-isolated: $RESTORECHECK is not executable" >&2; exit 2; }
rc=0
python3 restorecheck-cli/tests/docker-isolated/harness.py --restorecheck "$RESTORECHECK" "$@" || rc=$?
echo "test-docker-isolated: $((SECONDS - t0)) s in all (images and build included), exit $rc"
exit "$rc"
