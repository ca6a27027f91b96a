#!/usr/bin/env bash
# Makes sure the real LaunchDarkly Relay Proxy is built, pinned, under target/tools/ (kept between
# runs: the first build takes about 1.5 minutes on a 2-core machine, later runs none), and prints
# its path on stdout.
#
# It is built from its Go module: `go install github.com/launchdarkly/ld-relay/v8@$LD_RELAY_VERSION`
# with GOBIN in target/tools/. When that module cannot be fetched, LD_RELAY_SRC may name a checkout
# of ld-relay at the same tag (its go.mod and relay/version say which); its dependencies still come
# from the Go module proxy. If neither works, the reason goes to target/tools/ld-relay-unavailable.txt
# and this exits 1: the Relay tests then FAIL with that reason (tests/cli/support/relay.rs), they
# never skip.
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
echo "scripts/ld_relay.sh: building the LaunchDarkly Relay Proxy $version into $dir (go install; about 1.5 minutes the first time)" >&2
start=$(date +%s)
if GOBIN="$dir" go install "github.com/launchdarkly/ld-relay/v8@$version" >"$log" 2>&1; then
  :
elif [ -n "${LD_RELAY_SRC:-}" ]; then
  want="${version#v}"
  grep -q "\"$want\"" "$LD_RELAY_SRC/relay/version/version.go" 2>/dev/null \
    || fail "LD_RELAY_SRC=$LD_RELAY_SRC is not ld-relay $version (relay/version/version.go does not say \"$want\")"
  echo "scripts/ld_relay.sh: the module could not be fetched ($(grep -m1 -v '^go: downloading' "$log")); building from LD_RELAY_SRC=$LD_RELAY_SRC instead" >&2
  (cd "$LD_RELAY_SRC" && GOBIN="$dir" go install .) >>"$log" 2>&1 \
    || fail "building the LaunchDarkly Relay Proxy $version from LD_RELAY_SRC=$LD_RELAY_SRC failed: $(grep -v '^go: downloading' "$log" | tail -n 3 | tr '\n' ' ')(full log: $log)"
else
  fail "go install github.com/launchdarkly/ld-relay/v8@$version failed: $(grep -v '^go: downloading' "$log" | head -n 3 | tr '\n' ' ')(full log: $log). Fix the Go module proxy access, or set LD_RELAY_SRC to a checkout of ld-relay at $version, then run scripts/test.sh again"
fi
[ -x "$bin" ] || fail "the build of the LaunchDarkly Relay Proxy $version left no $bin (log: $log)"
echo "scripts/ld_relay.sh: built $("$bin" --version 2>&1 | sed 's/^.*INFO: //') in $(( $(date +%s) - start )) s" >&2
rm -f "$unavailable"
echo "$bin"
