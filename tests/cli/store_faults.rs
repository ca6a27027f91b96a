//! Stored values relayctl cannot read as text: a problem of their flag, naming it, never a
//! failure of the whole read.

use crate::support::fixtures::{bool_flag, redis_overrides, PREFIX};
use crate::support::{Redis, Workspace};

#[test]
fn a_stored_value_that_is_not_utf8_is_a_plan_problem_naming_its_flag() {
    // Issue 8, item 19: one such value failed the whole plan with "Cannot convert from UTF-8".
    let r = Redis::start();
    r.seed(PREFIX, &[bool_flag("alpha", 10)]);
    let mut bad = bool_flag("beta", 10).to_string().into_bytes();
    let at = bad.windows(4).position(|w| w == b"salt").unwrap();
    bad[at] = 0xff;
    redis::cmd("HSET")
        .arg(format!("{PREFIX}:features"))
        .arg("beta")
        .arg(bad)
        .exec(&mut r.conn())
        .unwrap();
    let w = Workspace::new(&redis_overrides(&[&r], "alpha = false\nbeta = false\n"));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains("Cannot convert from UTF-8"), "{}", run.all());
    assert!(
        run.stdout.contains("default/production/alpha") && !run.stdout.contains("beta"),
        "the other flags still plan: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "error: default/production/beta in relay-redis {}: the stored value is not a flag relayctl can rewrite safely: it is not UTF-8 text",
            r.url()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(r.flag(PREFIX, "alpha").unwrap(), bool_flag("alpha", 10));
}
