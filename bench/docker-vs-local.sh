#!/usr/bin/env bash
# docker-vs-local.sh — what the `docker` target adds over `local`, measured side by side.
#
# Usage (as root, after `cargo build --release -p restorecheck-cli` and docker/build-images.sh 15):
#   bench/docker-vs-local.sh [SCALE [ROUNDS]]     (defaults: SCALE=10, ROUNDS=5)
# Makes a pgbench backup (tar.gz, WAL streamed) with this machine's PostgreSQL 15, then runs
# `restorecheck run` on it alternately with target local and target docker
# (image restorecheck/postgres:15), and prints the medians, the difference and the ratio.
set -euo pipefail
SCALE=${1:-${SCALE:-10}}
ROUNDS=${2:-${ROUNDS:-5}}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RC=${RESTORECHECK:-$REPO/target/release/restorecheck}
T=$(mktemp -d /var/tmp/docker-vs-local.XXXXXX)
chmod 755 "$T"
cleanup() {
    [ -f "$T/src/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/src" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
as_pg() { runuser -u postgres -- "$@"; }
mkdir -p "$T/sock" "$T/backups" "$T/work" "$T/src"; chown postgres: "$T/sock" "$T/backups" "$T/src"; chmod 700 "$T/src"
as_pg "$PGBIN/initdb" -D "$T/src" -U postgres --auth=trust --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$T/src" -w -l "$T/sock/src.log" -o "-c listen_addresses='' -c unix_socket_directories=$T/sock -c fsync=off" start >/dev/null
as_pg "$PGBIN/pgbench" -h "$T/sock" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1
as_pg "$PGBIN/pg_basebackup" -h "$T/sock" -U postgres -D "$T/backups/b1" -Ft -z -Xstream -c fast
as_pg "$PGBIN/pg_ctl" -D "$T/src" -m fast -w stop >/dev/null
for kind in local docker; do
    extra=""; [ "$kind" = docker ] && extra='image = "restorecheck/postgres:{major}"'
    cat > "$T/$kind.toml" <<EOC
work_dir = "$T/work"
[[check]]
name = "$kind"
[check.source]
kind = "basebackup"
path = "$T/backups"
[check.target]
kind = "$kind"
$extra
[[check.assert]]
sql = "select count(*) from pgbench_accounts"
equals = $((SCALE * 100000))
EOC
done
declare -A times
for ((i = 0; i <= ROUNDS; i++)); do
    for kind in local docker; do
        t0=$EPOCHREALTIME
        "$RC" -q run -c "$T/$kind.toml" >/dev/null || { echo "restorecheck ($kind) did not pass" >&2; exit 1; }
        t1=$EPOCHREALTIME
        [ "$i" -eq 0 ] && continue   # warm-up
        times[$kind]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') "
    done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END{ if (NR%2) printf "%.3f", a[(NR+1)/2]; else printf "%.3f", (a[NR/2]+a[NR/2+1])/2 }'; }
L=$(median "${times[local]}"); D=$(median "${times[docker]}")
echo "pgbench scale $SCALE, backup $(du -sh "$T/backups/b1" | cut -f1), $ROUNDS rounds after a warm-up"
echo "local : ${times[local]}(median $L s)"
echo "docker: ${times[docker]}(median $D s)"
awk -v l="$L" -v d="$D" 'BEGIN{printf "docker adds %.2f s per restore (ratio docker/local %.2f)\n", d-l, d/l}'
