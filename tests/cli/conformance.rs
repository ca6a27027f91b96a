//! What the real LaunchDarkly SDK serves after apply: tests/conformance/evaluate.py runs the
//! Python server SDK in daemon mode (cache disabled) against the Redis relayctl wrote.
//!
//! A missing Python SDK fails the test with the install command; it never skips.

use crate::support::fixtures::{assert_served, bool_flag, evaluate_redis, flag, redis_overrides, PREFIX};
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};

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
            rollout(bool_flag("kill-switch", 41)),
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
    let before = evaluate_redis(&r, &flags);
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
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());

    let after = evaluate_redis(&r, &flags);
    assert_served(
        &after,
        &[
            ("kill-switch", json!(false), 1, "OFF"),
            ("pricing-page", json!("control"), 0, "OFF"),
            ("recommendations", json!("v1"), 1, "FALLTHROUGH"),
            ("max-items", json!(20), 1, "FALLTHROUGH"),
        ],
    );
    assert_eq!(
        after["untouched"], before["untouched"],
        "an undeclared flag serves what it did"
    );
}
