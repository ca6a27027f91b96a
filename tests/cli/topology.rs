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
    // The team lease was taken and released on the cluster (WATCH/MULTI on the key's node):
    // the journal's record of it is removed only once every lease is released.
    assert!(!run.stderr.contains("no team lock taken"), "{}", run.stderr);
    assert!(
        !w.path("journal/.git/relayctl-lease").exists(),
        "the lease was not released"
    );
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

/// A failover forced while apply writes: whatever the journal records as written, the new
/// primary holds; what it lacks is reported as not written (exit 1) and left to the next apply,
/// which finishes, each flag written once and journaled once.
#[test]
fn a_failover_during_apply_never_records_a_write_the_new_primary_lacks() {
    let s = Sentinels::start();
    let n = 3000;
    let keys: Vec<String> = (0..n).map(|i| format!("flag-{i:05}")).collect();
    let flags: Vec<_> = keys.iter().map(|k| bool_flag(k, 7)).collect();
    s.nodes.primary.seed(PREFIX, &flags);
    s.nodes.sync();
    let declared: String = keys.iter().map(|k| format!("{k} = false\n")).collect();
    let w = Workspace::new(&overrides(
        &sentinel_store(&s.urls(), Sentinels::MASTER),
        &declared,
    ));
    let apply = w
        .cmd(["apply", "--auto-approve"])
        .spawn(std::process::Stdio::piped(), std::process::Stdio::piped());
    std::thread::sleep(std::time::Duration::from_millis(150));
    s.start_failover();
    let run = apply.wait_with_output().unwrap();
    s.failed_over();
    let new = &s.nodes.replicas[0];
    let stderr = String::from_utf8_lossy(&run.stderr);
    let journaled: Vec<String> = w
        .journal_subjects()
        .iter()
        .map(|s| {
            s.trim_start_matches("default/production/")
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let stored = all_flags(&new.secret_url());
    for key in &journaled {
        let held: serde_json::Value = serde_json::from_str(&stored[key]).unwrap();
        assert_eq!(
            (held["version"].clone(), held["on"].clone()),
            (json!(8), json!(false)),
            "{key} is journaled as written, and the new primary holds {held}; apply said: {stderr}"
        );
    }
    assert_eq!(run.status.code() == Some(0), journaled.len() == n, "{stderr}");
    // What is left is planned and applied; then every flag is off once, journaled once.
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let stored = all_flags(&new.secret_url());
    for key in &keys {
        let held: serde_json::Value = serde_json::from_str(&stored[key]).unwrap();
        assert_eq!(held["version"], json!(8), "{key}");
    }
    let mut subjects = w.journal_subjects();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), n);
    assert_eq!(w.journal_commits(), n + 1, "one commit per flag, after the first");
}

/// Every flag of the hash of [`PREFIX`] on the server at `url`, as stored.
fn all_flags(url: &str) -> std::collections::HashMap<String, String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("HGETALL")
        .arg(format!("{PREFIX}:features"))
        .query(&mut c)
        .unwrap()
}
