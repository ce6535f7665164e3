#!/usr/bin/env bash
# Fresh machine → a restore test of a real pg_basebackup: sets up, builds, runs `restorecheck demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release -q -p restorecheck-cli -- demo "$@"
