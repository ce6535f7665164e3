#!/bin/sh
# without-host-tools.sh CMD [ARG...]: runs CMD in a private mount namespace (unshare -m) in
# which this host has no PostgreSQL and no backup tools, to show that the docker target needs
# nothing on the host but Docker and restorecheck:
#
#   - an empty folder is bound over /usr/lib/postgresql, /usr/share/postgresql-common (pg_wrapper),
#     /opt/restorecheck (the WAL-E and moto virtualenvs) and Barman's Python package;
#   - /dev/null is bound over every program in /usr/bin, /usr/sbin,
#     /usr/local/bin and /usr/local/sbin that is a PostgreSQL program or wrapper (psql, pg_*,
#     initdb, postgres, …, or anything linking into the folders above) or a backup tool
#     (pgbackrest, barman*, wal-e, wal-g, envdir, lzop, pv) or a decompressor a restore_command
#     would call (zstd, lz4; not gzip, which the base system needs);
#   - the environment is cleared: PATH=/usr/sbin:/usr/bin:/sbin:/bin, HOME, LANG=C.UTF-8.
# Then it checks that none of those programs can be found any more (exit 125 if one can), and
# execs CMD. Nothing outside the namespace changes; the Docker engine, which runs outside it,
# still sees the real file system. Needs root (or a user namespace with CAP_SYS_ADMIN).
#
# Environment: ISOLATED_KEEP_ENV="VAR ..." keeps these variables too; ISOLATED_QUIET=1 drops
# the one line saying what was hidden.
set -eu

if [ "${RESTORECHECK_ISOLATED_NS:-}" != 1 ]; then
    exec unshare --mount --propagation private env RESTORECHECK_ISOLATED_NS=1 sh "$0" "$@"
fi

[ $# -gt 0 ] || { echo "usage: without-host-tools.sh CMD [ARG...]" >&2; exit 2; }

# An empty folder on a private tmpfs is bound over the folders (nothing is left on disk but the
# empty mount point); /dev/null over the programs, so they are not even regular files any more.
E=/run/restorecheck-hidden
mkdir -p "$E"
mount -t tmpfs -o size=64k,mode=0755 restorecheck-hidden "$E"
mkdir "$E/dir"

TOOLS='^(pg_[a-z_]+|psql|pgbench|initdb|postgres|postmaster|createdb|dropdb|createuser|dropuser|createlang|droplang|clusterdb|reindexdb|vacuumdb|vacuumlo|oid2name|ecpg|pgbackrest|barman.*|wal-e|wal-g|envdir|lzop|pv|zstd|unzstd|zstdcat|zstdmt|lz4|unlz4|lz4cat)$'
HIDDEN_DIRS='/usr/lib/postgresql /usr/share/postgresql-common /opt/restorecheck /usr/lib/python3/dist-packages/barman'
files=0
for bindir in /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin; do
    [ -d "$bindir" ] || continue
    # name <TAB> resolved path, in one pass (a process per program would take seconds).
    (cd "$bindir" && ls -1A >"$E/names" && xargs -r -d '\n' realpath -m -- <"$E/names" >"$E/reals")
    hide=$(paste "$E/names" "$E/reals" | awk -F '\t' -v re="$TOOLS" \
        '$1 ~ re || $2 ~ "^(/usr/lib/postgresql|/usr/share/postgresql-common|/opt/restorecheck)/" { print $1 }')
    for name in $hide; do
        f=$bindir/$name
        [ -e "$f" ] && [ ! -d "$f" ] || continue
        case $(realpath -m -- "$f") in
            /usr/lib/postgresql/* | /usr/share/postgresql-common/* | /opt/restorecheck/*) ;; # in a folder hidden below
            *) mount --bind /dev/null "$f" 2>/dev/null || { echo "without-host-tools: cannot hide $f" >&2; exit 125; } ;;
        esac
        files=$((files + 1))
    done
done
rm -f "$E/names" "$E/reals"
dirs=0
for d in $HIDDEN_DIRS; do
    [ -d "$d" ] || continue
    mount --bind "$E/dir" "$d"
    dirs=$((dirs + 1))
done

keep=""
for v in ${ISOLATED_KEEP_ENV:-}; do
    eval "val=\${$v-}"
    # shellcheck disable=SC2154
    [ -n "$val" ] && keep="$keep $v=$val"
done
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# Proof, not hope: none of these may be found, and the folders must look empty.
for p in psql pg_ctl pg_ctlcluster initdb postgres pg_restore pg_dump pg_basebackup pg_controldata \
    pg_verifybackup pg_checksums pg_config pgbackrest barman barman-wal-restore wal-e wal-g envdir lzop pv zstd lz4; do
    if command -v "$p" >/dev/null 2>&1; then
        echo "without-host-tools: $p is still reachable ($(command -v "$p"))" >&2
        exit 125
    fi
done
for d in /usr/lib/postgresql /opt/restorecheck; do
    if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then
        echo "without-host-tools: $d is not empty" >&2
        exit 125
    fi
done
[ "${ISOLATED_QUIET:-}" = 1 ] ||
    echo "without-host-tools: hid $dirs folders and $files programs; PATH=$PATH" >&2

# shellcheck disable=SC2086
exec env -i PATH="$PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 $keep "$@"
