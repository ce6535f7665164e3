#!/usr/bin/env bash
# docker-vs-local.sh — what the `docker` target adds over `local`, per source kind, side by side.
#
# Usage (as root):  bench/docker-vs-local.sh [ROUNDS]        (default ROUNDS=5)
#   RESTORECHECK=/path/to/restorecheck   (default: target/release/restorecheck, else target/debug)
#   KINDS="basebackup-tar wale ..."      (default: every kind below)
#
# Makes the PostgreSQL 15 backups of scripts/test-docker-isolated.sh (one small cluster, backed
# up by PostgreSQL 15's own tools inside restorecheck/tools:15: pg_basebackup tar and plain,
# pg_dump custom and plain, pg_dumpall, pgBackRest, Barman, WAL-E file://, the WAL-G stand-in, a
# `command` source), then for each kind runs `restorecheck run` on its good backup alternately
# with target local and target docker (image restorecheck/tools:{major}): one warm-up round, then
# ROUNDS timed rounds. Prints one row per kind: the medians, docker's extra seconds per restore
# over local (goal: at most 1 s), and the ratio. A kind whose run does not pass is shown with
# its verdict instead of times. Wall time of the whole `restorecheck run` process is measured.
set -euo pipefail
ROUNDS=${1:-${ROUNDS:-5}}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${RESTORECHECK:-}" ]; then
    RESTORECHECK=$REPO/target/release/restorecheck
    [ -x "$RESTORECHECK" ] || RESTORECHECK=$REPO/target/debug/restorecheck
fi
[ -x "$RESTORECHECK" ] || { echo "build restorecheck first: cargo build --release -p restorecheck-cli" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "docker-vs-local: run as root" >&2; exit 2; }
"$REPO/docker/build-tool-images.sh" --kinds tools 15 >/dev/null
T=$(mktemp -d /var/tmp/docker-vs-local.XXXXXX)
chmod 755 "$T"
trap 'rm -rf "$T"' EXIT
export RESTORECHECK ROUNDS T KINDS="${KINDS:-}"
# Not exec: the EXIT trap removes $T afterwards.
PYTHONDONTWRITEBYTECODE=1 python3 - "$REPO/restorecheck-cli/tests/docker-isolated" <<'PY'
import os, statistics, sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import harness  # noqa: E402  (the isolated test's fixtures and configurations)

rc = Path(os.environ["RESTORECHECK"])
rounds = int(os.environ["ROUNDS"])
root = Path(os.environ["T"])
kinds = ["basebackup-tar", "basebackup-plain", "pg_dump-custom", "pg_dump-plain", "pg_dumpall",
         "pgbackrest", "barman", "walg", "wale", "command"]
if os.environ["KINDS"]:
    kinds = os.environ["KINDS"].split()
cells = {c.name: c for c in harness.CELLS}
d = harness.make_fixtures(root, 15)
print(f"restorecheck {rc}; PostgreSQL 15 fixtures (100 rows at backup time, 150 after the archived WAL); "
      f"{rounds} rounds after a warm-up, local and docker alternating", flush=True)
print(f"\n{'kind':<18} {'local median':>12} {'docker median':>13} {'docker extra':>12} {'ratio':>6}  goal <= 1 s")
n = 0
for kind in kinds:
    cell = cells[kind + "-good"]
    cfg = {t: root / f"{kind}.{t}.toml" for t in ("local", "docker")}
    for t, p in cfg.items():
        p.write_text(harness.config(cell, d, t))
    times = {"local": [], "docker": []}
    broken = {}
    for i in range(rounds + 1):
        if broken:
            break
        for t in ("local", "docker"):
            n += 1
            r = harness.run_one(rc, cfg[t], root / "w" / str(n), isolated=False)
            if r.verdict != "pass":
                broken[t] = f"{t} {r.verdict}: {r.message[:120]}"
            elif i > 0:
                times[t].append(r.seconds)
    if broken:
        print(f"{kind:<18} {'-':>12} {'-':>13} {'-':>12} {'-':>6}  not measured: {'; '.join(broken.values())}", flush=True)
        continue
    lm, dm = statistics.median(times["local"]), statistics.median(times["docker"])
    extra = dm - lm
    print(f"{kind:<18} {lm:>11.2f}s {dm:>12.2f}s {extra:>+11.2f}s {dm / lm:>6.2f}  "
          f"{'ok' if extra <= 1.0 else 'OVER'}   local {' '.join(f'{x:.2f}' for x in times['local'])} | "
          f"docker {' '.join(f'{x:.2f}' for x in times['docker'])}", flush=True)
PY
