#!/usr/bin/env bash
# The lab's test command: installs what is missing (idempotent), then runs every test against a
# real PostgreSQL cluster and a real Kafka broker that the tests start themselves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
# Every bench once, in criterion's test mode (no --bench: nothing is timed, each routine runs
# once against the real environment), so a broken bench cannot land.
if [ "$#" -eq 0 ]; then
    cargo test --workspace --locked --bench '*'
fi
