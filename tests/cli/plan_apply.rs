//! plan and apply against real Redis servers.

use crate::support::fixtures::{bool_flag, redis_overrides};
use crate::support::{Redis, Workspace};
use serde_json::json;

#[test]
fn apply_fans_out_to_every_redis_and_journals_once() {
    let (a, b) = (Redis::start(), Redis::start());
    for r in [&a, &b] {
        r.seed(
            "ld:default:production",
            &[bool_flag("new-checkout", 41), bool_flag("other", 3)],
        );
    }
    let w = Workspace::new(&redis_overrides(
        &[&a, &b],
        "new-checkout = { on = false, reason = \"INC-4711\" }\n",
    ));
    w.cmd(["apply", "--auto-approve"]).assert().success();
    for r in [&a, &b] {
        let f = r.flag("ld:default:production", "new-checkout").unwrap();
        assert_eq!(f["on"], json!(false));
        assert_eq!(f["version"], json!(42));
        assert_eq!(
            r.flag("ld:default:production", "other").unwrap(),
            bool_flag("other", 3)
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
    w.cmd(["apply", "--auto-approve"]).assert().success();
    assert_eq!(w.journal_commits(), 2);
}
