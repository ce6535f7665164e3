#!/usr/bin/env bash
# Fresh machine → the whole test suite against real PostgreSQL and real pg_basebackup backups.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --exclude restorecheck-py
