#!/usr/bin/env bash
# Fresh machine → the whole test suite against real PostgreSQL and real pg_basebackup backups.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# PostgreSQL 13/15/17 images for the docker target's tests (cached by tag; ~4 min when new).
if docker info >/dev/null 2>&1; then
  docker/build-images.sh 13 15 17
else
  echo "test: no Docker engine reachable; the docker target's tests will fail" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The core without its optional parts (object storage, encryption, docker, notify, history):
# it must build clean, and its unit tests pass, with every feature off.
cargo clippy -p restorecheck-core --no-default-features --all-targets -- -D warnings
cargo test -p restorecheck-core --no-default-features --lib
cargo test --workspace --exclude restorecheck-py
# The docker target with nothing on the host but Docker and restorecheck: every source kind x
# PostgreSQL 13/15/17, good and damaged, restored in restorecheck/tools:N from a mount namespace
# without the host's PostgreSQL and backup tools, compared with target local (~5 min; builds
# the tool images first, cached by tag). RESTORECHECK_SKIP_ISOLATED=1 skips it.
if [ "${RESTORECHECK_SKIP_ISOLATED:-}" != 1 ] && docker info >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  scripts/test-docker-isolated.sh
else
  echo "test: skipping scripts/test-docker-isolated.sh (needs root and a Docker engine)" >&2
fi

# ---- Python binding (restorecheck-py) -------------------------------------------------------
# Builds the abi3 wheel with maturin into a virtualenv, type-checks the package, tests and example
# with mypy --strict, then runs the pytest suite against real PostgreSQL 15 backups. Its summary
# line ("N passed in …") closes the run.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "test: installing python3-venv for the Python binding's tests" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
PY_VENV="${RESTORECHECK_VENV:-/var/tmp/restorecheck-venv}"
[ -x "$PY_VENV/bin/python" ] || python3 -m venv "$PY_VENV"
"$PY_VENV/bin/pip" install -q --disable-pip-version-check "maturin>=1.9,<2" "pytest>=7" "mypy>=1.5"
# A dev-profile build shares the compiled dependencies of the cargo steps above.
PATH="$PY_VENV/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" "$PY_VENV/bin/pip" install -q --disable-pip-version-check \
  --no-build-isolation --force-reinstall --no-deps ./restorecheck-py
(cd restorecheck-py && "$PY_VENV/bin/mypy" --strict --cache-dir "$PY_VENV/mypy-cache" \
  python/restorecheck tests ../examples/ops_script.py)
RESTORECHECK_CLI="$PWD/${CARGO_TARGET_DIR:-target}/debug/restorecheck"
case "${CARGO_TARGET_DIR:-}" in /*) RESTORECHECK_CLI="$CARGO_TARGET_DIR/debug/restorecheck" ;; esac
[ -x "$RESTORECHECK_CLI" ] || RESTORECHECK_CLI=""
(cd restorecheck-py && RESTORECHECK_CLI="$RESTORECHECK_CLI" "$PY_VENV/bin/python" -m pytest -p no:cacheprovider -q tests)
# ---- end of the Python binding's tests ------------------------------------------------------
