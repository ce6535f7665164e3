#!/usr/bin/env bash
# Build the local PostgreSQL server images used by restorecheck:
#
#   restorecheck/postgres:13   Debian bullseye, package postgresql-13
#   restorecheck/postgres:15   Debian bookworm, package postgresql-15
#   restorecheck/postgres:17   Debian trixie,   package postgresql-17
#
# No image registry is needed: each root filesystem is made with
# `debootstrap --variant=minbase` from a Debian mirror, PostgreSQL is
# installed in a chroot, and the tree is loaded with `docker import`.
#
# Usage: docker/build-images.sh [--force] [--refresh-base] [VERSION...]
#   VERSION          PostgreSQL major(s) to build (default: 13 15 17)
#   --force          rebuild even if the image already exists
#   --refresh-base   ignore the cached debootstrap base tarball too
#
# Environment:
#   MIRROR           Debian mirror (default: taken from /etc/apt/sources.list*,
#                    else http://deb.debian.org/debian)
#   SECURITY_MIRROR  Debian security mirror (default: derived the same way)
#   BASE_CACHE_DIR   where minbase root tarballs are cached
#                    (default: /var/cache/restorecheck/debootstrap; "" = off)
#   IMAGE_REPO       image repository name (default: restorecheck/postgres)
#   LOCALES          extra locales to compile into the image, e.g.
#                    "en_US.UTF-8 de_DE.UTF-8" (default: none; C and C.UTF-8
#                    are always available)
#
# Must run as root. Safe to run next to other work: every build uses its own
# mktemp directory under /var/tmp, removed on exit.

set -Eeuo pipefail

IMAGE_REPO=${IMAGE_REPO:-restorecheck/postgres}
LOCALES=${LOCALES:-}
BASE_CACHE_DIR=${BASE_CACHE_DIR-/var/cache/restorecheck/debootstrap}
DEFAULT_VERSIONS=(13 15 17)
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

declare -A SUITE_FOR=([13]=bullseye [15]=bookworm [17]=trixie)

FORCE=0
REFRESH_BASE=0
VERSIONS=()
TMPDIRS=()
STEP="startup"
LOG=""

log() { printf '[build-images %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    if [[ $rc -ne 0 ]]; then
        printf '[build-images] FAILED (exit %s) during: %s\n' "$rc" "$STEP" >&2
        if [[ -n $LOG && -s $LOG ]]; then
            printf '[build-images] last lines of %s:\n' "$LOG" >&2
            tail -n 40 "$LOG" | sed 's/^/    /' >&2
        fi
    fi
    local d m
    for d in "${TMPDIRS[@]}"; do
        [[ -d $d ]] || continue
        # Unmount anything still mounted below the temp dir (deepest first)
        # before deleting, so rm can never descend into /proc or the like.
        for m in $(awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do
            umount -l "$m" 2>/dev/null
        done
        rm -rf --one-file-system "$d"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
# First Debian URI in the host's apt sources whose path ends in "/$1".
detect_uri() {
    local want=$1
    local f files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    [[ ${#files[@]} -gt 0 ]] || return 0
    awk -v want="$want" '
            /^[[:space:]]*#/ { next }
            /^(deb[[:space:]]|URIs:)/ {
                for (i = 1; i <= NF; i++) {
                    u = $i; sub(/\/+$/, "", u)
                    if (u ~ /^https?:\/\// && u ~ ("/" want "$")) { print u; exit }
                }
            }' "${files[@]}"
}

# Run a command inside the chroot with a clean, non-interactive environment.
in_chroot() {
    local root=$1; shift
    chroot "$root" /usr/bin/env -i \
        PATH="$CHROOT_PATH" HOME=/root LC_ALL=C \
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        "$@"
}

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# Produce a minbase root for $suite in $root, via cache tarball if present.
make_base_root() {
    local suite=$1 root=$2 arch cache="" comp=()
    arch=$(dpkg --print-architecture)
    if command -v zstd >/dev/null; then comp=(--zstd); fi
    [[ -n $BASE_CACHE_DIR ]] &&
        cache="$BASE_CACHE_DIR/$suite-$arch-minbase.tar${comp:+.zst}"

    if [[ -n $cache && -s $cache && $REFRESH_BASE -eq 0 ]]; then
        STEP="unpack cached base $cache"
        log "  using cached minbase root $cache"
        mkdir -p "$root"
        tar -C "$root" --numeric-owner "${comp[@]}" -xpf "$cache"
        return
    fi

    STEP="debootstrap $suite"
    log "  debootstrap --variant=minbase $suite from $MIRROR"
    debootstrap --variant=minbase --arch="$arch" "$suite" "$root" "$MIRROR" >>"$LOG" 2>&1

    if [[ -n $cache ]]; then
        STEP="write base cache $cache"
        mkdir -p "$BASE_CACHE_DIR"
        local part
        part=$(mktemp "$cache.XXXXXX")
        tar -C "$root" --numeric-owner "${comp[@]}" \
            --exclude='./var/cache/apt/archives/*.deb' \
            --exclude='./var/lib/apt/lists/*' -cf "$part" .
        mv -f "$part" "$cache"       # atomic: parallel runs never see half a file
        log "  cached minbase root as $cache"
    fi
}

# ---------------------------------------------------------------- one image
build_one() {
    local major=$1 suite=${SUITE_FOR[$1]} image="$IMAGE_REPO:$1"
    local t0=$SECONDS tmp root old_id

    if [[ $FORCE -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
        log "$image: cached (use --force to rebuild)"
        RESULTS+=("$image: cached")
        return
    fi
    log "$image: building from Debian $suite"
    old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)

    tmp=$(mktemp -d "/var/tmp/restorecheck-pg$major.XXXXXX")
    TMPDIRS+=("$tmp")
    root="$tmp/root"
    LOG="$tmp/build.log"
    : >"$LOG"

    make_base_root "$suite" "$root"

    STEP="configure chroot ($suite)"
    mount -t proc proc "$root/proc"
    # Never start services inside the chroot (nor later in the image).
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    # Keep the image small: no man pages / docs (copyright files stay).
    cat >"$root/etc/dpkg/dpkg.cfg.d/restorecheck-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/locale/*
EOF
    cat >"$root/etc/apt/apt.conf.d/90restorecheck" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
EOF
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $SECURITY_MIRROR $suite-security main
EOF

    cp -L /etc/resolv.conf "$root/etc/resolv.conf"   # name resolution for apt

    STEP="apt-get update ($suite)"
    in_chroot "$root" apt-get update >>"$LOG" 2>&1

    STEP="check PostgreSQL packages in $suite"
    local shipped cand
    shipped=$(in_chroot "$root" apt-cache pkgnames postgresql- |
        grep -E '^postgresql-[0-9]+$' | sort -V | tr '\n' ' ' || true)
    cand=$(in_chroot "$root" apt-cache policy "postgresql-$major" |
        awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then
        die "Debian $suite does not ship postgresql-$major; it ships: ${shipped:-nothing}. Adjust SUITE_FOR in $0."
    fi
    log "  $suite ships: ${shipped}-> postgresql-$major $cand"

    local pkgs=("postgresql-$major" gzip zstd lz4)
    # Since PostgreSQL 10 the contrib modules live in postgresql-N itself and
    # "postgresql-contrib" is only a metapackage; add a real contrib package
    # only if the suite has one.
    # (postgresql-N "Provides: postgresql-contrib-N", so ask for a real stanza.)
    if in_chroot "$root" apt-cache show --no-all-versions "postgresql-contrib-$major" 2>/dev/null |
        grep -qx "Package: postgresql-contrib-$major"; then
        pkgs+=("postgresql-contrib-$major")
    fi

    STEP="install postgresql-common ($suite)"
    in_chroot "$root" apt-get install -y --no-install-recommends postgresql-common >>"$LOG" 2>&1
    # We only need binaries: stop postgresql-N's postinst from running initdb.
    local cc="$root/etc/postgresql-common/createcluster.conf"
    if [[ -f $cc ]] && grep -qE '^[#[:space:]]*create_main_cluster' "$cc"; then
        sed -i -E 's/^[#[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$cc"
    else
        echo 'create_main_cluster = false' >>"$cc"
    fi

    STEP="install ${pkgs[*]} ($suite)"
    log "  apt-get install ${pkgs[*]}"
    in_chroot "$root" apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$LOG" 2>&1

    if [[ -n $LOCALES ]]; then
        STEP="generate locales $LOCALES ($suite)"
        log "  generating locales: $LOCALES"
        in_chroot "$root" apt-get install -y --no-install-recommends locales >>"$LOG" 2>&1
        local l
        for l in $LOCALES; do
            # exit 1 = "created, with warnings" (-c); anything else is fatal
            in_chroot "$root" localedef -i "${l%%.*}" -c -f "${l##*.}" "$l" >>"$LOG" 2>&1 ||
                [[ $? -eq 1 ]] || die "localedef $l failed"
        done
    fi

    STEP="strip chroot ($suite)"
    # Drop any cluster that got created anyway.
    local c
    for c in "$root"/etc/postgresql/*/* "$root"/var/lib/postgresql/*/*; do
        [[ -e $c ]] || continue
        local ver=${c%/*}; ver=${ver##*/}
        log "  removing cluster $ver/${c##*/}"
        in_chroot "$root" pg_dropcluster "$ver" "${c##*/}" >>"$LOG" 2>&1 || rm -rf "$c"
    done
    in_chroot "$root" apt-get clean >>"$LOG" 2>&1
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/* \
        "$root"/etc/ssl/private/ssl-cert-snakeoil.key \
        "$root"/etc/ssl/certs/ssl-cert-snakeoil.pem
    find "$root/var/log" -type f -exec truncate -s 0 {} +
    # Same trimming for files debootstrap installed before the dpkg excludes.
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    # Host files copied by debootstrap; Docker supplies its own.
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    [[ -f $root/etc/machine-id ]] && : >"$root/etc/machine-id"

    local full
    full=$(in_chroot "$root" "/usr/lib/postgresql/$major/bin/postgres" --version | awk '{print $3}')
    umount "$root/proc"

    STEP="docker import $image"
    log "  docker import -> $image (PostgreSQL $full)"
    tar -C "$root" --numeric-owner \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . |
        docker import \
            --change "ENV PATH=/usr/lib/postgresql/$major/bin:$CHROOT_PATH" \
            --change 'CMD ["postgres"]' \
            --change "LABEL org.restorecheck.pg-major=$major" \
            --change "LABEL org.restorecheck.pg-version=$full" \
            --change "LABEL org.restorecheck.pg-package-version=$cand" \
            --change "LABEL org.restorecheck.debian-suite=$suite" \
            --message "restorecheck PostgreSQL $full on Debian $suite (build-images.sh)" \
            - "$image" >>"$LOG"

    rm -rf --one-file-system "$tmp"
    LOG=""

    verify_one "$major"
    # --force: drop the image this one replaced, unless something still uses it.
    if [[ -n $old_id && $old_id != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
        docker image rm "$old_id" >/dev/null 2>&1 || true
    fi
    local dt=$((SECONDS - t0))
    log "$image: built in $(fmt_secs $dt)"
    RESULTS+=("$image: built in $(fmt_secs $dt)")
}

# ---------------------------------------------------------------- verify
verify_one() {
    local major=$1 image="$IMAGE_REPO:$1" out
    STEP="verify $image"

    out=$(docker run --rm "$image" postgres --version)
    [[ $out =~ \(PostgreSQL\)\ $major(\.|$) ]] ||
        die "$image: 'postgres --version' printed '$out', expected major $major"
    log "  postgres --version: $out"

    out=$(docker run --rm "$image" pg_basebackup --version)
    [[ $out =~ \(PostgreSQL\)\ $major(\.|$) ]] ||
        die "$image: 'pg_basebackup --version' printed '$out'"
    log "  pg_basebackup --version: $out"

    out=$(docker run --rm "$image" id postgres) ||
        die "$image: user postgres does not exist"
    log "  id postgres: $out"

    out=$(docker image inspect -f '{{index .Config.Labels "org.restorecheck.pg-major"}}' "$image")
    [[ $out == "$major" ]] || die "$image: label org.restorecheck.pg-major is '$out'"

    # Smoke test: initdb, start, query, stop as the postgres user.
    out=$(docker run --rm --user postgres "$image" sh -ec '
        initdb -D /tmp/d -A trust >/dev/null
        pg_ctl -D /tmp/d -o "-k /tmp -c listen_addresses=" -l /tmp/log -w start >/dev/null
        psql -h /tmp -d postgres -Atc "select current_setting(\$\$server_version_num\$\$)"
        pg_ctl -D /tmp/d -w stop >/dev/null') ||
        die "$image: initdb/start smoke test failed"
    [[ $out == "$major"* ]] || die "$image: smoke test returned '$out'"
    log "  smoke test (initdb/start/psql/stop): ok, server_version_num=$out"
}

# ---------------------------------------------------------------- main
while [[ $# -gt 0 ]]; do
    case $1 in
        -f|--force) FORCE=1 ;;
        --refresh-base) REFRESH_BASE=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            [[ -n ${SUITE_FOR[$1]:-} ]] ||
                die "unsupported version '$1' (supported: ${!SUITE_FOR[*]})"
            VERSIONS+=("$1") ;;
    esac
    shift
done
[[ ${#VERSIONS[@]} -gt 0 ]] || VERSIONS=("${DEFAULT_VERSIONS[@]}")

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap/chroot/mount)"
export DEBIAN_FRONTEND=noninteractive
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine"
command -v debootstrap >/dev/null ||
    die "debootstrap not found: apt-get update && apt-get install -y debootstrap"

MIRROR=${MIRROR:-$(detect_uri debian)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(detect_uri debian-security)}
SECURITY_MIRROR=${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}
log "mirror $MIRROR, security $SECURITY_MIRROR, versions: ${VERSIONS[*]}"

RESULTS=()
T_ALL=$SECONDS
for v in "${VERSIONS[@]}"; do
    build_one "$v"
done
STEP="done"

log "summary (total $(fmt_secs $((SECONDS - T_ALL)))):"
for r in "${RESULTS[@]}"; do log "  $r"; done
docker image ls "$IMAGE_REPO"
