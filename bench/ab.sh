#!/usr/bin/env bash
# ab.sh — two builds of restorecheck side by side on one of bench/scale.sh's cached backups,
# rounds alternating, printing each run's wall time, phases and amcheck's seconds, then the
# medians and the ratio B/A (fetch and whole check).
#
# Usage (as root, after bench/scale.sh made the backups):
#   bench/ab.sh SCALE FORMAT ROUNDS OLD_BINARY NEW_BINARY
#   bench/ab.sh 500 zst 4 /tmp/restorecheck-before target/release/restorecheck
#
# Env: CACHE (default /var/cache/restorecheck/bench), as in bench/scale.sh.
set -euo pipefail
[[ $# -eq 5 ]] || { sed -n 2,10p "$0" >&2; exit 2; }
s=$1 f=$2 n=$3 a=$4 b=$5
CACHE=${CACHE:-/var/cache/restorecheck/bench}
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ -d $CACHE/s$s/$f ]] || { echo "no backup in $CACHE/s$s/$f: run bench/scale.sh first" >&2; exit 1; }
for t in jq "$a" "$b"; do command -v "$t" >/dev/null || { echo "$t missing" >&2; exit 1; }; done
T=$(mktemp -d /var/tmp/restorecheck-ab.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/work"
chmod 0755 "$T" "$T/work"
bench_config "$T/work" "$CACHE/s$s/$f" "$s" >"$T/cfg.toml"
declare -A WALL FETCH
for ((i = 1; i <= n; i++)); do
    for who in A B; do
        bin=$a; [[ $who == B ]] && bin=$b
        t0=$EPOCHREALTIME
        "$bin" -v run -c "$T/cfg.toml" --no-history --format json >"$T/r.json" 2>"$T/r.err" \
            || { tail -n 20 "$T/r.err" >&2; exit 1; }
        t1=$EPOCHREALTIME
        [[ $(jq -r .verdict "$T/r.json") == pass ]] || { echo "$who did not pass" >&2; exit 1; }
        wall=$(awk -v x="$t0" -v y="$t1" 'BEGIN{printf "%.2f", y-x}')
        fetch=$(jq -r '.checks[0].timings.fetch' "$T/r.json")
        WALL[$who]+="$wall "; FETCH[$who]+="$fetch "
        echo "round $i $who: ${wall}s $(jq -r '(.checks[0].timings|to_entries|map("\(.key) \(.value*100|round/100)")|join(", ")) + ", amcheck \(.checks[0].assertions[]|select(.name=="amcheck")|.observed.seconds*100|round/100)"' "$T/r.json")"
    done
done
median() { printf '%s\n' $1 | sort -g | awk '{v[NR]=$1} END{ if (NR%2) printf "%.2f", v[(NR+1)/2]; else printf "%.2f", (v[NR/2]+v[NR/2+1])/2 }'; }
for k in WALL FETCH; do
    declare -n M=$k
    ma=$(median "${M[A]}"); mb=$(median "${M[B]}")
    echo "$k median: A $ma s, B $mb s, B/A $(awk -v x="$ma" -v y="$mb" 'BEGIN{printf "%.2f", y/x}')"
done
