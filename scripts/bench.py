#!/usr/bin/env python3
"""Benchmark relayctl plan/show/apply against a real local redis-server holding 10,000 flags.

    scripts/bench.sh            # builds the release binary, then runs this

Starts its own redis-server on a free loopback port in a temp dir and removes everything after.
Each case runs the whole relayctl process several times; reported: median and min wall time, and
the peak resident memory of the relayctl process.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "relayctl")
TOTAL = 10_000
PREFIX = "launchdarkly"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flag(i, on=True, version=7):
    key = f"flag-{i:05d}"
    return key, json.dumps({
        "key": key, "on": on, "prerequisites": [], "targets": [{"variation": 0, "values": ["alice", "bob"]}],
        "contextTargets": [], "rules": [{"id": f"r-{i}", "clauses": [{"attribute": "country", "op": "in",
        "values": ["NZ", "AU"], "negate": False}], "variation": 0, "trackEvents": False}],
        "fallthrough": {"variation": 0}, "offVariation": 1, "variations": [True, False], "clientSide": False,
        "salt": f"salt-{i}", "trackEvents": False, "trackEventsFallthrough": False,
        "debugEventsUntilDate": None, "version": version, "deleted": False,
    })


def seed(r, n):
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        k, v = flag(i)
        pipe.hset(f"{PREFIX}:features", k, v)
    pipe.set(f"{PREFIX}:$inited", "")
    pipe.execute()


def overrides(url, changes, journal):
    lines = ["[[store]]", 'name = "relay-redis"', 'type = "redis"', f'url = "{url}"', "",
             "[journal]", f'path = "{journal}"', "", "[overrides.default.production]"]
    lines += [f"flag-{i:05d} = {{ on = false, reason = \"bench\" }}" for i in range(changes)]
    return "\n".join(lines) + "\n"


# Peak memory comes from GNU time: the rusage of a child forked from this Python process would
# count Python's own memory from before the exec.
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def run(args, cwd):
    rss_file = os.path.join(cwd, "rss.txt")
    cmd = [BIN] + args
    if GNU_TIME:
        cmd = [GNU_TIME, "-f", "%M", "-o", rss_file] + cmd
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"relayctl {' '.join(args)} exited {p.returncode}:\n{p.stderr.decode()}")
    rss = int(open(rss_file).read().split()[-1]) / 1024 if GNU_TIME else float("nan")
    return wall, rss  # seconds, MiB


def report(name, samples, target):
    walls = [w for w, _ in samples]
    rss = max(m for _, m in samples)
    print(f"| {name} | {statistics.median(walls) * 1000:.0f} ms | {min(walls) * 1000:.0f} ms | {rss:.0f} MiB | {target} |")


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run scripts/bench.sh (it builds it)")
    work = tempfile.mkdtemp(prefix="relayctl-bench-")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(200):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        seed(r, TOTAL)
        url = f"redis://127.0.0.1:{port}"
        env_note = f"{os.cpu_count()} cores, redis-server on loopback, {TOTAL} flags stored"
        print(f"relayctl {subprocess.check_output([BIN, '--version']).decode().split()[-1]}; {env_note}\n")
        print("| case | median wall | min wall | peak RSS | target |")
        print("|---|---|---|---|---|")
        for changes, target in [(1_000, ""), (10_000, "< 200 ms")]:
            cfg = os.path.join(work, f"plan-{changes}.toml")
            with open(cfg, "w") as f:
                f.write(overrides(url, changes, os.path.join(work, "journal-plan")))
            report(f"plan, {changes:,} changes", [run(["-c", cfg, "plan"], work) for _ in range(7)], target)
        # show reads every flag of the environment (one HGETALL) and streams a line per flag.
        for args, name in [(["show"], "show, 10,000 flags, all declared"),
                           (["show", "--json"], "show --json, 10,000 flags, all declared")]:
            cfg = os.path.join(work, "plan-10000.toml")
            report(name, [run(["-c", cfg] + args, work) for _ in range(7)], "< 1 s")
        cfg = os.path.join(work, "plan-1000.toml")
        report("show default/production, 10,000 flags, 1,000 declared",
               [run(["-c", cfg, "show", "default/production"], work) for _ in range(7)], "< 1 s")
        cfg = os.path.join(work, "apply.toml")
        journal = os.path.join(work, "journal")
        with open(cfg, "w") as f:
            f.write(overrides(url, 1_000, journal))
        samples = []
        for _ in range(3):
            seed(r, 1_000)
            shutil.rmtree(journal, ignore_errors=True)
            samples.append(run(["-c", cfg, "apply", "--auto-approve"], work))
            commits = int(subprocess.check_output(["git", "-C", journal, "rev-list", "--count", "HEAD"]))
            assert commits == 1_001, f"expected 1,000 journal commits + the initial one, got {commits}"
        report("apply, 1,000 changes + 1,000 journal commits", samples, "< 3 s")
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
