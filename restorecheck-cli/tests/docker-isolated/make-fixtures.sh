#!/bin/sh
# Makes the backups of one PostgreSQL major for scripts/test-docker-isolated.sh, INSIDE that
# major's image (restorecheck/tools:N), with that major's own tools:
#
#   docker run --rm --network none -v D:D restorecheck/tools:N sh make-fixtures.sh D N
#
# D (the same path inside and outside) ends up holding, all taken from one cluster whose
# `app.registrations` has 100 rows at backup time and 150 after the later writes that only
# the WAL archives hold:
#   archive/              plain WAL archive (archive_command cp)
#   bb-tar/b1/            pg_basebackup -Ft -Xnone        (needs archive/)
#   bb-plain/b1/          pg_basebackup -Fp -Xstream      (self-contained: 100 rows)
#   bb-raw/b1/            pg_basebackup -Fp -Xnone        (for the WAL-G stand-in and `command`)
#   dump-custom/app.dump  pg_dump -Fc app                 (100 rows)
#   dump-plain/app.sql    pg_dump app
#   dumpall/cluster.sql   pg_dumpall
#   pgbr/                 pgBackRest stanza "rc": pgbackrest.conf, repo/ (full backup + WAL)
#   barman/               Barman server "rc" (backup_method = postgres): barman.conf, home/
#   wale/                 WAL-E 1.1.1: env/ (envdir), store/ (file:// storage; offline backup
#                         taken with --while-offline, WAL pushed before and after)
#   registrations.path    pg_relation_filepath('registrations') in the app database
#   server_version_num
# Runs as root in the container; PostgreSQL programs run as the image's postgres user, Barman
# switches to its barman user itself.
set -eu

D=$1
M=$2
PGDATA=$D/cluster/pgdata
S=$D/cluster/sock
PATH=/usr/lib/postgresql/$M/bin:$PATH
export PATH

as_pg() { runuser -u postgres -- "$@"; }
q() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$S" -U postgres "$@"; }
barman_() { barman -q -c "$D/barman/barman.conf" "$@"; }
say() { echo "[fixtures $M] $*" >&2; }

# Switches WAL and waits (bounded) until the archiver has run the whole archive_command on it.
switch_wait() {
    seg=$(q -tA -c "select pg_walfile_name(pg_switch_wal())")
    i=0
    while [ "$(q -tA -c 'select coalesce(last_archived_wal, $$$$) from pg_stat_archiver')" \< "$seg" ]; do
        i=$((i + 1))
        [ $i -lt 1200 ] || { say "segment $seg not archived within 120 s"; tail -n 30 "$D/cluster/log" >&2; exit 1; }
        sleep 0.1
    done
}

mkdir -p "$D/cluster" "$S" "$D/archive" "$D/bb-tar" "$D/bb-plain" "$D/bb-raw" "$D/dump-custom" \
    "$D/dump-plain" "$D/dumpall" "$D/pgbr/repo" "$D/wale/store" "$D/wale/env" \
    "$D/barman/home/rc/incoming" "$D/barman/log" "$D/barman/lock" "$D/barman/conf.d"
chown postgres: "$D/cluster" "$S" "$D/archive" "$D/bb-tar" "$D/bb-plain" "$D/bb-raw" "$D/dump-custom" \
    "$D/dump-plain" "$D/dumpall" "$D/pgbr/repo" "$D/wale/store"
chown -R barman: "$D/barman/home" "$D/barman/log" "$D/barman/lock"
# The cluster's archive_command (as postgres) drops WAL into Barman's incoming folder.
chmod 0777 "$D/barman/home/rc/incoming"
chmod 0755 "$D" "$D/cluster" "$S"

# ---- configuration of the tools
cat >"$D/pgbr/pgbackrest.conf" <<EOF
[global]
repo1-path=$D/pgbr/repo
repo1-retention-full=9
log-level-console=warn
log-level-file=off
lock-path=/tmp/restorecheck-pgbackrest-lock
start-fast=y
archive-timeout=60

[rc]
pg1-path=$PGDATA
pg1-socket-path=$S
EOF
chmod 0644 "$D/pgbr/pgbackrest.conf"

printf 'file://localhost%s\n' "$D/wale/store" >"$D/wale/env/WALE_FILE_PREFIX"
echo stderr >"$D/wale/env/WALE_LOG_DESTINATION"

cat >"$D/barman/barman.conf" <<EOF
[barman]
barman_user = barman
barman_home = $D/barman/home
barman_lock_directory = $D/barman/lock
log_file = $D/barman/log/barman.log
log_level = INFO
configuration_files_directory = $D/barman/conf.d

[rc]
description = restorecheck isolated test, PostgreSQL $M
conninfo = host=$S user=postgres dbname=postgres
streaming_conninfo = host=$S user=postgres
backup_method = postgres
archiver = on
streaming_archiver = off
immediate_checkpoint = true
path_prefix = /usr/lib/postgresql/$M/bin
EOF
chmod 0644 "$D/barman/barman.conf"

# Every finished segment goes to all four archives: plain, pgBackRest, Barman, WAL-E. (pgBackRest's
# backup insists that archive_command contains "pgbackrest": hence the script's name.) WAL-E runs
# last and with --pool-size 1: by default `wal-push` also uploads other segments waiting in
# pg_wal/archive_status and marks them .done, so PostgreSQL never hands them to the other
# archives (seen here: a segment only WAL-E had).
cat >"$D/archive-pgbackrest-and-all.sh" <<EOF
#!/bin/sh
set -e
[ -f "$D/archive/\$2" ] || cp "\$1" "$D/archive/\$2"
pgbackrest --config=$D/pgbr/pgbackrest.conf --stanza=rc archive-push "\$1"
cp "\$1" "$D/barman/home/rc/incoming/\$2" && chmod 0644 "$D/barman/home/rc/incoming/\$2"
envdir $D/wale/env wal-e wal-push --pool-size 1 "\$1" 2>>$D/cluster/wale-push.log
EOF
chmod 0755 "$D/archive-pgbackrest-and-all.sh"

# ---- the cluster
say "initdb"
as_pg initdb -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C -k >/dev/null
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$S'
wal_level = replica
archive_mode = on
archive_command = '$D/archive-pgbackrest-and-all.sh %p %f'
max_wal_senders = 4
max_connections = 40
EOF
as_pg pg_ctl -D "$PGDATA" -w -l "$D/cluster/log" start >/dev/null
q -c "create database app"
q -d app -c "create table registrations (id bigserial primary key, email text not null, created_at timestamptz not null default now());
    insert into registrations (email) select 'u' || g || '@example.org' from generate_series(1, 100) g"
q -d app -tA -c "select pg_relation_filepath('registrations')" >"$D/registrations.path"
q -tA -c "show server_version_num" >"$D/server_version_num"
as_pg pgbackrest --config="$D/pgbr/pgbackrest.conf" --stanza=rc stanza-create
switch_wait
# Barman refuses a backup before it has seen WAL arrive.
barman_ archive-wal rc >/dev/null

# ---- the backups (100 rows)
say "pg_basebackup -Ft -Xnone, -Fp -Xstream, -Fp -Xnone"
as_pg pg_basebackup -h "$S" -U postgres -D "$D/bb-tar/b1" -Ft -Xnone -c fast
as_pg pg_basebackup -h "$S" -U postgres -D "$D/bb-plain/b1" -Fp -Xstream -c fast
as_pg pg_basebackup -h "$S" -U postgres -D "$D/bb-raw/b1" -Fp -Xnone -c fast
say "pg_dump -Fc, pg_dump (plain), pg_dumpall"
as_pg pg_dump -h "$S" -U postgres -Fc -f "$D/dump-custom/app.dump" app
as_pg pg_dump -h "$S" -U postgres -f "$D/dump-plain/app.sql" app
as_pg pg_dumpall -h "$S" -U postgres -f "$D/dumpall/cluster.sql"
say "pgbackrest backup"
as_pg pgbackrest --config="$D/pgbr/pgbackrest.conf" --stanza=rc --type=full backup
say "barman backup"
barman_ backup rc >/dev/null
switch_wait
barman_ archive-wal rc >/dev/null
# WAL-E 1.1.1 cannot back up PostgreSQL 15+ online (it calls the exclusive pg_start_backup
# removed in 15), so the WAL-E backup is taken offline, for every major alike.
say "wal-e backup-push --while-offline"
as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
as_pg envdir "$D/wale/env" wal-e backup-push --while-offline "$PGDATA" 2>>"$D/cluster/wale-push.log"
as_pg pg_ctl -D "$PGDATA" -w -l "$D/cluster/log" start >/dev/null

# ---- later writes that only the archives hold (150 rows)
say "later writes"
q -d app -c "insert into registrations (email) select 'later' || g || '@example.org' from generate_series(1, 30) g"
switch_wait
q -d app -c "insert into registrations (email) select 'later2-' || g || '@example.org' from generate_series(1, 20) g"
switch_wait
barman_ archive-wal rc >/dev/null
# Barman 3.13 leaves the backup WAITING_FOR_WALS until `barman cron` would check it; do that now.
barman_ check-backup rc latest
as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
# The server's OS user of either target reads backups and archives; the cluster is not needed.
rm -rf "$PGDATA"
chmod -R a+rX "$D"
say "done"
touch "$D/fixtures.done"
