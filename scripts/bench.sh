#!/usr/bin/env bash
# Builds the release binary and runs the benchmarks: one table with issue 9's rows (see
# scripts/bench.py). QUICK=1 for smaller sizes (under 3 minutes); RELAYCOMMANDER=/path/to/rc adds
# relayCommander's column; SKIP_SYNC=1 leaves out the sync row (it builds `cargo bench --bench sync`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
exec python3 scripts/bench.py "$@"
