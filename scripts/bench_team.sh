#!/usr/bin/env bash
# apply of 10 changes on a journal that exists, with a journal remote on a local path (fetch +
# lease + push) versus without; median of 5. Needs redis-server and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/release/relayctl}")
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
dir=$(mktemp -d); trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
redis-server --port "$port" --save '' --daemonize yes --dir "$dir" >/dev/null; sleep 0.3
seed() { for i in $(seq 1 10); do redis-cli -p "$port" hset ld:default:production:features "f$i" \
  "{\"key\":\"f$i\",\"on\":true,\"variations\":[true,false],\"offVariation\":1,\"fallthrough\":{\"variation\":0},\"version\":$1}" >/dev/null; done; }
run() {
  local times=()
  for trial in 1 2 3 4 5; do
    w="$dir/w$1$trial"; mkdir -p "$w"; git init -q --bare "$w/remote.git"; seed 1
    { printf '[[store]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\nprefix = "ld:{project}:{environment}"\n' "$port"
      [ "$1" = remote ] && printf '[journal]\nremote = "%s"\n' "$w/remote.git"
      printf '[overrides.default.production]\n'; for i in $(seq 1 10); do echo "f$i = false"; done; } > "$w/overrides.toml"
    (cd "$w" && RELAYCTL_AUTHOR="Bench <b@x>" "$BIN" -q apply --auto-approve >/dev/null 2>&1)
    seed $((10 + trial))
    s=$(date +%s%N); (cd "$w" && RELAYCTL_AUTHOR="Bench <b@x>" "$BIN" -q apply --auto-approve >/dev/null 2>&1); e=$(date +%s%N)
    times+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}
echo "apply, 10 changes, no remote: $(run none) ms (median of 5)"
echo "apply, 10 changes, remote on a local path (fetch + lease + push): $(run remote) ms (median of 5)"
