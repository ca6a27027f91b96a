#!/usr/bin/env python3
"""Benchmark relayctl against real local servers and print ONE table (issue 9's rows).

    scripts/bench.sh            # builds the release binary, then runs this
    QUICK=1 scripts/bench.sh    # smaller sizes, under 3 minutes
    RELAYCTL_BIN=/path/to/relayctl python3 scripts/bench.py   # another build (e.g. before a change)

Rows: plan of 10,000 changes; apply of 1,000 / 5,000 / 10,000 / 20,000 changes (wall time and peak
RSS, redis-server on loopback); `log` over the journal the largest apply made, then an apply of 10
changes on that journal (a run costs what it changes, not what the journal holds); sync of 1,000
commits over 1,000 flags against the fake LaunchDarkly (`cargo bench --bench sync`); apply of 1,000
changes through a TCP proxy adding 20 ms each way (Redis, and DynamoDB served by moto, next to
moto's own time for the same requests made 32 at a time through the same proxy); relayCommander
turning the same 10 flags off, when it is installed (RELAYCOMMANDER=/path/to/rc; the script says
how to install it).

Every server runs on a free loopback port in a temp dir, removed afterwards.
"""

import asyncio
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("RELAYCTL_BIN", os.path.join(TARGET_DIR, "release", "relayctl"))
QUICK = os.environ.get("QUICK") == "1"
APPLY_SIZES = [1_000, 5_000] if QUICK else [1_000, 5_000, 10_000, 20_000]
PLAN_SIZE = 10_000
RTT_CHANGES = 1_000
DELAY = 0.020  # seconds added each way by the latency proxy
RC_FLAGS = 10
PREFIX = "launchdarkly"
RC_PREFIX = "ld:default:production"  # relayCommander's hard-coded ld:<project>:<env>
TARGETS = {
    "plan": "< 100 ms", 1_000: "<= 0.5 s", 5_000: "<= 2.5 s", 10_000: "<= 5 s, < 150 MiB",
    20_000: "<= 10 s, < 200 MiB", "log": "< 1 s", "sync": "< 2 s", "redis-rtt": "< 2 s",
    "ddb-rtt": "< 10 s, <= 2x moto", "rc": "ratio >= 1,000x",
}
AWS = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
           AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
ENV = dict(os.environ, RELAYCTL_AUTHOR="Bench <bench@example.com>", NO_COLOR="1", **AWS)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"bench: {what} does not listen on port {port}")


def flag(i, on=True, version=7):
    key = f"flag-{i:05d}"
    return key, {
        "key": key, "on": on, "prerequisites": [], "targets": [{"variation": 0, "values": ["alice", "bob"]}],
        "contextTargets": [], "rules": [{"id": f"r-{i}", "clauses": [{"attribute": "country", "op": "in",
        "values": ["NZ", "AU"], "negate": False}], "variation": 0, "trackEvents": False}],
        "fallthrough": {"variation": 0}, "offVariation": 1, "variations": [True, False], "clientSide": False,
        "salt": f"salt-{i}", "trackEvents": False, "trackEventsFallthrough": False,
        "debugEventsUntilDate": None, "version": version, "deleted": False,
    }


def seed(r, n, prefix=PREFIX):
    r.delete(f"{prefix}:features")
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        k, v = flag(i)
        pipe.hset(f"{prefix}:features", k, json.dumps(v))
        if i % 5_000 == 4_999:
            pipe.execute()
    pipe.set(f"{prefix}:$inited", "")
    pipe.execute()


def overrides(store, changes, journal):
    lines = [store, "", "[journal]", f'path = "{journal}"', "", "[overrides.default.production]"]
    lines += [f"flag-{i:05d} = {{ on = false, reason = \"bench\" }}" for i in range(changes)]
    return "\n".join(lines) + "\n"


def redis_store(url, prefix=None):
    extra = f'\nprefix = "{prefix}"' if prefix else ""
    return f'[[store]]\nname = "relay-redis"\ntype = "redis"\nurl = "{url}"{extra}'


# Peak memory comes from GNU time: the rusage of a child forked from this Python process would
# count Python's own memory from before the exec.
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def run(args, cwd, binary=BIN):
    rss_file = os.path.join(cwd, "rss.txt")
    cmd = [binary] + args
    if GNU_TIME:
        cmd = [GNU_TIME, "-f", "%M", "-o", rss_file] + cmd
    # Earlier rows' files still being written back would otherwise slow this one's disk.
    os.sync()
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr.decode()[-3000:]}")
    rss = int(open(rss_file).read().split()[-1]) / 1024 if GNU_TIME else float("nan")
    return wall, rss  # seconds, MiB


def fmt(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def row(work, wall, rss=None, target="", other=None, note=""):
    rss_text = f"{rss:.0f} MiB" if rss is not None else ""
    other_text = fmt(other) if other is not None else ""
    ratio = f"{other / wall:,.0f}x" if other is not None and wall else ""
    print(f"| {work} | {fmt(wall)} | {rss_text} | {target} | {other_text} | {ratio} | {note} |", flush=True)


class LatencyProxy:
    """A loopback TCP proxy in front of 127.0.0.1:`upstream` that delays every chunk by `delay`
    seconds in each direction (latency, not bandwidth: chunks keep their order and overlap)."""

    def __init__(self, upstream, delay=DELAY):
        self.upstream, self.delay, self.port = upstream, delay, free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_until_complete(server.serve_forever())

    async def _client(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader, writer):
        queue = asyncio.Queue()

        async def pump():
            while True:
                try:
                    data = await reader.read(1 << 16)
                except OSError:
                    data = b""
                await queue.put((self.loop.time() + self.delay, data))
                if not data:
                    return

        async def deliver():
            while True:
                due, data = await queue.get()
                if due > self.loop.time():
                    await asyncio.sleep(due - self.loop.time())
                try:
                    if not data:
                        writer.close()
                        return
                    writer.write(data)
                    await writer.drain()
                except OSError:
                    return

        await asyncio.gather(pump(), deliver())


def bench_plan_and_apply(work, r, url):
    cfg = os.path.join(work, "plan.toml")
    seed(r, PLAN_SIZE)
    with open(cfg, "w") as f:
        f.write(overrides(redis_store(url), PLAN_SIZE, os.path.join(work, "journal-plan")))
    samples = [run(["-c", cfg, "plan"], work) for _ in range(5)]
    row(f"plan, {PLAN_SIZE:,} changes over {PLAN_SIZE:,} flags", statistics.median(w for w, _ in samples),
        max(m for _, m in samples), TARGETS["plan"], note="median of 5")
    journal = None
    for n in APPLY_SIZES:
        seed(r, n)
        journal = os.path.join(work, f"journal-{n}")
        cfg = os.path.join(work, f"apply-{n}.toml")
        with open(cfg, "w") as f:
            f.write(overrides(redis_store(url), n, journal))
        wall, rss = run(["-c", cfg, "apply", "--auto-approve"], work)
        commits = int(subprocess.check_output(["git", "-C", journal, "rev-list", "--count", "HEAD"]))
        assert commits == n + 1, f"expected {n} journal commits + the initial one, got {commits}"
        row(f"apply, {n:,} changes", wall, rss, TARGETS.get(n, ""))
    samples = [run(["-c", cfg, "log"], work) for _ in range(3)]
    row(f"`log` over {APPLY_SIZES[-1]:,} commits", statistics.median(w for w, _ in samples),
        max(m for _, m in samples), TARGETS["log"], note="median of 3")
    # A run's cost follows its changes, not the journal's size: 10 flags turned back on there.
    text = open(cfg).read()
    for i in range(10):
        text = text.replace(f"flag-{i:05d} = {{ on = false", f"flag-{i:05d} = {{ on = true")
    with open(cfg, "w") as f:
        f.write(text)
    wall, rss = run(["-c", cfg, "apply", "--auto-approve"], work)
    row(f"apply, 10 changes on that journal ({APPLY_SIZES[-1]:,} flags declared)", wall, rss,
        note="includes planning all declared flags")


def bench_sync():
    p = subprocess.run(["cargo", "bench", "--locked", "--quiet", "--bench", "sync"], cwd=ROOT, env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = next((l for l in p.stdout.splitlines() if l.startswith("sync:")), None)
    if p.returncode != 0 or line is None:
        print(f"| sync, 1,000 commits over 1,000 flags | failed | | {TARGETS['sync']} | | | "
              f"`cargo bench --bench sync` exited {p.returncode} |", flush=True)
        return
    wall = float(line.split(" in ")[1].split(" s wall")[0])
    row("sync, 1,000 commits over 1,000 flags (fake LD)", wall, None, TARGETS["sync"])


def bench_redis_rtt(work, r, port):
    proxy = LatencyProxy(port)
    seed(r, RTT_CHANGES)
    cfg = os.path.join(work, "rtt-redis.toml")
    with open(cfg, "w") as f:
        f.write(overrides(redis_store(f"redis://127.0.0.1:{proxy.port}"), RTT_CHANGES,
                          os.path.join(work, "journal-rtt-redis")))
    wall, rss = run(["-c", cfg, "apply", "--auto-approve"], work)
    row(f"apply, {RTT_CHANGES:,} changes, Redis +{DELAY * 1000:.0f} ms each way", wall, rss, TARGETS["redis-rtt"])


def bench_dynamodb_rtt(work):
    if shutil.which("moto_server") is None:
        print("| apply, DynamoDB (moto) | skipped | | | | | moto_server is missing: pip install 'moto[server]' |")
        return
    import boto3
    os.environ.update(AWS)  # moto's fake credentials, for boto3 here too
    port = free_port()
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "moto_server")
        proxy = LatencyProxy(port)
        db = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        db.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "namespace", "KeyType": "HASH"},
                                   {"AttributeName": "key", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "namespace", "AttributeType": "S"},
                                              {"AttributeName": "key", "AttributeType": "S"}])
        table = boto3.resource("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").Table("t")
        with table.batch_writer() as w:
            for i in range(RTT_CHANGES):
                k, v = flag(i)
                w.put_item(Item={"namespace": "features", "key": k, "version": 7, "item": json.dumps(v)})
            w.put_item(Item={"namespace": "$inited", "key": "$inited"})
        cfg = os.path.join(work, "rtt-ddb.toml")
        store = f'[[store]]\nname = "relay-ddb"\ntype = "dynamodb"\ntable = "t"\nendpoint_url = "http://127.0.0.1:{proxy.port}"'
        with open(cfg, "w") as f:
            f.write(overrides(store, RTT_CHANGES, os.path.join(work, "journal-rtt-ddb")))
        wall, rss = run(["-c", cfg, "apply", "--auto-approve"], work)
        # moto's own time for the same requests (a GetItem and a conditional PutItem per flag),
        # 32 at a time through the same proxy: the floor relayctl is judged against.
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{proxy.port}", region_name="us-east-1",
                              config=__import__("botocore.config").config.Config(max_pool_connections=32))

        def one(i):
            key = {"namespace": {"S": "features"}, "key": {"S": f"flag-{i:05d}"}}
            item = client.get_item(TableName="t", Key=key, ConsistentRead=True)["Item"]
            version = str(int(item["version"]["N"]) + 1)
            client.put_item(TableName="t", Item=dict(item, version={"N": version}),
                            ConditionExpression="#v = :v", ExpressionAttributeNames={"#v": "version"},
                            ExpressionAttributeValues={":v": item["version"]})

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(one, range(RTT_CHANGES)))
        floor = time.perf_counter() - start
        row(f"apply, {RTT_CHANGES:,} changes, DynamoDB (moto) +{DELAY * 1000:.0f} ms each way", wall, rss,
            TARGETS["ddb-rtt"], note=f"moto itself, same {2 * RTT_CHANGES:,} requests 32 at a time: {fmt(floor)} "
            f"(relayctl {wall / floor:.1f}x)")
    finally:
        moto.kill()
        moto.wait()


def relaycommander():
    rc = os.environ.get("RELAYCOMMANDER") or shutil.which("rc")
    if rc:
        help_text = subprocess.run([rc, "--help"], capture_output=True, text=True).stdout
        if "update-redis" in help_text:
            return rc
    return None


def bench_relaycommander(work, r, port, url):
    rc = relaycommander()
    samples = []
    for n in range(3):  # median of 3: one run of a 100 ms command is mostly noise
        seed(r, RC_FLAGS, RC_PREFIX)
        cfg = os.path.join(work, f"rc-{n}.toml")
        with open(cfg, "w") as f:
            f.write(overrides(redis_store(url, RC_PREFIX), RC_FLAGS, os.path.join(work, f"journal-rc-{n}")))
        samples.append(run(["-c", cfg, "apply", "--auto-approve"], work))
    wall, rss = statistics.median(w for w, _ in samples), max(m for _, m in samples)
    if rc is None:
        row(f"{RC_FLAGS} flags turned off (relayCommander column: not installed)", wall, rss, TARGETS["rc"],
            note="to compare: python3 -m venv /tmp/rc && /tmp/rc/bin/pip install relaycommander, then "
                 "RELAYCOMMANDER=/tmp/rc/bin/rc scripts/bench.sh")
        return
    seed(r, RC_FLAGS, RC_PREFIX)
    rc_dir = os.path.join(work, "rc")
    os.makedirs(rc_dir, exist_ok=True)
    env = dict(ENV, REDIS_HOSTS=f"127.0.0.1:{port}")
    start = time.perf_counter()
    for i in range(RC_FLAGS):
        subprocess.run([rc, "update-redis", "-p", "default", "-e", "production", "-f", f"flag-{i:05d}", "-s", "off"],
                       cwd=rc_dir, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs = time.perf_counter() - start
    row(f"{RC_FLAGS} flags turned off (relayctl: one apply; relayCommander: one `rc update-redis` each)", wall, rss,
        TARGETS["rc"], other=theirs)


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run scripts/bench.sh (it builds it)")
    work = tempfile.mkdtemp(prefix="relayctl-bench-")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
    try:
        wait_port(port, "redis-server")
        r = redis.Redis(port=port)
        url = f"redis://127.0.0.1:{port}"
        version = subprocess.check_output([BIN, "--version"]).decode().split()[-1]
        print(f"relayctl {version} ({BIN}); {os.cpu_count()} cores; redis-server on loopback"
              f"{'; QUICK=1: smaller sizes' if QUICK else ''}\n")
        print("| work | relayctl | peak RSS | target | relayCommander | ratio | note |")
        print("|---|---|---|---|---|---|---|")
        bench_plan_and_apply(work, r, url)
        if os.environ.get("SKIP_SYNC") != "1":
            bench_sync()
        bench_redis_rtt(work, r, port)
        bench_dynamodb_rtt(work)
        bench_relaycommander(work, r, port, url)
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
