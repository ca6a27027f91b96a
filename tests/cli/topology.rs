//! Redis as production runs it (SPEC §1 "Plain Redis keys and Redis topologies"): a primary with
//! replicas, Sentinels failing the primary over between plan and apply, a three-primary cluster,
//! and the errors a user can act on.

use crate::support::fixtures::{bool_flag, evaluate_redis, overrides, PREFIX};
use crate::support::{free_port, Cluster, Redis, Replicated, Sentinels, Workspace};
use serde_json::json;

/// A `redis` store `relay-redis` whose connection settings are `settings` (TOML lines).
fn store(settings: &str) -> String {
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\n{settings}prefix = \"ld:{{project}}:{{environment}}\"\n\n"
    )
}

fn list(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn sentinel_store(urls: &[String], master: &str) -> String {
    store(&format!("sentinels = {}\nmaster = \"{master}\"\n", list(urls)))
}

/// Every server and Sentinel requires a password, which the Sentinel URLs carry and nothing prints.
#[test]
fn a_failover_between_plan_and_apply_writes_to_the_new_primary() {
    let mut s = Sentinels::start();
    s.nodes
        .primary
        .seed(PREFIX, &[bool_flag("kill-switch", 41), bool_flag("pricing", 7)]);
    s.nodes.sync();
    let flags = "kill-switch = { on = false, reason = \"INC-9\" }\npricing = false\n";

    // A master name no Sentinel monitors: named, with how to find the right one.
    let w = Workspace::new(&overrides(&sentinel_store(&s.urls(), "nosuch"), flags));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains(Sentinels::PASSWORD), "{}", run.all());
    assert!(
        run.stderr.contains("no Sentinel knows a master named \"nosuch\"")
            && run.stderr.contains("SENTINEL MASTERS"),
        "{}",
        run.all()
    );

    let w = Workspace::new(&overrides(&sentinel_store(&s.urls(), Sentinels::MASTER), flags));
    let run = w.run(["plan", "--out", "plan.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.all().contains(Sentinels::PASSWORD), "{}", run.all());
    assert!(run.stdout.contains("/mymaster"), "{}", run.all());

    s.failover();
    let new = &s.nodes.replicas[0];
    // Someone changes `pricing` on the new primary after the plan: a stale plan, as usual.
    let mut moved = bool_flag("pricing", 8);
    moved["on"] = json!(true);
    new.set_raw(PREFIX, "pricing", &moved.to_string());

    let run = w.run(["apply", "plan.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains(Sentinels::PASSWORD), "{}", run.all());
    let primary = format!("primary redis://127.0.0.1:{}", new.port);
    assert!(run.stdout.contains(&primary), "{}", run.all());
    assert!(
        run.stderr.contains("pricing") && run.stderr.contains("stale plan"),
        "{}",
        run.all()
    );
    assert_eq!(new.flag(PREFIX, "kill-switch").unwrap()["version"], json!(42));
    assert_eq!(new.flag(PREFIX, "pricing").unwrap()["version"], json!(8));
    let messages = w.journal_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(!messages[0].contains(Sentinels::PASSWORD), "{}", messages[0]);
    assert!(
        messages[0]
            .lines()
            .any(|l| l.starts_with("Store: relay-redis sentinel://")
                && l.contains("/mymaster v42 (")
                && l.contains(&primary)),
        "{}",
        messages[0]
    );

    // What services reading the new primary see.
    let served = evaluate_redis(new, &["kill-switch"]);
    assert_eq!(served["kill-switch"]["value"], json!(false), "{served}");
    assert_eq!(served["kill-switch"]["reason"]["kind"], json!("OFF"), "{served}");

    // The primary the Sentinels name goes away (they notice after 30 s): said, with what to do.
    let port = new.port;
    s.nodes.replicas[0].kill();
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "names redis://127.0.0.1:{port} as the primary of \"mymaster\", which does not answer"
        )) && run
            .stderr
            .contains("a failover may be under way: run again in a few seconds"),
        "{}",
        run.all()
    );
}

#[test]
fn sentinels_that_do_not_answer_are_named_without_their_passwords() {
    let urls = vec![
        format!("redis://:hunter2@127.0.0.1:{}", free_port()),
        format!("redis://127.0.0.1:{}", free_port()),
    ];
    let w = Workspace::new(&overrides(&sentinel_store(&urls, "mymaster"), "f = false\n"));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("none of the Sentinels answered"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("hunter2"), "{}", run.all());
}

#[test]
fn sentinel_settings_are_checked() {
    for (settings, expected) in [
        (
            "sentinels = [\"redis://127.0.0.1:26379\"]\n",
            "`sentinels` needs `master`",
        ),
        (
            "master = \"m\"\nurl = \"redis://x\"\n",
            "`master` goes with `sentinels",
        ),
        (
            "sentinels = [\"redis://127.0.0.1:26379\"]\nmaster = \"m\"\nurl = \"redis://x\"\n",
            "`sentinels` replaces url/urls",
        ),
        (
            "sentinels = [\"redis://127.0.0.1:26379\"]\nmaster = \"m\"\ncluster = true\n",
            "not both",
        ),
        ("sentinels = []\nmaster = \"m\"\n", "`sentinels` is empty"),
    ] {
        let w = Workspace::new(&overrides(&store(settings), "f = false\n"));
        let run = w.run(["plan"]);
        assert_eq!(run.code, 1, "{settings}: {}", run.all());
        assert!(run.stderr.contains(expected), "{settings}: {}", run.all());
    }
}

/// Every node requires a password, which the seed URLs carry and nothing prints.
#[test]
fn a_cluster_is_planned_and_applied_through_its_seed_nodes() {
    let c = Cluster::start();
    let staging = "ld:default:staging";
    c.seed(PREFIX, &[bool_flag("kill-switch", 41)]);
    c.seed(staging, &[bool_flag("kill-switch", 3)]);
    let flags = "kill-switch = false\n\n[overrides.default.staging]\nkill-switch = false\n";

    // A single-node URL at a cluster node says what to set.
    let w = Workspace::new(&overrides(
        &store(&format!("url = \"{}\"\n", c.nodes[0].secret_url())),
        flags,
    ));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("this is a cluster node: set cluster = true"),
        "{}",
        run.all()
    );

    // MOVED is followed; the two hashes are in two slots, so one read spans slots.
    assert_ne!(
        c.slot(&format!("{PREFIX}:features")),
        c.slot(&format!("{staging}:features"))
    );
    let w = Workspace::new(&overrides(
        &store(&format!("urls = {}\ncluster = true\n", list(&c.urls()))),
        flags,
    ));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("2 to change"), "{}", run.all());
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.all().contains(Cluster::PASSWORD), "{}", run.all());
    for (prefix, version) in [(PREFIX, 42), (staging, 4)] {
        let f = c.flag(prefix, "kill-switch").unwrap();
        assert_eq!(
            (f["on"].clone(), f["version"].clone()),
            (json!(false), json!(version))
        );
    }
    let messages = w.journal_messages();
    assert_eq!(messages.len(), 2);
    assert!(!messages.concat().contains(Cluster::PASSWORD), "{messages:?}");
    let run = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn a_cluster_with_slots_not_covered_is_refused() {
    let node = Cluster::partial();
    let w = Workspace::new(&overrides(
        &store(&format!("url = \"{}\"\ncluster = true\n", node.url())),
        "f = false\n",
    ));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("covers 1000 of 16384 slots") && run.stderr.contains("redis-cli --cluster"),
        "{}",
        run.all()
    );
}

#[test]
fn replicas_are_refused_as_targets_and_acknowledge_writes() {
    let r = Replicated::start(2);
    r.primary.seed(PREFIX, &[bool_flag("a", 1), bool_flag("b", 1)]);

    let on_replica = |replica: &Redis| {
        Workspace::new(&overrides(
            &store(&format!("url = \"{}\"\n", replica.url())),
            "a = false\n",
        ))
    };
    let run = on_replica(&r.replicas[0]).run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let primary = format!("127.0.0.1:{}", r.primary.port);
    assert!(
        run.stderr
            .contains(&format!("read-only replica of the primary {primary}")),
        "{}",
        run.all()
    );

    let w = Workspace::new(&overrides(
        &store(&format!("url = \"{}\"\n", r.primary.url())),
        "a = false\n",
    ));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("2 of 2 replicas acknowledged"),
        "{}",
        run.all()
    );
    assert!(
        w.journal_messages()[0].contains("v2 (2 of 2 replicas acknowledged)"),
        "{:?}",
        w.journal_messages()
    );
    for replica in &r.replicas {
        assert_eq!(replica.flag(PREFIX, "a").unwrap()["on"], json!(false));
    }

    // A replica that stops answering lags: a warning, and the write stands.
    r.replicas[1].signal("STOP");
    w.write(
        "overrides.toml",
        &overrides(
            &store(&format!("url = \"{}\"\n", r.primary.url())),
            "a = false\nb = false\n",
        ),
    );
    let run = w.run(["apply", "--auto-approve"]);
    r.replicas[1].signal("CONT");
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("only 1 of the 2 replicas"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("1 of 2 replicas acknowledged"),
        "{}",
        run.all()
    );
    assert_eq!(r.primary.flag(PREFIX, "b").unwrap()["on"], json!(false));
}
