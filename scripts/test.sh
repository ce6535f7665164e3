#!/usr/bin/env bash
# Fresh machine → the whole test suite against real PostgreSQL and real pg_basebackup backups.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# PostgreSQL 13/15/17 images for the docker target's tests (cached by tag; ~4 min when new).
if docker info >/dev/null 2>&1; then
  docker/build-images.sh 13 15 17
else
  echo "test: no Docker engine reachable; the docker target's tests will fail" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --exclude restorecheck-py
