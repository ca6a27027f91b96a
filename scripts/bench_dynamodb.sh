#!/usr/bin/env bash
# Benchmark (not a test): plan and apply of N flag changes (default 1000) on DynamoDB, served
# locally by moto, and the same on three stores at once (2 Redis + DynamoDB).
#
# Starts its own moto_server and redis-servers on free loopback ports, seeds N flags into each,
# times the release binary (hyperfine when installed, else /usr/bin/time), and cleans up.
# moto is a single-threaded Python server: real DynamoDB answers far faster, so read these
# numbers as an upper bound dominated by the server.
#
#   scripts/bench_dynamodb.sh            # N=1000
#   N=200 scripts/bench_dynamodb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}

for tool in moto_server redis-server python3; do
  command -v "$tool" >/dev/null || { echo "bench_dynamodb.sh: $tool is missing (scripts/test.sh installs it)" >&2; exit 1; }
done
cargo build --release --locked --quiet
bin="$PWD/target/release/relayctl"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench_dynamodb.sh: nothing listens on port $1" >&2
  exit 1
}

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export RELAYCTL_AUTHOR="Bench <bench@example.com>" NO_COLOR=1

moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
redis_ports=()
for _ in 1 2; do
  p=$(free_port)
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  pids+=($!)
  redis_ports+=("$p")
done
wait_port "$moto_port"
for p in "${redis_ports[@]}"; do wait_port "$p"; done
endpoint="http://127.0.0.1:$moto_port"

# Seeds N flags (all on, version 1) into a fresh table and both Redis servers, as Relay would.
seed() {
  python3 - "$N" "$endpoint" "$1" "${redis_ports[@]}" <<'PY'
import json, sys
import boto3, redis
n, endpoint, table, *redis_ports = sys.argv[1], sys.argv[2], sys.argv[3], *sys.argv[4:]
prefix = "ld:default:production"
def flag(i):
    return {"key": f"flag-{i:05}", "on": True, "prerequisites": [], "targets": [], "contextTargets": [],
            "rules": [], "fallthrough": {"variation": 0}, "offVariation": 1, "variations": [True, False],
            "clientSide": False, "salt": f"salt-{i}", "trackEvents": False, "trackEventsFallthrough": False,
            "debugEventsUntilDate": None, "version": 1, "deleted": False}
flags = [flag(i) for i in range(int(n))]
db = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
db.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "namespace", "KeyType": "HASH"}, {"AttributeName": "key", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "namespace", "AttributeType": "S"}, {"AttributeName": "key", "AttributeType": "S"}])
with boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1").Table(table).batch_writer() as w:
    for f in flags:
        w.put_item(Item={"namespace": f"{prefix}:features", "key": f["key"], "version": 1, "item": json.dumps(f)})
    w.put_item(Item={"namespace": f"{prefix}:$inited", "key": f"{prefix}:$inited"})
for port in redis_ports:
    r = redis.Redis(port=int(port))
    r.delete(f"{prefix}:features")
    r.hset(f"{prefix}:features", mapping={f["key"]: json.dumps(f) for f in flags})
    r.set(f"{prefix}:$inited", "")
PY
}

# Writes an overrides file declaring all N flags off, for the given [[store]] blocks.
overrides() {
  local file=$1 stores=$2
  { printf '%s\n[journal]\npath = "journal-%s"\n\n[overrides.default.production]\n' "$stores" "$(basename "$file" .toml)"
    for i in $(seq 0 $((N - 1))); do printf 'flag-%05d = false\n' "$i"; done
  } >"$file"
}

ddb_store() {
  printf '[[store]]\nname = "relay-ddb"\ntype = "dynamodb"\ntable = "%s"\nendpoint_url = "%s"\nprefix = "ld:{project}:{environment}"\n\n' "$1" "$endpoint"
}
redis_stores() {
  printf '[[store]]\nname = "redis-a"\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\nprefix = "ld:{project}:{environment}"\n\n' "${redis_ports[0]}"
  printf '[[store]]\nname = "redis-b"\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\nprefix = "ld:{project}:{environment}"\n\n' "${redis_ports[1]}"
}

# Times one command (one run: apply changes state, so it cannot simply be repeated).
measure() {
  local label=$1
  shift
  if command -v hyperfine >/dev/null; then
    hyperfine --runs 1 --style basic --command-name "$label" "$*" 2>&1 | grep -E 'Time|±' || true
  else
    /usr/bin/time -f "$label: %e s wall, %U s user, %M KB max RSS" "$@" >/dev/null 2>"$work/err" || {
      cat "$work/err" >&2
      exit 1
    }
    tail -n 1 "$work/err"
  fi
}

cd "$work"
echo "relayctl $("$bin" --version 2>/dev/null | awk '{print $2}'), N=$N flag changes, moto $(python3 -c 'import moto; print(moto.__version__)')"

echo "== DynamoDB only (moto) =="
seed t1
overrides ddb.toml "$(ddb_store t1)"
measure "plan  (DynamoDB, $N changes)" "$bin" -c ddb.toml plan
measure "apply (DynamoDB, $N changes)" "$bin" -c ddb.toml apply --auto-approve
measure "plan  (DynamoDB, no change) " "$bin" -c ddb.toml plan

echo "== 2 Redis + DynamoDB =="
seed t2
overrides three.toml "$(redis_stores)"$'\n\n'"$(ddb_store t2)"
measure "plan  (3 stores, $N changes)" "$bin" -c three.toml plan
measure "apply (3 stores, $N changes)" "$bin" -c three.toml apply --auto-approve
measure "plan  (3 stores, no change) " "$bin" -c three.toml plan

echo "== 2 Redis only (baseline: the journal's share) =="
seed t3
overrides redis.toml "$(redis_stores)"
measure "plan  (2 Redis, $N changes)  " "$bin" -c redis.toml plan
measure "apply (2 Redis, $N changes)  " "$bin" -c redis.toml apply --auto-approve
