#!/usr/bin/env python3
"""Evaluate flags with the real LaunchDarkly Python server SDK reading a persistent store.

This is what a service in daemon mode sees: the SDK reads the store directly (use_ldd=True), with
its cache disabled so every evaluation reads what is stored right now.

    evaluate.py --store redis --url redis://127.0.0.1:PORT --prefix PREFIX --flags a,b
    evaluate.py --store dynamodb --table T --endpoint http://127.0.0.1:PORT [--prefix P] --flags a,b

Prints one JSON object: {flag: {"value": ..., "variation_index": n|null, "reason": {...}}} for
the context --context-key (kind "user", default "ctx-1"), with "<default>" as the fallback value,
so a flag the SDK cannot read or evaluate shows up as "<default>".

With --contexts FILE (a JSON array of LaunchDarkly context objects), prints a JSON array holding
that object for each context, in order: one process evaluates them all (the differential tests of
`relayctl eval`). The store is then read through the SDK's cache (it does not change during the
run), so thousands of evaluations do not each wait for the store; the cache starts empty, so it
holds what is stored when the process starts.
"""

import argparse
import json
import logging
import sys

try:
    import ldclient
    from ldclient import Context
    from ldclient.config import Config
    from ldclient.feature_store import CacheConfig
    from ldclient.integrations import DynamoDB, Redis
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"the LaunchDarkly Python SDK is missing ({e}): pip install launchdarkly-server-sdk redis boto3")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", choices=["redis", "dynamodb"], required=True)
    p.add_argument("--url")
    p.add_argument("--table")
    p.add_argument("--endpoint")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--prefix")
    p.add_argument("--flags", required=True)
    p.add_argument("--context-key", default="ctx-1")
    p.add_argument("--contexts")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    caching = CacheConfig(expiration=3600) if a.contexts else CacheConfig.disabled()
    if a.store == "redis":
        store = Redis.new_feature_store(url=a.url, prefix=a.prefix or "launchdarkly", caching=caching)
    else:
        store = DynamoDB.new_feature_store(
            a.table,
            prefix=a.prefix,
            dynamodb_opts={"endpoint_url": a.endpoint, "region_name": a.region},
            caching=caching,
        )
    config = Config(
        sdk_key="sdk-relayctl-conformance",
        feature_store=store,
        use_ldd=True,
        send_events=False,
        diagnostic_opt_out=True,
    )
    client = ldclient.LDClient(config=config, start_wait=5)
    flags = [f for f in a.flags.split(",") if f]
    if a.contexts:
        with open(a.contexts) as f:
            contexts = [Context.from_dict(c) for c in json.load(f)]
        out = [evaluate(client, flags, c) for c in contexts]
    else:
        out = evaluate(client, flags, Context.builder(a.context_key).kind("user").build())
    client.close()
    json.dump(out, sys.stdout, sort_keys=True)
    print()


def evaluate(client, flags, context) -> dict:
    out = {}
    for flag in flags:
        d = client.variation_detail(flag, context, "<default>")
        out[flag] = {"value": d.value, "variation_index": d.variation_index, "reason": d.reason}
    return out


if __name__ == "__main__":
    main()
