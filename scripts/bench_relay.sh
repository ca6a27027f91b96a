#!/usr/bin/env bash
# Benchmark (not a test): the handback's blackout window with the real Relay Proxy and a
# proxy-mode SDK (tests/cli/blackout.rs): how long services serve the pre-override value after
# LaunchDarkly comes back, with `sync --wait --interval 1s` and with the default interval.
# RELAYCTL_BENCH_TRIALS (3) trials each, after an outage of RELAYCTL_BENCH_OUTAGE seconds (20).
# Needs what scripts/test.sh installs (redis-server, the Python SDK) and builds the Relay Proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
RELAYCTL_LD_RELAY="$(bash scripts/ld_relay.sh)"
export RELAYCTL_LD_RELAY
exec cargo test --locked --test cli blackout -- --ignored --nocapture --test-threads=1
