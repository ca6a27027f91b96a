#!/usr/bin/env python3
"""Kill apply at random moments, rerun it, and check that nothing was lost or doubled.

    cargo build --release && python3 scripts/kill_apply.py [SEED]   # TRIALS=20 N=4000 by default
    KIND=keys python3 scripts/kill_apply.py [SEED]                  # plain Redis keys instead

Each trial seeds N flags (or N plain keys holding "A") into a redis-server on a free loopback
port, starts `relayctl apply` turning all of them off (setting every key to "B"), SIGKILLs it 1-3
times at random moments (each restart resumes), reruns it to completion, then checks: every item
written exactly once (a flag's version 7 -> 8, off; a key holds "B"), one journal commit per item,
`git fsck --full --strict` clean, `git status` clean, and `plan` finds nothing to do. Prints one
line per trial and exits 1 if any trial failed. Not part of the test suite: a trial takes seconds
and its kill points are random (the suite's kill tests are deterministic).
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (servers, seeding and the release binary, shared with the benchmarks)
import redis  # noqa: E402

N = int(os.environ.get("N", "4000"))
TRIALS = int(os.environ.get("TRIALS", "20"))
KEYS = os.environ.get("KIND", "flags") == "keys"
KEY_PREFIX = "kill:"


def seed_and_declare(r, port, journal):
    """Seeds the store and returns the overrides file's text."""
    if not KEYS:
        bench.seed(r, N)
        return bench.overrides(bench.redis_store(f"redis://127.0.0.1:{port}"), N, journal)
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i in range(N):
        pipe.set(f"{KEY_PREFIX}key-{i:05d}", "A")
    pipe.execute()
    lines = ['[[store]]', 'name = "k"', 'type = "redis-keys"', f'url = "redis://127.0.0.1:{port}"',
             f'prefix = "{KEY_PREFIX}"', "", "[journal]", f'path = "{journal}"', "", "[keys.k]"]
    lines += [f'key-{i:05d} = {{ value = "B", reason = "kill" }}' for i in range(N)]
    return "\n".join(lines) + "\n"


def stored(r):
    """How many items hold each state: (version, on) for flags, the value for keys."""
    counts = {}
    if KEYS:
        values = r.mget([f"{KEY_PREFIX}key-{i:05d}" for i in range(N)])
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        return counts
    for raw in r.hgetall(f"{bench.PREFIX}:features").values():
        f = json.loads(raw)
        counts[(f["version"], f["on"])] = counts.get((f["version"], f["on"]), 0) + 1
    return counts


def git(journal, *args):
    return subprocess.run(["git", "-C", journal, *args], capture_output=True, text=True)


def trial(r, port, rng):
    work = tempfile.mkdtemp()
    journal = os.path.join(work, "journal")
    cfg = os.path.join(work, "overrides.toml")
    with open(cfg, "w") as f:
        f.write(seed_and_declare(r, port, journal))
    apply = [bench.BIN, "-c", cfg, "apply", "--auto-approve"]
    kills = []
    for _ in range(rng.randint(1, 3)):
        p = subprocess.Popen(apply, cwd=work, env=bench.ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.02, 1.2)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills.append(round(delay, 2))
    rerun = subprocess.run(apply, cwd=work, env=bench.ENV, capture_output=True, text=True)
    versions = stored(r)
    subjects = git(journal, "log", "--format=%s").stdout.splitlines()[:-1]  # without the first
    fsck = git(journal, "fsck", "--full", "--strict", "--no-progress")
    status = git(journal, "status", "--porcelain").stdout
    plan = subprocess.run([bench.BIN, "-c", cfg, "plan"], cwd=work, env=bench.ENV, capture_output=True,
                          text=True)
    problems = []
    if rerun.returncode != 0:
        problems.append(f"rerun exited {rerun.returncode}: {rerun.stderr[-500:]}")
    if versions != ({b"B": N} if KEYS else {(8, False): N}):
        problems.append(f"stored {versions}")
    if len(subjects) != N or len(set(subjects)) != N:
        problems.append(f"{len(subjects)} commits, {len(set(subjects))} distinct, for {N} flags")
    if fsck.returncode != 0 or fsck.stderr.strip():
        problems.append(f"git fsck: {fsck.stderr.strip()[:300]}")
    if status:
        problems.append(f"git status: {status[:300]!r} / rerun said: {rerun.stderr[:300]}")
    if "Plan: 0 to change" not in plan.stdout:
        problems.append(f"plan: {plan.stdout[-300:]}")
    return kills, problems


def main():
    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    port = bench.free_port()
    home = tempfile.mkdtemp()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, cwd=home)
    failed = 0
    try:
        bench.wait_port(port, "redis-server")
        r = redis.Redis(port=port)
        for n in range(TRIALS):
            kills, problems = trial(r, port, rng)
            failed += bool(problems)
            print(f"trial {n}: killed after {kills} s: {'; '.join(problems) or 'OK'}", flush=True)
    finally:
        server.kill()
    print(f"{TRIALS - failed} of {TRIALS} trials OK ({'keys' if KEYS else 'flags'}, N={N})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
