#!/usr/bin/env bash
# Runs relayctl's whole test suite, first installing what the tests need when it is absent:
# redis-server (Debian/Ubuntu package), moto's DynamoDB-compatible server and the LaunchDarkly
# Python server SDK (PyPI), and the LaunchDarkly Relay Proxy (built from its Go module by
# scripts/ld_relay.sh into target/tools/). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]} from the system packages" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pip_install() {
  echo "scripts/test.sh: installing $* from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
python3 -c 'import ldclient, redis, boto3' 2>/dev/null || pip_install launchdarkly-server-sdk redis boto3
command -v moto_server >/dev/null || pip_install 'moto[server]'
# pip may put scripts in a directory that is not on PATH yet (e.g. ~/.local/bin).
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin"
command -v moto_server >/dev/null || { echo "scripts/test.sh: moto_server is still not on PATH" >&2; exit 1; }

cargo test --locked "$@"

# The tests that need the real LaunchDarkly Relay Proxy (#[ignore]d in the run above) run now, when
# scripts/ld_relay.sh can build it from its Go module. When it cannot, this says so loudly, with
# the reason; each of those tests, run by hand, fails with that reason: none passes without Relay.
relay_tests=(relay:: status_cmd::status_follows status_cmd::status_watch)
if relay=$(bash scripts/ld_relay.sh); then
  RELAYCTL_LD_RELAY="$relay" cargo test --locked --test cli -- --ignored "${relay_tests[@]}"
else
  {
    echo "=================================================================================================="
    echo "scripts/test.sh: the tests that need the real LaunchDarkly Relay Proxy did NOT run:"
    echo "  ${relay_tests[*]}"
    echo "because: $(cat target/tools/ld-relay-unavailable.txt 2>/dev/null)"
    echo "Once Relay builds: cargo test --test cli -- --ignored ${relay_tests[*]}"
    echo "=================================================================================================="
  } >&2
fi
