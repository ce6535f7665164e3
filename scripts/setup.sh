#!/usr/bin/env bash
# Installs what restorecheck needs on Debian/Ubuntu. Idempotent: installs only what is missing.
# Needs root (or sudo) when something is missing.
#
#   scripts/setup.sh          what `restorecheck demo` and everyday use need: PostgreSQL server
#                             binaries (with contrib, for amcheck) and gzip. scripts/demo.sh runs this.
#   scripts/setup.sh --test   also the backup tools and helpers the test suite drives for real:
#                             pgBackRest, Barman, age, gnupg, zstd/lz4, GNU time, Chromium (HTML
#                             report rendering), debootstrap (docker images), WAL-E and moto (in
#                             their own virtualenvs). scripts/test.sh runs this.
set -euo pipefail

TEST=0
case "${1:-}" in
  --test) TEST=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
if [ "$TEST" = 1 ]; then
  for tool in zstd lz4; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
  [ -x /usr/bin/time ] || need+=(time)
  # Backup tools the sources are tested against, for real.
  command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
  command -v barman >/dev/null 2>&1 || need+=(barman)
  # Encrypted backups: the tests make age- and OpenPGP-encrypted files with the real tools.
  command -v age >/dev/null 2>&1 || need+=(age)
  command -v gpg >/dev/null 2>&1 || need+=(gnupg)
  # The HTML report is checked by rendering it in headless Chromium.
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # The docker target's tests build their PostgreSQL images from a Debian root (docker/build-images.sh).
  if command -v docker >/dev/null 2>&1; then command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap); fi
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package starts a cluster on 5432; restorecheck never uses it, so leave it as it is.
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust from https://rustup.rs (or apt-get install cargo)" >&2
  exit 2
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "setup: running as root but there is no 'postgres' OS user for the server; creating one" >&2
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
# As root, restorecheck runs the restored server as a dedicated unprivileged OS user, not as the
# `postgres` user a production cluster on this host may run as (its files, its socket, its
# peer-authenticated roles stay out of reach of the restored copy).
if [ "$(id -u)" -eq 0 ] && ! id restorecheck >/dev/null 2>&1; then
  echo "setup: creating the dedicated OS user 'restorecheck' for restored servers" >&2
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin restorecheck
fi
echo "setup: PostgreSQL $(ls /usr/lib/postgresql 2>/dev/null | tr '\n' ' ')ready" >&2
[ "$TEST" = 1 ] || exit 0
# --- WAL-E for source `wale` and its tests: WAL-E 1.1.1 (its final release, from PyPI) in its own
# virtualenv, plus what it runs: lzop, pv, and daemontools' envdir. The tests expect
# /opt/restorecheck/wal-e/bin/wal-e (RESTORECHECK_WALE=/path/to/wal-e overrides).
WALE_VENV="/opt/restorecheck/wal-e"
wale_need=()
command -v lzop >/dev/null 2>&1 || wale_need+=(lzop)
command -v pv >/dev/null 2>&1 || wale_need+=(pv)
command -v envdir >/dev/null 2>&1 || wale_need+=(daemontools)
[ -x /usr/bin/python3 ] || wale_need+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || wale_need+=(python3-venv)
if [ ${#wale_need[@]} -gt 0 ]; then
  echo "setup: installing ${wale_need[*]} for WAL-E" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${wale_need[@]}" >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${wale_need[@]}" >/dev/null; }
fi
if [ ! -x "$WALE_VENV/bin/wal-e" ]; then
  echo "setup: installing WAL-E 1.1.1 into $WALE_VENV" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO /usr/bin/python3 -m venv "$WALE_VENV"
  $SUDO "$WALE_VENV/bin/pip" install -q --disable-pip-version-check wal-e==1.1.1
fi
# --- kubernetes-validate for the Kubernetes manifests in docs/kubernetes (offline schemas), in its
# own virtualenv. The tests expect /opt/restorecheck/kv/bin/kubernetes-validate
# (RESTORECHECK_KUBERNETES_VALIDATE overrides).
KV_VENV="/opt/restorecheck/kv"
if [ ! -x "$KV_VENV/bin/kubernetes-validate" ]; then
  echo "setup: installing kubernetes-validate 1.37.0 into $KV_VENV" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO /usr/bin/python3 -m venv "$KV_VENV"
  $SUDO "$KV_VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
# --- moto for the object-storage tests: an S3-compatible server (with IAM policies, so the tests can
# prove restorecheck works with a read-only user) that the tests start on loopback. It comes from
# PyPI, which this machine reaches (no container registry is reachable, so MinIO's image is not an
# option). The tests expect /opt/restorecheck/moto/bin/moto_server (RESTORECHECK_MOTO overrides).
MOTO_VENV="/opt/restorecheck/moto"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "setup: installing moto[server] 5.2.5 into $MOTO_VENV" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO /usr/bin/python3 -m venv "$MOTO_VENV"
  $SUDO "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==5.2.5" boto3
fi
