#!/usr/bin/env bash
# The lab's front door: installs what is missing (idempotent), builds every binary in release
# mode (the load generator starts the protocol services from the same directory), then runs
# `loadgen` with the given arguments, e.g. `bash scripts/lab.sh run --clients 16`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --workspace --bins --locked
exec cargo run --release --locked -q -p txlab-loadgen -- "$@"
