#!/usr/bin/env bash
# Makes sure the real LaunchDarkly Relay Proxy is built, pinned, under target/tools/ (kept between
# runs: the first build takes 1.5 to 4 minutes on a new 2-core machine, later runs none), and prints
# its path on stdout.
#
# It is built from its Go module only: `go install github.com/launchdarkly/ld-relay/v8@$LD_RELAY_VERSION`
# with GOBIN in target/tools/. When that fails (this project's machines get `403 Forbidden: This
# module version is not available` from the Go module proxy for every ld-relay version, though it
# serves Relay's dependencies), the reason goes to target/tools/ld-relay-unavailable.txt and this
# exits 1: scripts/test.sh then says loudly which tests did not run and why, and each of them,
# run by hand, FAILS with that reason (tests/cli/support/relay.rs); none passes without Relay.
set -uo pipefail
cd "$(dirname "$0")/.."

version="${LD_RELAY_VERSION:-v8.10.1}"
tools="$PWD/target/tools"
dir="$tools/ld-relay-$version"
bin="$dir/ld-relay"
unavailable="$tools/ld-relay-unavailable.txt"
mkdir -p "$dir"

if [ -x "$bin" ]; then
  rm -f "$unavailable"
  echo "$bin"
  exit 0
fi

fail() {
  printf '%s\n' "$1" >"$unavailable"
  echo "scripts/ld_relay.sh: $1" >&2
  exit 1
}

command -v go >/dev/null || fail "the Go toolchain is not installed, so the LaunchDarkly Relay Proxy $version cannot be built: install Go (1.21 or newer), then run scripts/test.sh again"

log="$tools/ld-relay-build.log"
echo "scripts/ld_relay.sh: building the LaunchDarkly Relay Proxy $version into $dir (go install; 1.5 to 4 minutes on a new machine)" >&2
start=$(date +%s)
if GOBIN="$dir" go install "github.com/launchdarkly/ld-relay/v8@$version" >"$log" 2>&1; then
  :
else
  fail "go install github.com/launchdarkly/ld-relay/v8@$version failed: $(grep -v '^go: downloading' "$log" | head -n 3 | tr '\n\t' '  ')(full log: $log). Fix the Go module proxy access (GOPROXY), then run scripts/test.sh again"
fi
[ -x "$bin" ] || fail "the build of the LaunchDarkly Relay Proxy $version left no $bin (log: $log)"
echo "scripts/ld_relay.sh: built $("$bin" --version 2>&1 | sed 's/^.*INFO: //') in $(( $(date +%s) - start )) s" >&2
rm -f "$unavailable"
echo "$bin"
