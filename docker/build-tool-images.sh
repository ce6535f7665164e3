#!/usr/bin/env bash
# Build the images with backup tools that restorecheck's docker target runs a check's tools in:
#
#   restorecheck/tools:N        pgBackRest + Barman + WAL-E 1.1.1   (docker/Dockerfile.tools; the tests use it)
#   restorecheck/pgbackrest:N   pgBackRest                          (docker/Dockerfile.pgbackrest)
#   restorecheck/barman:N       Barman, barman-cli                  (docker/Dockerfile.barman)
#   restorecheck/wale:N         WAL-E 1.1.1, lzop, pv, envdir       (docker/Dockerfile.wale)
#
# each FROM the locally built restorecheck/postgres:N (docker/build-images.sh builds it first
# when it is missing), N = 13 15 17. No image registry is used. The packages come from the
# base image's Debian mirror inside `docker build`; WAL-E from PyPI through this host's pip
# (sdist checked against its sha256, built into a wheel here), because RUN steps may not reach
# PyPI (on the machine this was written on they reach the Debian mirror over http but not
# PyPI's https).
#
# Usage: docker/build-tool-images.sh [--force] [--kinds K,K] [VERSION...]
#   VERSION        PostgreSQL major(s) (default: 13 15 17)
#   --kinds K,...  which images: tools, pgbackrest, barman, wale, or all (default: tools)
#   --force        rebuild even if the image exists and was built on the current base image
#
# Environment:
#   BARMAN_UID, BARMAN_GID  uid/gid of the images' barman user (default: the uid/gid of this
#                  host's barman user when there is one, so a catalog made here is readable in
#                  the container, else the package's choice). Barman must run as the owner of
#                  the catalog it reads.
#   WHEEL_CACHE    where the WAL-E wheel is kept (default /var/cache/restorecheck/wheels)
#   PIP            pip to download WAL-E with (default: python3 -m pip)
#
# Cached by tag: an image is kept when it exists and its label org.restorecheck.base-image-id
# is the current base image's id (a rebuilt base image makes its tool images stale). Each
# image is checked: pgbackrest version, barman --version, barman-wal-restore --version,
# wal-e version (with --network none), as far as the image has them.

set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE_REPO=${BASE_REPO:-restorecheck/postgres}
WHEEL_CACHE=${WHEEL_CACHE:-/var/cache/restorecheck/wheels}
WALE_VERSION=1.1.1
# sha256 of wal-e-1.1.1.tar.gz on PyPI.
WALE_SDIST_SHA256=bdf55a7f6e2bd0c2298502928756d222d2804391ef39b3f36c2514293c5d65e9
DEFAULT_VERSIONS=(13 15 17)
ALL_KINDS=(tools pgbackrest barman wale)

FORCE=0
KINDS=(tools)
VERSIONS=()
TMPDIRS=()
STEP=startup
LOG=""

log() { printf '[build-tool-images %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { printf '[build-tool-images] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

cleanup() {
    local rc=$? d
    set +e
    if [[ $rc -ne 0 ]]; then
        printf '[build-tool-images] FAILED (exit %s) during: %s\n' "$rc" "$STEP" >&2
        if [[ -n $LOG && -s $LOG ]]; then
            printf '[build-tool-images] last lines of %s:\n' "$LOG" >&2
            tail -n 30 "$LOG" | sed 's/^/    /' >&2
        fi
    fi
    for d in "${TMPDIRS[@]}"; do rm -rf --one-file-system "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

tools_of() {
    case $1 in
        tools) echo "pgbackrest barman wale" ;;
        *) echo "$1" ;;
    esac
}

# The WAL-E wheel in $WHEEL_CACHE, made once from the sdist (hash-checked) with this host's pip.
wale_wheel() {
    local whl="$WHEEL_CACHE/wal_e-$WALE_VERSION-py3-none-any.whl"
    if [[ -s $whl ]]; then
        echo "$whl"
        return
    fi
    STEP="download WAL-E $WALE_VERSION from PyPI"
    local tmp pip
    tmp=$(mktemp -d /var/tmp/restorecheck-wheel.XXXXXX)
    TMPDIRS+=("$tmp")
    read -r -a pip <<<"${PIP:-python3 -m pip}"
    printf 'wal-e==%s --hash=sha256:%s\n' "$WALE_VERSION" "$WALE_SDIST_SHA256" >"$tmp/req.txt"
    log "  WAL-E $WALE_VERSION: pip download (sdist, sha256 checked) + pip wheel, on this host" >&2
    "${pip[@]}" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        --require-hashes -r "$tmp/req.txt" -d "$tmp/sdist" >&2 ||
        die "could not download wal-e==$WALE_VERSION with ${pip[*]} (PyPI reachable? PIP= to use another pip)"
    STEP="build the WAL-E wheel"
    "${pip[@]}" wheel -q --disable-pip-version-check --no-deps -w "$tmp/wheel" "$tmp"/sdist/wal-e-"$WALE_VERSION".tar.gz >&2 ||
        die "could not build a wheel of wal-e $WALE_VERSION"
    mkdir -p "$WHEEL_CACHE"
    local part
    part=$(mktemp "$whl.XXXXXX")
    cp "$tmp"/wheel/wal_e-"$WALE_VERSION"-py3-none-any.whl "$part"
    chmod 0644 "$part"
    mv -f "$part" "$whl"
    # Called in $(…), whose subshell does not run the EXIT trap: clean up here.
    rm -rf --one-file-system "$tmp"
    echo "$whl"
}

verify_one() {
    local image=$1 kind=$2 out t
    STEP="verify $image"
    for t in $(tools_of "$kind"); do
        case $t in
            pgbackrest)
                out=$(docker run --rm --network none "$image" pgbackrest version) ||
                    die "$image: 'pgbackrest version' failed"
                [[ $out == pgBackRest\ * ]] || die "$image: pgbackrest version printed '$out'"
                log "  pgbackrest version: $out"
                ;;
            barman)
                out=$(docker run --rm --network none "$image" barman --version 2>&1) ||
                    die "$image: 'barman --version' failed: $out"
                log "  barman --version: ${out%%$'\n'*}"
                out=$(docker run --rm --network none "$image" barman-wal-restore --version 2>&1) ||
                    die "$image: 'barman-wal-restore --version' failed: $out"
                log "  barman-wal-restore --version: $out"
                out=$(docker run --rm --network none "$image" id barman) || die "$image: no barman user"
                log "  id barman: $out"
                ;;
            wale)
                out=$(docker run --rm --network none "$image" wal-e version 2>&1) ||
                    die "$image: 'wal-e version' failed: $out"
                [[ $out == "$WALE_VERSION" ]] || die "$image: wal-e version printed '$out'"
                log "  wal-e version: $out"
                docker run --rm --network none "$image" sh -ec \
                    'command -v envdir >/dev/null; lzop --version >/dev/null; pv --version >/dev/null; test -x /opt/restorecheck/wal-e/bin/wal-e' ||
                    die "$image: envdir, lzop, pv or /opt/restorecheck/wal-e/bin/wal-e missing"
                log "  envdir, lzop, pv, /opt/restorecheck/wal-e/bin/wal-e: present"
                ;;
        esac
    done
    out=$(docker run --rm --network none "$image" postgres --version)
    log "  postgres --version: $out"
}

build_one() {
    local kind=$1 major=$2 image="restorecheck/$1:$2" base="$BASE_REPO:$2"
    local t0=$SECONDS base_id have tmp old_id
    base_id=$(docker image inspect -f '{{.Id}}' "$base")
    if [[ $FORCE -eq 0 ]] && have=$(docker image inspect -f '{{index .Config.Labels "org.restorecheck.base-image-id"}}' "$image" 2>/dev/null); then
        if [[ $have == "$base_id" ]]; then
            log "$image: cached (use --force to rebuild)"
            RESULTS+=("$image: cached")
            return
        fi
        log "$image: built on an older $base, rebuilding"
    fi
    log "$image: building FROM $base"
    old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
    tmp=$(mktemp -d "/var/tmp/restorecheck-tools$major.XXXXXX")
    TMPDIRS+=("$tmp")
    LOG="$tmp/build.log"
    mkdir -p "$tmp/ctx/wheels"
    cp "$HERE/install-tools.sh" "$tmp/ctx/"
    if [[ " $(tools_of "$kind") " == *" wale "* ]]; then
        cp "$WALE_WHEEL" "$tmp/ctx/wheels/"
    fi
    STEP="docker build $image"
    local args=(--build-arg "BASE=$base" --label "org.restorecheck.base-image-id=$base_id"
        --label "org.restorecheck.pg-major=$major")
    [[ -n ${BARMAN_UID:-} ]] && args+=(--build-arg "BARMAN_UID=$BARMAN_UID")
    [[ -n ${BARMAN_GID:-} ]] && args+=(--build-arg "BARMAN_GID=$BARMAN_GID")
    if ! docker build --pull=false --rm --force-rm -f "$HERE/Dockerfile.$kind" "${args[@]}" \
        -t "$image" "$tmp/ctx" >"$LOG" 2>&1; then
        die "docker build of $image failed (log above)"
    fi
    LOG=""
    rm -rf --one-file-system "$tmp"
    verify_one "$image" "$kind"
    if [[ -n $old_id && $old_id != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
        docker image rm "$old_id" >/dev/null 2>&1 || true
    fi
    local dt=$((SECONDS - t0))
    log "$image: built in $(fmt_secs $dt)"
    RESULTS+=("$image: built in $(fmt_secs $dt)")
}

while [[ $# -gt 0 ]]; do
    case $1 in
        -f|--force) FORCE=1 ;;
        --kinds) shift; [[ $# -gt 0 ]] || die "--kinds needs a value"
            if [[ $1 == all ]]; then KINDS=("${ALL_KINDS[@]}"); else IFS=, read -r -a KINDS <<<"$1"; fi ;;
        --kinds=*) v=${1#--kinds=}
            if [[ $v == all ]]; then KINDS=("${ALL_KINDS[@]}"); else IFS=, read -r -a KINDS <<<"$v"; fi ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        13|15|17) VERSIONS+=("$1") ;;
        *) die "unsupported version '$1' (supported: ${DEFAULT_VERSIONS[*]})" ;;
    esac
    shift
done
[[ ${#VERSIONS[@]} -gt 0 ]] || VERSIONS=("${DEFAULT_VERSIONS[@]}")
for k in "${KINDS[@]}"; do
    [[ -f $HERE/Dockerfile.$k ]] || die "unknown image kind '$k' (${ALL_KINDS[*]} or all)"
done

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine"
if [[ -z ${BARMAN_UID:-} ]] && id barman >/dev/null 2>&1; then
    BARMAN_UID=$(id -u barman)
    BARMAN_GID=${BARMAN_GID:-$(id -g barman)}
fi

missing=()
for v in "${VERSIONS[@]}"; do
    docker image inspect "$BASE_REPO:$v" >/dev/null 2>&1 || missing+=("$v")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    STEP="base images ${missing[*]}"
    log "base image(s) missing for ${missing[*]}: running docker/build-images.sh"
    [[ $(id -u) -eq 0 ]] || die "building the base images needs root (sudo $HERE/build-images.sh ${missing[*]})"
    "$HERE/build-images.sh" "${missing[@]}"
fi

WALE_WHEEL=""
for k in "${KINDS[@]}"; do
    if [[ " $(tools_of "$k") " == *" wale "* ]]; then WALE_WHEEL=$(wale_wheel); break; fi
done

log "kinds: ${KINDS[*]}; versions: ${VERSIONS[*]}${BARMAN_UID:+; barman uid $BARMAN_UID}"
RESULTS=()
T_ALL=$SECONDS
for v in "${VERSIONS[@]}"; do
    for k in "${KINDS[@]}"; do build_one "$k" "$v"; done
done
STEP=done
log "summary (total $(fmt_secs $((SECONDS - T_ALL)))):"
for r in "${RESULTS[@]}"; do log "  $r"; done
