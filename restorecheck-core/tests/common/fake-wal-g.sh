#!/bin/sh
# STAND-IN for wal-g, written by restorecheck's tests (no WAL-G binary on this machine).
root="$WALG_FILE_PREFIX"
[ -n "$root" ] || { echo "ERROR: no storage configured (WALG_FILE_PREFIX)" >&2; exit 1; }
[ -n "$AWS_SECRET_ACCESS_KEY" ] || { echo "ERROR: no credentials" >&2; exit 1; }
[ -n "$STANDIN_CALLS" ] && echo "$*" >> "$STANDIN_CALLS"
case "$1" in
backup-list)
  [ "$2" = --json ] && [ "$3" = --detail ] || { echo "usage" >&2; exit 1; }
  cat "$root/list.json";;
st)
  [ "$2" = cat ] || exit 1
  cat "$root/$3" || { echo "ERROR: object $3 not found" >&2; exit 1; };;
backup-fetch)
  [ -d "$root/basebackups_005/$3" ] || { echo "ERROR: backup $3 not found" >&2; exit 1; }
  cp -a "$root/basebackups_005/$3/." "$2/";;
wal-show)
  [ "$2" = --detailed-json ] || exit 1
  segs=$(ls "$root/wal_005" | grep -E '^00000001[0-9A-F]{16}$' | sort)
  [ -n "$segs" ] || { echo "[]"; exit 0; }
  first=$(echo "$segs" | head -n 1); last=$(echo "$segs" | tail -n 1)
  a=$(( (0x$(echo $first | cut -c9-16)) * 256 + 0x$(echo $first | cut -c17-24) ))
  b=$(( (0x$(echo $last | cut -c9-16)) * 256 + 0x$(echo $last | cut -c17-24) ))
  missing=""; n=$a
  while [ $n -le $b ]; do
    name=$(printf '00000001%08X%08X' $((n / 256)) $((n % 256)))
    [ -f "$root/wal_005/$name" ] || missing="$missing${missing:+,}\"$name\""
    n=$((n + 1))
  done
  status=OK; [ -n "$missing" ] && status=LOST_SEGMENTS
  printf '[{"id":1,"parent_id":0,"switch_point_lsn":0,"start_segment":"%s","end_segment":"%s","segments_count":%d,"missing_segments":[%s],"segment_range_size":%d,"status":"%s"}]' \
    "$first" "$last" "$(echo "$segs" | wc -l)" "$missing" $((b - a + 1)) "$status";;
wal-fetch)
  if [ -f "$root/storage-error" ] && grep -qx "$2" "$root/storage-error"; then
    echo "ERROR: simulated storage error reading $2" >&2; exit 1
  fi
  [ -f "$root/wal_005/$2" ] || { echo "ERROR: Archive '$2' does not exist." >&2; exit 74; }
  cp "$root/wal_005/$2" "$3";;
*)
  echo "ERROR: unknown command $1" >&2; exit 1;;
esac
