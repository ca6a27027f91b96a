#!/usr/bin/env python3
"""A service using the real LaunchDarkly Python server SDK in proxy mode: it streams from a Relay
Proxy (base and stream URIs at Relay, events off), as most deployments do.

    LD_SDK_KEY=sdk-... proxy_sdk.py --relay http://127.0.0.1:PORT

Prints "ready initialized=<bool>" once the client started (5 s at most), then reads commands on
stdin, one a line, and answers each with one line on stdout:
    eval FLAG [CONTEXT_KEY]   {"value": ..., "variation_index": n|null, "reason": {...}}
with "<default>" as the fallback value, so a flag the SDK does not have shows up as "<default>".
The SDK key comes from the environment, never the command line.
"""

import argparse
import json
import logging
import os
import sys

try:
    import ldclient
    from ldclient import Context
    from ldclient.config import Config
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"the LaunchDarkly Python SDK is missing ({e}): pip install launchdarkly-server-sdk")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--relay", required=True)
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    config = Config(
        sdk_key=os.environ["LD_SDK_KEY"],
        base_uri=a.relay,
        stream_uri=a.relay,
        events_uri=a.relay,
        send_events=False,
        diagnostic_opt_out=True,
    )
    client = ldclient.LDClient(config=config, start_wait=5)
    print(f"ready initialized={client.is_initialized()}", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "eval":
            key = parts[2] if len(parts) > 2 else "ctx-1"
            context = Context.builder(key).kind("user").build()
            d = client.variation_detail(parts[1], context, "<default>")
            out = {"value": d.value, "variation_index": d.variation_index, "reason": d.reason}
            print(json.dumps(out, sort_keys=True), flush=True)
    client.close()


if __name__ == "__main__":
    main()
