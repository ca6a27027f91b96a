#!/usr/bin/env bash
# Makes sure the real LaunchDarkly Relay Proxy is built, pinned, under target/tools/ (kept between
# runs: the first build takes 1.5 to 4 minutes on a new 2-core machine, later runs none), and prints
# its path on stdout.
#
# It is built from its Go module: `go install github.com/launchdarkly/ld-relay/v8@$LD_RELAY_VERSION`
# with GOBIN in target/tools/. When that module cannot be fetched, it builds the same tag's source
# from LD_RELAY_SRC, by default third_party/ld-relay (see its README: the module proxy refuses the
# module but serves its dependencies), after checking relay/version says that version. If neither
# works, the reason goes to target/tools/ld-relay-unavailable.txt and this exits 1: the Relay tests
# then FAIL with that reason (tests/cli/support/relay.rs), they never skip.
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
elif [ -f "${LD_RELAY_SRC:=third_party/ld-relay}/go.mod" ]; then
  want="${version#v}"
  grep -q "\"$want\"" "$LD_RELAY_SRC/relay/version/version.go" 2>/dev/null \
    || fail "$LD_RELAY_SRC is not ld-relay $version (relay/version/version.go does not say \"$want\")"
  echo "scripts/ld_relay.sh: the module could not be fetched ($(grep -m1 -v '^go: downloading' "$log" | tr '\t' ' ')); building its source in $LD_RELAY_SRC instead" >&2
  (cd "$LD_RELAY_SRC" && GOBIN="$dir" GOFLAGS=-mod=readonly go install .) >>"$log" 2>&1 \
    || fail "building the LaunchDarkly Relay Proxy $version from $LD_RELAY_SRC failed: $(grep -v '^go: downloading' "$log" | tail -n 3 | tr '\n\t' '  ')(full log: $log)"
else
  fail "go install github.com/launchdarkly/ld-relay/v8@$version failed: $(grep -v '^go: downloading' "$log" | head -n 3 | tr '\n\t' '  ')(full log: $log). Fix the Go module proxy access, or set LD_RELAY_SRC to a checkout of ld-relay at $version, then run scripts/test.sh again"
fi
[ -x "$bin" ] || fail "the build of the LaunchDarkly Relay Proxy $version left no $bin (log: $log)"
echo "scripts/ld_relay.sh: built $("$bin" --version 2>&1 | sed 's/^.*INFO: //') in $(( $(date +%s) - start )) s" >&2
rm -f "$unavailable"
echo "$bin"
