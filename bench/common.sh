# common.sh — shared by the scripts in bench/ (sourced, not run).

# bench_config WORK_DIR BACKUP_DIR SCALE: restorecheck's default configuration for one cached
# pgbench backup, with the count of pgbench_accounts as the one assertion.
bench_config() {
    cat <<EOF
work_dir = "$1"
[[check]]
name = "bench"
database = "bench"
timeout = "2h"
[check.source]
kind = "basebackup"
path = "$2"
[[check.assert]]
sql = "select count(*) from pgbench_accounts"
equals = $(($3 * 100000))
EOF
}
