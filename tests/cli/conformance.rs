//! What the real LaunchDarkly SDK serves after apply: tests/conformance/evaluate.py runs the
//! Python server SDK in daemon mode (cache disabled) against the Redis relayctl wrote.
//!
//! A missing Python SDK fails the test with the install command; it never skips.

use crate::support::{flag, redis_overrides, require, Redis, Workspace, PREFIX};
use serde_json::{json, Value};
use std::process::Command;

const INSTALL: &str = "pip install launchdarkly-server-sdk redis boto3";

/// Evaluates `flags` for the context `ctx-1` with the Python SDK reading `redis`.
fn evaluate(redis: &Redis, flags: &[&str]) -> Value {
    let python = require("python3", "apt-get install -y python3 python3-pip");
    let probe = Command::new(&python)
        .args(["-c", "import ldclient, redis"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "the LaunchDarkly Python SDK is needed by this test and cannot be imported ({}). Install it with: {INSTALL}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/evaluate.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--store", "redis", "--url", &redis.url(), "--prefix", PREFIX])
        .args(["--flags", &flags.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "evaluate.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rollout(mut f: Value) -> Value {
    f["fallthrough"] = json!({"rollout": {"variations": [
        {"variation": 0, "weight": 30000}, {"variation": 1, "weight": 70000}
    ], "bucketBy": "key"}});
    f
}

#[test]
fn the_sdk_serves_exactly_the_declared_variations() {
    let r = Redis::start();
    let mut pricing = rollout(flag(
        "pricing-page",
        17,
        true,
        json!(["control", "treatment", "holdout"]),
    ));
    pricing["offVariation"] = json!(2);
    r.seed(
        PREFIX,
        &[
            rollout(flag("kill-switch", 41, true, json!([true, false]))),
            pricing,
            rollout(flag("recommendations", 8, true, json!(["v2", "v1", "off"]))),
            flag("max-items", 5, true, json!([10, 20, 50])),
            rollout(flag("untouched", 3, true, json!(["a", "b"]))),
        ],
    );
    let flags = [
        "kill-switch",
        "pricing-page",
        "recommendations",
        "max-items",
        "untouched",
    ];
    let before = evaluate(&r, &flags);
    // Sanity: before apply every flag is on and evaluates (no "<default>").
    for f in flags {
        assert_ne!(before[f]["value"], json!("<default>"), "{f}: {before}");
        assert_ne!(before[f]["reason"]["kind"], json!("OFF"), "{f}: {before}");
    }

    let w = Workspace::new(&redis_overrides(
        &[&r],
        "kill-switch = { on = false, reason = \"INC-1\" }\n\
         pricing-page = { on = false, off_variation = \"control\" }\n\
         recommendations = { on = true, fallthrough = \"v1\" }\n\
         max-items = { on = true, fallthrough = 20 }\n",
    ));
    let run = w.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());

    let after = evaluate(&r, &flags);
    let served = |f: &str| crate::support::served(&after, f);
    assert_eq!(
        served("kill-switch"),
        (json!(false), json!(1), json!("OFF")),
        "{after}"
    );
    assert_eq!(
        served("pricing-page"),
        (json!("control"), json!(0), json!("OFF")),
        "{after}"
    );
    assert_eq!(
        served("recommendations"),
        (json!("v1"), json!(1), json!("FALLTHROUGH")),
        "{after}"
    );
    assert_eq!(
        served("max-items"),
        (json!(20), json!(1), json!("FALLTHROUGH")),
        "{after}"
    );
    assert_eq!(
        after["untouched"], before["untouched"],
        "an undeclared flag serves what it did"
    );
}
