#!/usr/bin/env bash
# scale.sh — how restorecheck scales with the backup's size, side by side with the hand-rolled
# shell pipeline, for tar.gz and tar.zst backups of pgbench clusters.
#
# Usage (as root; PostgreSQL 15 binaries, zstd, jq, GNU time; a release build):
#   cargo build --release -p restorecheck-cli
#   bench/scale.sh                       # scales 50 and 500, 3 rounds each
#   SCALES="50" ROUNDS=5 bench/scale.sh
#
# Env:
#   SCALES   pgbench scale factors (default "50 500": about 0.8 GB and 7.9 GB restored)
#   ROUNDS   timed rounds per contender and format, alternating the order (default 3)
#   CACHE    where the backups are made once and kept, outside the repository
#            (default /var/cache/restorecheck/bench; delete it to make them again)
#   PGBIN    PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
#   RESTORECHECK  binary (default <repo>/target/release/restorecheck)
#
# Each round times, for one backup:
#   restorecheck  `restorecheck -v run` with its DEFAULT configuration (manifest verified in the
#                 same pass as the extraction + pg_verifybackup -s, amcheck, the count, and
#                 the page checksum verification when the cluster has checksums — pgbench's has none);
#   shell         the hand-rolled pipeline: untar base and pg_wal (`tar -xzf`, or `zstd -dc | tar -x`),
#                 recovery settings, `pg_ctl -w start`, poll pg_is_in_recovery(), count(*), stop, rm.
# and prints per-round times, medians, the ratio restorecheck/shell, restorecheck's phases, MB/s
# of restored data, and restorecheck's own peak RSS; at the end time(largest)/time(smallest).
set -euo pipefail

SCALES=${SCALES:-"50 500"}
ROUNDS=${ROUNDS:-3}
CACHE=${CACHE:-/var/cache/restorecheck/bench}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESTORECHECK=${RESTORECHECK:-$REPO/target/release/restorecheck}
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"
PGUSER_OS=postgres
SRC_PORT=5442
SHELL_PORT=5443

die() { echo "FATAL: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
as_pg() { runuser -u "$PGUSER_OS" -- "$@"; }

[[ $EUID -eq 0 ]] || die "run as root"
[[ -x $RESTORECHECK ]] || die "$RESTORECHECK missing: cargo build --release -p restorecheck-cli"
for t in jq zstd /usr/bin/time; do command -v "$t" >/dev/null || die "$t missing (apt-get install jq zstd time)"; done

T=$(mktemp -d /var/tmp/restorecheck-scale.XXXXXX)
chmod 0755 "$T"
cd "$T"
cleanup() {
    local rc=$? pidfile dir
    set +e
    trap - EXIT INT TERM
    while IFS= read -r pidfile; do
        dir=$(dirname "$pidfile")
        as_pg "$PGBIN/pg_ctl" -D "$dir" -m immediate -w -t 30 stop >/dev/null 2>&1
    done < <(find "$T" "$CACHE" -maxdepth 3 -name postmaster.pid -type f 2>/dev/null)
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
SOCK=$T/sock
mkdir -p "$SOCK" "$T/rcwork" "$T/shell" "$T/reports" "$CACHE"
chown "$PGUSER_OS" "$SOCK" "$T/shell" "$CACHE"
chmod 0755 "$T/rcwork"

# make_backups SCALE: $CACHE/s$SCALE/{gz,zst}/<backup>/, made once.
make_backups() {
    local s=$1 d=$CACHE/s$1 src
    if [[ -f $d/done ]]; then log "scale $s: backups cached in $d"; return; fi
    rm -rf "$d"; mkdir -p "$d"; chown "$PGUSER_OS" "$d"
    src=$d/src
    log "scale $s: initdb + pgbench -i -s $s"
    as_pg "$PGBIN/initdb" -D "$src" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1
    as_pg "$PGBIN/pg_ctl" -D "$src" -l "$d/src.log" -w -t 300 \
        -o "-c listen_addresses='' -k $SOCK -p $SRC_PORT -c max_wal_size=8GB -c checkpoint_timeout=30min" start >/dev/null
    as_pg "$PGBIN/createdb" -h "$SOCK" -p "$SRC_PORT" -U postgres bench
    as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$SRC_PORT" -U postgres -i -q -s "$s" bench >"$d/pgbench.log" 2>&1
    log "scale $s: pg_basebackup -Ft -z (gzip) and -Ft --compress=zstd"
    as_pg mkdir -p "$d/gz" "$d/zst"
    as_pg "$PGBIN/pg_basebackup" -h "$SOCK" -p "$SRC_PORT" -U postgres -D "$d/gz/b" -Ft -z -Xstream -c fast
    as_pg "$PGBIN/pg_basebackup" -h "$SOCK" -p "$SRC_PORT" -U postgres -D "$d/zst/b" -Ft --compress=zstd -Xstream -c fast
    as_pg "$PGBIN/pg_ctl" -D "$src" -m fast -w stop >/dev/null
    rm -rf "$src"
    touch "$d/done"
}

# run_rc SCALE FMT TAG -> RC_WALL, RC_RSS_KB; report in $T/reports/TAG.json
run_rc() {
    local dir=$CACHE/s$1/$2 tag=$3 cfg=$T/cfg-$2-$1.toml json=$T/reports/$3.json err=$T/reports/$3.err t0 t1
    bench_config "$T/rcwork" "$dir" "$1" >"$cfg"
    t0=$EPOCHREALTIME
    "$RESTORECHECK" -v run -c "$cfg" --no-history --format json >"$json" 2>"$err" \
        || { tail -n 30 "$err" >&2; cat "$json" >&2; die "restorecheck failed ($tag)"; }
    t1=$EPOCHREALTIME
    [[ $(jq -r .verdict "$json") == pass ]] || die "restorecheck did not pass ($tag)"
    RC_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    RC_RSS_KB=$(sed -n 's/.*peak RSS of restorecheck itself: \([0-9.]*\) MB.*/\1/p' "$err" | awk '{printf "%d", $1*1024}')
}

# run_shell SCALE FMT TAG -> SH_WALL
run_shell() {
    local b=$CACHE/s$1/$2/b d=$T/shell/data t0 t1 state count tries=0
    t0=$EPOCHREALTIME
    mkdir -m 0700 "$d"
    # pg_basebackup --compress=zstd leaves pg_wal.tar uncompressed; take whichever is there.
    for part in base pg_wal; do
        local to=$d; [[ $part == pg_wal ]] && to=$d/pg_wal
        if [[ -f $b/$part.tar.gz ]]; then tar -xzf "$b/$part.tar.gz" -C "$to"
        elif [[ -f $b/$part.tar.zst ]]; then zstd -dcq "$b/$part.tar.zst" | tar -x -C "$to"
        else tar -xf "$b/$part.tar" -C "$to"; fi
    done
    printf '%s\n' "port = $SHELL_PORT" "unix_socket_directories = '$SOCK'" "listen_addresses = ''" "archive_mode = off" \
        >>"$d/postgresql.auto.conf"
    chown -R "$PGUSER_OS" "$d"
    as_pg "$PGBIN/pg_ctl" -D "$d" -l "$T/shell/$3.log" -w -t 1200 start >/dev/null || die "shell: start failed ($3)"
    until state=$(as_pg "$PGBIN/psql" -h "$SOCK" -p "$SHELL_PORT" -U postgres -d bench -tAc 'select pg_is_in_recovery()' 2>/dev/null) \
          && [[ $state == f ]]; do (( ++tries < 12000 )) || die "shell: recovery did not end"; sleep 0.1; done
    count=$(as_pg "$PGBIN/psql" -h "$SOCK" -p "$SHELL_PORT" -U postgres -d bench -tAc 'select count(*) from pgbench_accounts')
    as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null
    local du0=$EPOCHREALTIME
    RESTORED_BYTES=$(du -sb "$d" | cut -f1)   # not timed (subtracted below)
    local du1=$EPOCHREALTIME
    rm -rf "$d"
    t1=$EPOCHREALTIME
    [[ $count == $(($1 * 100000)) ]] || die "shell: count $count ($3)"
    SH_WALL=$(awk -v a="$t0" -v b="$t1" -v c="$du0" -v d="$du1" 'BEGIN{printf "%.3f", (b-a)-(d-c)}')
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) printf "%.3f", a[(NR+1)/2]; else printf "%.3f", (a[NR/2]+a[NR/2+1])/2 }'; }

for s in $SCALES; do make_backups "$s"; done

declare -A MED
SUMMARY=$T/summary
: >"$SUMMARY"
for s in $SCALES; do
    for f in gz zst; do
        log "scale $s $f: warm-up"
        run_rc "$s" "$f" "w-$s-$f"; run_shell "$s" "$f" "w-$s-$f"
        RC_T=(); SH_T=(); RSS=()
        for ((i = 1; i <= ROUNDS; i++)); do
            if ((i % 2)); then order="rc shell"; else order="shell rc"; fi
            for who in $order; do
                if [[ $who == rc ]]; then run_rc "$s" "$f" "r$i-$s-$f"; RC_T+=("$RC_WALL"); RSS+=("$RC_RSS_KB")
                else run_shell "$s" "$f" "r$i-$s-$f"; SH_T+=("$SH_WALL"); fi
            done
            log "scale $s $f round $i: restorecheck ${RC_T[-1]}s, shell ${SH_T[-1]}s"
        done
        rc_med=$(median "${RC_T[@]}"); sh_med=$(median "${SH_T[@]}")
        MED[$s-$f]=$rc_med
        last=$T/reports/r$ROUNDS-$s-$f.json
        bytes=$RESTORED_BYTES   # the restored cluster's size, measured by the shell contender
        rss=$(printf '%s\n' "${RSS[@]}" | sort -n | tail -n1)
        {
            echo "== scale $s, tar.$f: backup $(du -sh "$CACHE/s$s/$f/b" | cut -f1), restored $(awk -v b="$bytes" 'BEGIN{printf "%.2f GB", b/1e9}')"
            echo "   restorecheck rounds: ${RC_T[*]}  median $rc_med s"
            echo "   shell rounds:        ${SH_T[*]}  median $sh_med s"
            echo "   ratio restorecheck/shell: $(awk -v a="$rc_med" -v b="$sh_med" 'BEGIN{printf "%.2f", a/b}')"
            echo "   restorecheck phases (last round): $(jq -r '.checks[0].timings | to_entries | map("\(.key) \(.value*100|round/100)") | join(", ")' "$last")"
            echo "   restored data / restorecheck wall: $(awk -v b="$bytes" -v t="$rc_med" 'BEGIN{printf "%.0f MB/s", b/1e6/t}')"
            echo "   restorecheck peak RSS: $(awk -v k="$rss" 'BEGIN{printf "%.1f MB", k/1024}')"
            echo "   notes: $(jq -r '[.checks[0].notes[] | select(test("manifest"))] | join(" | ")' "$last")"
        } | tee -a "$SUMMARY"
    done
done
read -r -a S <<<"$SCALES"
if ((${#S[@]} > 1)); then
    lo=${S[0]}; hi=${S[-1]}
    for f in gz zst; do
        echo "time(scale $hi)/time(scale $lo), tar.$f: $(awk -v a="${MED[$hi-$f]}" -v b="${MED[$lo-$f]}" 'BEGIN{printf "%.2f", a/b}') (data ×$((hi / lo)))" | tee -a "$SUMMARY"
    done
fi
