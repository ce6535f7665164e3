#!/usr/bin/env bash
# restore-vs-shell.sh — benchmark `restorecheck run` against a hand-rolled shell restore test.
#
# Usage (as root, from anywhere; needs PostgreSQL 15 binaries and a release build):
#   cargo build --release -p restorecheck-cli
#   bench/restore-vs-shell.sh [SCALE [ROUNDS]]
#   SCALE=50 ROUNDS=3 KEEP=1 bench/restore-vs-shell.sh
#
# Env / args:
#   SCALE   pgbench scale factor of the source cluster (default 50, ~750 MB of data)   [arg 1]
#   ROUNDS  timed rounds per contender, alternating order each round (default 3)       [arg 2]
#   KEEP=1  keep the temp folder (backups, configs, logs, JSON reports) after the run
#   SHELL_FAST=1  give the shell pipeline restorecheck's throwaway settings too (fsync=off,
#           synchronous_commit=off, full_page_writes=off, autovacuum=off); default 0 = stock settings
#   PGBIN   PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
#   RESTORECHECK  binary to test (default <repo>/target/release/restorecheck)
#
# What it does:
#   1. initdb + start a source cluster under /var/tmp (private socket dir, no TCP),
#      pgbench -i -s SCALE, pg_basebackup -Ft -z -Xstream into BACKUPS/<name>/, stop it.
#   2. One untimed warm-up of each contender, then ROUNDS timed rounds of:
#      a) /usr/bin/time -v restorecheck run -c cfg.toml --format json  (must exit 0, verdict pass)
#      b) the shell pipeline: mkdir, untar base + pg_wal, settings, chown, pg_ctl start,
#         poll pg_is_in_recovery() until 'f', count(*) pgbench_accounts, pg_ctl stop, rm -rf.
#   3. Prints per-round wall times, medians, ratio, restorecheck peak RSS, last-round phase timings.
#   4. An EXIT trap stops every postgres started under the temp folder and removes it (unless KEEP=1).
set -euo pipefail

SCALE=${1:-${SCALE:-50}}
ROUNDS=${2:-${ROUNDS:-3}}
KEEP=${KEEP:-0}
SHELL_FAST=${SHELL_FAST:-0}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"
RESTORECHECK=${RESTORECHECK:-$REPO/target/release/restorecheck}
PGUSER_OS=postgres
SRC_PORT=5440
SHELL_PORT=5441

die() { echo "FATAL: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (server programs are run via runuser -u $PGUSER_OS)"
[[ $SCALE =~ ^[0-9]+$ && $SCALE -ge 1 ]] || die "SCALE must be a positive integer"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be a positive integer"
[[ -x $RESTORECHECK ]] || die "$RESTORECHECK missing: cargo build --release -p restorecheck-cli"
for b in initdb pg_ctl pg_basebackup pgbench psql createdb; do
    [[ -x $PGBIN/$b ]] || die "$PGBIN/$b missing"
done
id "$PGUSER_OS" >/dev/null 2>&1 || die "OS user $PGUSER_OS missing"
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    apt-get install -y -qq time >/dev/null || die "could not install the time package"
fi
if ! command -v jq >/dev/null; then
    log "installing jq"
    apt-get install -y -qq jq >/dev/null || die "could not install jq"
fi

as_pg() { runuser -u "$PGUSER_OS" -- "$@"; }

T=$(mktemp -d /var/tmp/restore-vs-shell.XXXXXX)
chmod 0755 "$T"
cd "$T"   # a cwd the postgres user can read

cleanup() {
    local rc=$? pidfile dir pid
    set +e
    trap - EXIT INT TERM
    # Stop every postmaster whose data dir lives under $T (source, shell, or one restorecheck left).
    while IFS= read -r pidfile; do
        dir=$(dirname "$pidfile")
        pid=$(head -n1 "$pidfile" 2>/dev/null)
        log "cleanup: stopping postgres in $dir (pid ${pid:-?})"
        as_pg "$PGBIN/pg_ctl" -D "$dir" -m immediate -w -t 30 stop >/dev/null 2>&1
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill -QUIT "$pid" 2>/dev/null; sleep 1; kill -KILL "$pid" 2>/dev/null
        fi
    done < <(find "$T" -name postmaster.pid -type f 2>/dev/null)
    if [[ $KEEP == 1 ]]; then
        log "KEEP=1: files kept in $T"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SOCK=$T/sock
BACKUPS=$T/backups
RCWORK=$T/rcwork
SHELLWORK=$T/shell
mkdir -p "$SOCK" "$BACKUPS" "$RCWORK" "$SHELLWORK" "$T/reports"
mkdir -m 0700 "$T/src"; mkdir "$T/logs"
chown "$PGUSER_OS" "$SOCK" "$BACKUPS" "$SHELLWORK" "$T/src" "$T/logs"
chmod 0755 "$RCWORK"

# ---------------------------------------------------------------- 1. source cluster + backup
log "source cluster: initdb + pgbench -i -s $SCALE (in $T)"
as_pg "$PGBIN/initdb" -D "$T/src" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$T/initdb.log" 2>&1 \
    || { cat "$T/initdb.log" >&2; die "initdb failed"; }
as_pg "$PGBIN/pg_ctl" -D "$T/src" -l "$T/logs/src.log" -w -t 120 \
    -o "-c listen_addresses='' -k $SOCK -p $SRC_PORT -c archive_mode=off -c max_wal_size=4GB" start >/dev/null \
    || { cat "$T/logs/src.log" >&2; die "source cluster did not start"; }
as_pg "$PGBIN/createdb" -h "$SOCK" -p "$SRC_PORT" -U postgres bench
as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$SRC_PORT" -U postgres -i -q -s "$SCALE" bench >"$T/pgbench.log" 2>&1 \
    || { cat "$T/pgbench.log" >&2; die "pgbench -i failed"; }
EXPECTED_ROWS=$((SCALE * 100000))

BNAME=base-$(date -u +%Y%m%dT%H%M%SZ)
BDIR=$BACKUPS/$BNAME
log "pg_basebackup -Ft -z -Xstream -> $BDIR"
as_pg "$PGBIN/pg_basebackup" -h "$SOCK" -p "$SRC_PORT" -U postgres -D "$BDIR" -Ft -z -Xstream -c fast \
    || die "pg_basebackup failed"
as_pg "$PGBIN/pg_ctl" -D "$T/src" -m fast -w stop >/dev/null
[[ -f $BDIR/base.tar.gz && -f $BDIR/pg_wal.tar.gz ]] || die "backup files missing in $BDIR"
BACKUP_SIZE=$(du -sh "$BDIR" | cut -f1)
BACKUP_BYTES=$(du -sb "$BDIR" | cut -f1)

# ---------------------------------------------------------------- 2a. restorecheck contender
CFG=$T/cfg.toml
bench_config "$RCWORK" "$BACKUPS" "$SCALE" >"$CFG"

# run_restorecheck TAG -> sets RC_WALL, RC_RSS_KB; report in $T/reports/TAG.json
run_restorecheck() {
    local tag=$1 json=$T/reports/$1.json tv=$T/reports/$1.time err=$T/reports/$1.stderr t0 t1 rc=0 verdict
    t0=$EPOCHREALTIME
    /usr/bin/time -v -o "$tv" "$RESTORECHECK" -v run -c "$CFG" --format json >"$json" 2>"$err" || rc=$?
    t1=$EPOCHREALTIME
    verdict=$(jq -r '.verdict' "$json" 2>/dev/null || echo "?")
    if [[ $rc -ne 0 || $verdict != pass ]]; then
        echo "---- restorecheck stdout ($json)" >&2; cat "$json" >&2
        echo "---- restorecheck stderr" >&2; tail -n 50 "$err" >&2
        echo "---- /usr/bin/time" >&2; cat "$tv" >&2
        die "restorecheck run ($tag) exited $rc with verdict '$verdict' — it must PASS"
    fi
    RC_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    # restorecheck's own peak (getrusage RUSAGE_SELF, logged with -v). /usr/bin/time's figure
    # also counts the PostgreSQL server it spawned and waited for (shared_buffers it touched).
    RC_RSS_KB=$(sed -n 's/.*peak RSS of restorecheck itself: \([0-9.]*\) MB.*/\1/p' "$err" | awk '{printf "%d", $1*1024}')
    [[ -n $RC_RSS_KB ]] || die "no 'peak RSS' line in $err"
    RC_TREE_KB=$(awk -F': ' '/Maximum resident set size/{print $2}' "$tv")
}

# ---------------------------------------------------------------- 2b. shell contender
# The expert's pipeline, timed as a whole. Sets SH_WALL.
shell_pipeline() {
    local tag=$1 d=$SHELLWORK/data t0 t1 state count tries=0
    t0=$EPOCHREALTIME
    mkdir -m 0700 "$d"
    chown "$PGUSER_OS" "$d"
    tar -xzf "$BDIR/base.tar.gz" -C "$d"
    tar -xzf "$BDIR/pg_wal.tar.gz" -C "$d/pg_wal"
    cat >>"$d/postgresql.auto.conf" <<EOF
port = $SHELL_PORT
unix_socket_directories = '$SOCK'
listen_addresses = ''
archive_mode = off
EOF
    if [[ $SHELL_FAST == 1 ]]; then
        printf '%s\n' 'fsync = off' 'synchronous_commit = off' 'full_page_writes = off' 'autovacuum = off' \
            >>"$d/postgresql.auto.conf"
    fi
    chown -R "$PGUSER_OS" "$d"
    as_pg "$PGBIN/pg_ctl" -D "$d" -l "$SHELLWORK/$tag.log" -w -t 600 start >/dev/null \
        || { tail -n 30 "$SHELLWORK/$tag.log" >&2; die "shell: pg_ctl start failed ($tag)"; }
    until state=$(as_pg "$PGBIN/psql" -h "$SOCK" -p "$SHELL_PORT" -U postgres -d bench -tAc 'select pg_is_in_recovery()' 2>/dev/null) \
          && [[ $state == f ]]; do
        (( ++tries < 6000 )) || die "shell: recovery did not finish ($tag)"
        sleep 0.1
    done
    count=$(as_pg "$PGBIN/psql" -h "$SOCK" -p "$SHELL_PORT" -U postgres -d bench -tAc 'select count(*) from pgbench_accounts')
    as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null
    rm -rf "$d"
    t1=$EPOCHREALTIME
    [[ $count == "$EXPECTED_ROWS" ]] || die "shell: count(*) = '$count', expected $EXPECTED_ROWS ($tag)"
    SH_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
}

log "warm-up (untimed): restorecheck"
run_restorecheck warmup
log "warm-up (untimed): shell"
shell_pipeline warmup
log "warm-up done: restorecheck ${RC_WALL}s, shell ${SH_WALL}s"

declare -a RC_T SH_T RC_R RC_TREE
for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2 == 1)); then order="restorecheck shell"; else order="shell restorecheck"; fi
    for who in $order; do
        if [[ $who == restorecheck ]]; then
            run_restorecheck "round$i"
            RC_T[i]=$RC_WALL; RC_R[i]=$RC_RSS_KB; RC_TREE[i]=$RC_TREE_KB
            log "round $i restorecheck ${RC_WALL}s rss ${RC_RSS_KB} kB"
        else
            shell_pipeline "round$i"
            SH_T[i]=$SH_WALL
            log "round $i shell        ${SH_WALL}s"
        fi
    done
done

# ---------------------------------------------------------------- 3. report
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) printf "%.3f", a[(NR+1)/2]; else printf "%.3f", (a[NR/2]+a[NR/2+1])/2 }'; }
RC_MED=$(median "${RC_T[@]}")
SH_MED=$(median "${SH_T[@]}")
RATIO=$(awk -v a="$RC_MED" -v b="$SH_MED" 'BEGIN{printf "%.2f", a/b}')
RSS_MAX_KB=$(printf '%s\n' "${RC_R[@]}" | sort -n | tail -n1)
RSS_MB=$(awk -v k="$RSS_MAX_KB" 'BEGIN{printf "%.1f", k/1024}')
LAST=$T/reports/round$ROUNDS.json

echo
echo "== restorecheck vs shell: pgbench scale $SCALE ($EXPECTED_ROWS accounts), $ROUNDS rounds, $(nproc) cores, SHELL_FAST=$SHELL_FAST"
echo "   backup $BNAME: $BACKUP_SIZE ($BACKUP_BYTES bytes; base.tar.gz $(du -h "$BDIR/base.tar.gz" | cut -f1), pg_wal.tar.gz $(du -h "$BDIR/pg_wal.tar.gz" | cut -f1))"
printf '%-8s %14s %10s %14s\n' round "restorecheck_s" "shell_s" "rc_rss_MB"
for ((i = 1; i <= ROUNDS; i++)); do
    printf '%-8s %14s %10s %14s\n' "$i" "${RC_T[i]}" "${SH_T[i]}" "$(awk -v k="${RC_R[i]}" 'BEGIN{printf "%.1f", k/1024}')"
done
printf '%-8s %14s %10s\n' median "$RC_MED" "$SH_MED"
echo "ratio restorecheck/shell (median): $RATIO"
echo "restorecheck peak RSS (max over rounds): ${RSS_MB} MB (the process itself)"
TREE_MAX_KB=$(printf '%s\n' "${RC_TREE[@]}" | sort -n | tail -n1)
echo "  /usr/bin/time max RSS incl. the PostgreSQL server it waited for: $(awk -v k="$TREE_MAX_KB" 'BEGIN{printf "%.1f", k/1024}') MB"
echo "restorecheck phase timings, round $ROUNDS (s):"
jq -r '.checks[0].timings | to_entries[] | "  \(.key): \(.value * 1000 | round / 1000)"' "$LAST"
echo "restorecheck assertion observed: $(jq -c '[.checks[0].assertions[] | .observed]' "$LAST")"
