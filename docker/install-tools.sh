#!/bin/sh
# Installs backup tools into a restorecheck/postgres:N image while it is being built
# (docker/Dockerfile.{pgbackrest,barman,wale,tools} COPY and RUN this; do not run it on a host).
#
#   install-tools.sh TOOL...     TOOL: pgbackrest | barman | wale
#
#   pgbackrest  Debian package pgbackrest
#   barman      Debian packages barman (the `barman` command: list-backups, show-backup,
#               recover/restore on a catalog) and barman-cli (barman-wal-restore, barman-wal-archive),
#               plus rsync, which `barman recover` copies with even on one host
#   wale        WAL-E 1.1.1 in a virtualenv /opt/restorecheck/wal-e (the same path
#               scripts/setup.sh uses on a host), /usr/local/bin/wal-e linking to it, with what it
#               runs: lzop, pv, daemontools (envdir); gevent from Debian (python3-gevent)
#
# WAL-E comes from /tmp/rc-build/wheels/wal_e-1.1.1-py3-none-any.whl when the build context has
# it (docker/build-tool-images.sh puts it there: it downloads the sdist with the host's pip,
# checks its sha256 and builds the wheel, because RUN steps may not reach PyPI), else from the
# package index.
#
# Build arguments (environment): BARMAN_UID / BARMAN_GID, the uid/gid the `barman` user gets
# (Barman switches to it and must be able to read the catalog, which is owned by the uid of the
# machine that made it). Default: whatever the package picks.
set -eu

WALE_VERSION=1.1.1
WALE_VENV=/opt/restorecheck/wal-e
WHEELS=/tmp/rc-build/wheels
export DEBIAN_FRONTEND=noninteractive

pkgs=""
want_barman=0
want_wale=0
for t in "$@"; do
    case $t in
        pgbackrest) pkgs="$pkgs pgbackrest" ;;
        barman) pkgs="$pkgs barman barman-cli rsync"; want_barman=1 ;;
        wale) pkgs="$pkgs python3 python3-venv python3-gevent lzop pv daemontools"; want_wale=1 ;;
        *) echo "install-tools.sh: unknown tool '$t' (pgbackrest, barman, wale)" >&2; exit 2 ;;
    esac
done
[ -n "$pkgs" ] || { echo "install-tools.sh: name at least one tool" >&2; exit 2; }

if [ "$want_barman" = 1 ] && [ -n "${BARMAN_UID:-}" ]; then
    # Created before the package, whose postinst keeps an existing user.
    gid=${BARMAN_GID:-$BARMAN_UID}
    getent group barman >/dev/null || groupadd --system --gid "$gid" barman
    id barman >/dev/null 2>&1 || useradd --system --uid "$BARMAN_UID" --gid barman \
        --home-dir /var/lib/barman --shell /bin/bash barman
fi

NOTES=""
# apt-get install, and when a package file is missing on the mirror (404; seen for
# bullseye-security's python3-gevent 20.9.0-2+deb11u1), that package once more at the version
# of the suite's main archive, with a warning that is also written to /etc/restorecheck/tools.
apt_install() {
    log=/tmp/rc-build/apt.log
    if apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then return 0; fi
    cat "$log" >&2
    failed=$(sed -n 's|^E: Failed to fetch .*/\([^/_]*\)_[^/]*\.deb  *404.*|\1|p' "$log" | sort -u)
    [ -n "$failed" ] || return 1
    pins=""
    for p in $failed; do
        v=$(apt-cache madison "$p" | awk -F'|' '$3 !~ /-security/ { gsub(/ /, "", $2); print $2; exit }')
        [ -n "$v" ] || return 1
        echo "install-tools.sh: WARNING: $p is missing on the security mirror (404); installing $p=$v from the main archive" >&2
        pins="$pins $p=$v"
        NOTES="$NOTES $p=$v (the security update's file was missing on the mirror)"
    done
    rest=""
    for q in "$@"; do
        case " $failed " in *" $q "*) ;; *) rest="$rest $q" ;; esac
    done
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pins $rest >"$log" 2>&1 || { cat "$log" >&2; return 1; }
}

apt-get update -qq
# shellcheck disable=SC2086
apt_install $pkgs

if [ "$want_wale" = 1 ]; then
    # --system-site-packages: gevent (a C extension) from Debian, built for this image's Python.
    python3 -m venv --system-site-packages "$WALE_VENV"
    whl=$(ls "$WHEELS"/wal_e-"$WALE_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -n "$whl" ]; then
        "$WALE_VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check --no-index --no-deps "$whl"
    else
        "$WALE_VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check --no-deps "wal-e==$WALE_VERSION"
    fi
    ln -sf "$WALE_VENV/bin/wal-e" /usr/local/bin/wal-e
    # What WAL-E 1.1.1 needs at run time, checked now rather than in the first restore.
    "$WALE_VENV/bin/python" -c 'import gevent, wal_e.cmd'
fi

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/cache/debconf/*-old \
    /var/lib/dpkg/*-old /root/.cache
find /usr/share/doc -mindepth 1 -not -type d -not -name copyright -delete 2>/dev/null || true
find /usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/*
# Python byte code is written on first use by whoever runs the tool; nothing to keep.

# What is in the image, for `docker run IMAGE cat /etc/restorecheck/tools`.
mkdir -p /etc/restorecheck
{
    for t in "$@"; do
        case $t in
            pgbackrest) echo "pgbackrest $(pgbackrest version | awk '{print $2}')" ;;
            barman)
                echo "barman $(barman --version 2>&1 | awk 'NR == 1 {print $1}')"
                echo "barman-cli $(barman-wal-restore --version 2>&1 | awk '{print $NF}')"
                echo "barman-uid $(id -u barman)"
                ;;
            wale) echo "wal-e $("$WALE_VENV/bin/wal-e" version 2>&1) python $(python3 -c 'import platform; print(platform.python_version())') gevent $(python3 -c 'import gevent; print(gevent.__version__)')" ;;
        esac
    done
    [ -z "$NOTES" ] || echo "note:$NOTES"
} >/etc/restorecheck/tools
cat /etc/restorecheck/tools
