//! plan and apply against real Redis servers.

use crate::support::{flag, Redis, Workspace};
use serde_json::json;

fn overrides(redis: &[&Redis], flags: &str) -> String {
    let urls: Vec<String> = redis.iter().map(|r| format!("\"{}\"", r.url())).collect();
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nurls = [{}]\nprefix = \"ld:{{project}}:{{environment}}\"\n\n[overrides.default.production]\n{flags}",
        urls.join(", ")
    )
}

#[test]
fn apply_fans_out_to_every_redis_and_journals_once() {
    let (a, b) = (Redis::start(), Redis::start());
    for r in [&a, &b] {
        r.seed(
            "ld:default:production",
            &[
                flag("new-checkout", 41, true, json!([true, false])),
                flag("other", 3, true, json!([true, false])),
            ],
        );
    }
    let w = Workspace::new(&overrides(
        &[&a, &b],
        "new-checkout = { on = false, reason = \"INC-4711\" }\n",
    ));
    w.relayctl().args(["apply", "--auto-approve"]).assert().success();
    for r in [&a, &b] {
        let f = r.flag("ld:default:production", "new-checkout").unwrap();
        assert_eq!(f["on"], json!(false));
        assert_eq!(f["version"], json!(42));
        assert_eq!(
            r.flag("ld:default:production", "other").unwrap(),
            flag("other", 3, true, json!([true, false]))
        );
    }
    assert_eq!(w.journal_commits(), 2);
    let log = w.journal_log();
    assert!(
        log[1].contains(&format!("Store: relay-redis {} v42", a.url())),
        "{}",
        log[1]
    );
    assert!(
        log[1].contains(&format!("Store: relay-redis {} v42", b.url())),
        "{}",
        log[1]
    );
    // A re-run has nothing to do and adds no commit.
    w.relayctl().args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(w.journal_commits(), 2);
}
