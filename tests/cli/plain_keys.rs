//! Plain Redis keys (`type = "redis-keys"`, `[keys.<store>]`) under plan, apply and the journal,
//! against real redis-server processes; with LaunchDarkly flags in the same file; sync, verify
//! and log leaving them alone; stale plans, keys of the wrong type, bad input and a killed apply.

use crate::support::fake_ld::FakeLd;
use crate::support::fixtures::{bool_flag, file_store_and_ld, flag, flag_file, redis_store, PREFIX};
use crate::support::{git, wait_for, Fault, Proxy, Redis, Replicated, Workspace};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;

/// A `redis-keys` store named `meow-blue` over `url`, then `keys` declared under it.
fn key_store(url: &str, keys: &str) -> String {
    format!(
        "[[store]]\nname = \"meow-blue\"\ntype = \"redis-keys\"\nurl = \"{url}\"\n\n[keys.meow-blue]\n{keys}"
    )
}

fn get(r: &Redis, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut r.conn()).unwrap()
}

fn set(r: &Redis, key: &str, value: &str) {
    redis::cmd("SET").arg(key).arg(value).exec(&mut r.conn()).unwrap();
}

const DECLARED: &str = "RECENT = \"ON\"\n\
                        canary_alert = { value = \"1\", reason = \"INC-12: 5xx on v2\" }\n\
                        old_key = { absent = true }\n";

#[test]
fn keys_are_planned_applied_and_journaled_one_commit_each() {
    let r = Redis::start();
    set(&r, "RECENT", "OFF");
    set(&r, "old_key", "x");
    set(&r, "untouched", "keep me");
    let w = Workspace::new(&key_store(&r.url(), DECLARED));
    let plan = w.run(["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let port = r.port.to_string();
    insta::assert_snapshot!(plan.render(&[(port.as_str(), "PORT")]));
    let json: serde_json::Value = serde_json::from_str(&w.run(["plan", "--json"]).stdout).unwrap();
    assert_eq!(json["changes"], json!([]));
    assert_eq!(
        json["keys"][1],
        json!({"store": "meow-blue", "target": r.url(), "key": "canary_alert", "from": null, "to": "1",
               "reason": "INC-12: 5xx on v2"})
    );
    assert_eq!(json["keys"][2]["to"], json!(null));

    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(get(&r, "RECENT").as_deref(), Some("ON"));
    assert_eq!(get(&r, "canary_alert").as_deref(), Some("1"));
    assert_eq!(get(&r, "old_key"), None, "absent = true deletes it");
    assert_eq!(
        get(&r, "untouched").as_deref(),
        Some("keep me"),
        "undeclared keys are never touched"
    );
    assert_eq!(
        w.journal_subjects(),
        [
            "meow-blue RECENT: set to \"ON\"",
            "meow-blue canary_alert: set to \"1\"",
            "meow-blue old_key: delete"
        ]
    );
    let messages = w.journal_messages();
    assert!(
        messages[1].ends_with(&format!(
            "INC-12: 5xx on v2\n\nKey-Store: meow-blue\nKey: canary_alert\nValue: \"1\"\n\
             Previous-Value: (absent)\nStore: meow-blue {}",
            r.url()
        )),
        "{}",
        messages[1]
    );
    assert!(messages[0].contains("Previous-Value: \"OFF\""), "{}", messages[0]);
    assert_eq!(
        w.read("journal/_keys/meow-blue/old_key.toml"),
        "# meow-blue old_key: plain Redis key written by relayctl\nstore = \"meow-blue\"\nkey = \"old_key\"\nabsent = true\n"
    );
    // Nothing left to do; a re-run adds no commit.
    assert_eq!(w.run(["plan", "--detailed-exitcode"]).code, 0);
    w.cmd(["apply", "--auto-approve"]).assert().success();
    assert_eq!(w.journal_commits(), 4);
    let log = w.run(["log"]);
    assert_eq!(log.stdout.lines().count(), 3, "{}", log.all());
    assert!(
        log.stdout.lines().all(|l| l.ends_with("[local only]")),
        "{}",
        log.stdout
    );
    let pending = w.run(["log", "--pending"]);
    assert_eq!(pending.stdout, "", "key commits are never pending");
}

#[test]
fn hostile_key_names_and_values_forge_no_trailer_path_or_line() {
    let r = Redis::start();
    let keys = "\"a/../b\\nKey-Store: evil\" = \"v\\n\\nKey: forged\"\n\".git\" = \"1\"\n";
    let w = Workspace::new(&key_store(&r.url(), keys));
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(
        apply
            .stdout
            .lines()
            .all(|l| l.starts_with("  ~ ") || l.starts_with("Plan: ")),
        "{}",
        apply.stdout
    );
    assert_eq!(
        get(&r, "a/../b\nKey-Store: evil").as_deref(),
        Some("v\n\nKey: forged")
    );
    let trailers = git(
        &w.path("journal"),
        &["log", "--format=%(trailers:key=Key-Store,valueonly)"],
    );
    assert_eq!(
        trailers.split_whitespace().collect::<Vec<_>>(),
        ["meow-blue", "meow-blue"]
    );
    let files = git(&w.path("journal"), &["ls-files"]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "README.md",
            "_keys/meow-blue/%2Egit.toml",
            "_keys/meow-blue/a%2F..%2Fb%0AKey-Store%3A%20evil.toml"
        ]
    );
    git(&w.path("journal"), &["fsck", "--no-progress"]);
    let log = w.run(["log"]);
    assert_eq!(log.stdout.lines().count(), 2, "{}", log.stdout);
}

#[test]
fn flags_and_keys_apply_together_one_commit_each_in_plan_order() {
    let (ld, keys) = (Redis::start(), Redis::start());
    ld.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    set(&keys, "RECENT", "OFF");
    let text = format!(
        "{}[overrides.default.production]\nnew-checkout = {{ on = false, reason = \"INC-4711\" }}\n\n{}",
        redis_store(&[ld.url()]),
        key_store(&keys.url(), "RECENT = \"ON\"\nkey1 = \"1\"\n")
    );
    let w = Workspace::new(&text);
    let plan = w.run(["plan"]);
    let lines: Vec<&str> = plan.stdout.lines().collect();
    assert!(
        lines[0].contains("default/production/new-checkout") && lines[0].contains("on: true -> false"),
        "{}",
        plan.stdout
    );
    assert!(
        lines[1].starts_with("  ~ meow-blue RECENT: \"OFF\" -> \"ON\""),
        "{}",
        plan.stdout
    );
    assert!(
        lines[2].starts_with("  ~ meow-blue key1: (absent) -> \"1\""),
        "{}",
        plan.stdout
    );
    assert_eq!(lines[3], "Plan: 3 to change, 0 unchanged.");
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(
        w.journal_subjects(),
        [
            "default/production/new-checkout: turn off",
            "meow-blue RECENT: set to \"ON\"",
            "meow-blue key1: set to \"1\""
        ]
    );
    assert_eq!(ld.flag(PREFIX, "new-checkout").unwrap()["on"], json!(false));
    assert_eq!(get(&keys, "key1").as_deref(), Some("1"));
    assert_eq!(
        ld.dump().len(),
        2,
        "flags never reach a redis-keys store, nor keys a redis store"
    );
    assert_eq!(keys.dump().len(), 2);
}

#[test]
fn a_key_changed_after_a_saved_plan_is_refused_as_stale_and_the_others_are_written() {
    let r = Redis::start();
    set(&r, "RECENT", "OFF");
    let w = Workspace::new(&key_store(&r.url(), "RECENT = \"ON\"\nkey1 = \"1\"\n"));
    w.cmd(["plan", "--out", "plan.json"]).assert().success();
    set(&r, "RECENT", "MAYBE");
    let apply = w.run(["apply", "plan.json"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply
            .stderr
            .contains("meow-blue RECENT NOT written to meow-blue redis://127.0.0.1:")
            && apply
                .stderr
                .contains("stale plan: the key holds \"MAYBE\" but the plan was made against \"OFF\""),
        "{}",
        apply.stderr
    );
    assert_eq!(get(&r, "RECENT").as_deref(), Some("MAYBE"));
    assert_eq!(get(&r, "key1").as_deref(), Some("1"));
    assert_eq!(w.journal_subjects(), ["meow-blue key1: set to \"1\""]);
    // A hand-edited plan that sets another value than declared is refused before any write.
    let edited = w.read("plan.json").replace("\"to\": \"ON\"", "\"to\": \"EVIL\"");
    w.write("plan.json", &edited);
    let apply = w.run(["apply", "plan.json"]);
    assert_eq!(apply.code, 1);
    assert!(
        apply
            .stderr
            .contains("the plan sets \"EVIL\", but the overrides file declares \"ON\""),
        "{}",
        apply.stderr
    );
    assert_eq!(get(&r, "RECENT").as_deref(), Some("MAYBE"));
}

#[test]
fn a_key_holding_a_hash_or_a_list_is_an_error_naming_it_and_nothing_is_written() {
    let r = Redis::start();
    redis::cmd("HSET")
        .arg("RECENT")
        .arg("a")
        .arg("b")
        .exec(&mut r.conn())
        .unwrap();
    redis::cmd("RPUSH")
        .arg("queue")
        .arg("x")
        .exec(&mut r.conn())
        .unwrap();
    let w = Workspace::new(&key_store(
        &r.url(),
        "RECENT = \"ON\"\nkey1 = \"1\"\nqueue = \"1\"\n",
    ));
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let run = w.run(args);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr
                .contains("error: meow-blue RECENT in meow-blue redis://127.0.0.1:")
                && run.stderr.contains("the key holds a Redis hash, not a string")
                && run.stderr.contains("error: meow-blue queue in")
                && run.stderr.contains("the key holds a Redis list"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(get(&r, "key1"), None, "nothing written");
    assert!(!w.path("journal").exists());
}

#[test]
fn sync_and_verify_leave_key_commits_alone_and_log_shows_them_local_only() {
    let ld = FakeLd::start();
    let r = Redis::start();
    let variations = vec![json!("treatment"), json!("control")];
    ld.add_flag("default", "f1", &variations, "production", true, 1, 0, 5);
    let w = Workspace::new("");
    w.write(
        "flags/default-production.json",
        &flag_file(&[flag("f1", 5, true, json!(["treatment", "control"]))]),
    );
    let text = format!(
        "{}[overrides.default.production]\nf1 = false\n\n{}",
        file_store_and_ld(&ld.url),
        key_store(&r.url(), "RECENT = \"ON\"\n")
    );
    w.write("overrides.toml", &text);
    w.cmd(["apply", "--auto-approve"]).assert().success();
    let log = w.run(["log", "--pending"]);
    assert_eq!(log.stdout.lines().count(), 1, "{}", log.stdout);
    assert!(log.stdout.contains("default/production/f1"), "{}", log.stdout);
    let sync = w.cmd(["sync"]).token().run();
    assert_eq!(sync.code, 0, "{}", sync.all());
    assert_eq!(ld.patches().len(), 1, "only the flag is sent");
    assert!(!sync.all().contains("RECENT"), "{}", sync.all());
    let verify = w.cmd(["verify"]).token().run();
    assert_eq!(verify.code, 0, "{}", verify.all());
    assert!(!verify.all().contains("RECENT"), "{}", verify.all());
    assert_eq!(w.run(["log", "--pending"]).stdout, "");
    let log = w.run(["log"]).stdout;
    assert!(
        log.lines()
            .next()
            .unwrap()
            .ends_with("meow-blue RECENT: set to \"ON\"  [local only]"),
        "{log}"
    );
    assert!(log.lines().nth(1).unwrap().contains("[synced "), "{log}");
    assert_eq!(
        git(&w.path("journal"), &["notes", "--ref=relayctl-sync", "list"])
            .lines()
            .count(),
        1,
        "no note on the key commit"
    );
}

#[test]
fn bad_key_declarations_are_clear_errors_with_file_and_line_and_nothing_is_written() {
    let r = Redis::start();
    for (keys, want) in [
        (
            "key1 = 1\n",
            "overrides.toml:7:8: key \"key1\" is declared as integer 1: Redis keys hold strings, so quote it (\"1\")",
        ),
        ("RECENT = true\n", "overrides.toml:7:10: key \"RECENT\" is declared as boolean true"),
        ("k = { value = 0 }\n", "overrides.toml:7:5: key \"k\" is declared as integer 0"),
        ("k = { value = \"1\", colour = \"x\" }\n", "overrides.toml:7:5: key \"k\": unknown field `colour`"),
        ("k = { absent = true, value = \"1\" }\n", "declares both a value and absent = true"),
        ("k = { reason = \"x\" }\n", "declares no value"),
        ("\"\" = \"1\"\n", "overrides.toml:7:1: an empty key name in [keys.meow-blue]"),
    ] {
        let w = Workspace::new(&key_store(&r.url(), keys));
        let run = w.run(["apply", "--auto-approve"]);
        assert_eq!(run.code, 1, "{keys}: {}", run.all());
        assert!(run.stderr.contains(want), "{keys}\nwant: {want}\ngot: {}", run.stderr);
        assert!(!w.path("journal").exists());
    }
    let w = Workspace::new(&format!(
        "{}\n[keys.meow-green]\nRECENT = \"ON\"\n",
        key_store(&r.url(), "")
    ));
    let run = w.run(["plan"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "overrides.toml:8:7: [keys.meow-green] names no redis-keys store (the redis-keys stores are \"meow-blue\")"
        ),
        "{}",
        run.stderr
    );
    let w = Workspace::new(&format!(
        "{}\n[keys.relay-redis]\nRECENT = \"ON\"\n",
        redis_store(&[r.url()])
    ));
    let run = w.run(["plan"]);
    assert!(
        run.stderr
            .contains("[keys.relay-redis] names no redis-keys store (there is none)"),
        "{}",
        run.stderr
    );
    let w = Workspace::new(&format!(
        "[[store]]\nname = \"k\"\ntype = \"redis-keys\"\nurl = \"{}\"\ntable = \"t\"\n",
        r.url()
    ));
    assert!(w
        .run(["plan"])
        .stderr
        .contains("`table` does not apply to a redis-keys store"));
    assert!(r.dump().is_empty(), "nothing written");
}

#[test]
fn a_killed_apply_s_key_writes_are_recovered_by_the_next_apply() {
    let r = Redis::start();
    // Two plans read 3 keys each (EVAL 1-6); the writes are EVAL 7-9. After the last write
    // reaches Redis, the proxy answers nothing more: apply waits for the replies and is killed.
    let proxy = Proxy::start(r.port).fault("EVAL", 9, Fault::PauseAfter);
    let w = Workspace::new(&key_store(
        &proxy.url(),
        "a = \"1\"\nb = \"2\"\nc = { absent = true }\n",
    ));
    set(&r, "c", "gone soon");
    let mut child = w
        .cmd(["apply", "--auto-approve"])
        .spawn(Stdio::null(), Stdio::null());
    wait_for("the writes to land", Duration::from_secs(20), || {
        get(&r, "b").as_deref() == Some("2") && get(&r, "c").is_none()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        w.journal_subjects(),
        Vec::<String>::new(),
        "killed before any commit"
    );
    proxy.resume();
    let log = w.run(["log"]);
    assert!(
        log.stderr
            .contains("3 change(s) of an interrupted or running apply are not in the journal yet"),
        "{}",
        log.stderr
    );
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains("An earlier apply left 3 key write(s) unrecorded")
            && run
                .stderr
                .contains(&format!("meow-blue a: written to meow-blue {}", proxy.url())),
        "{}",
        run.stderr
    );
    assert_eq!(
        w.journal_subjects(),
        [
            "meow-blue a: set to \"1\"",
            "meow-blue b: set to \"2\"",
            "meow-blue c: delete"
        ]
    );
    assert!(w.run(["log"]).stderr.is_empty());
    assert_eq!(w.run(["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn the_plain_keys_example_plans_and_applies() {
    let r = Redis::start();
    let example = include_str!("../../examples/plain-keys/overrides.toml");
    let w = Workspace::new(&example.replace("redis://127.0.0.1:6379", &r.url()));
    set(&r, "meow:canary_alert", "1");
    let plan = w.run(["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stdout.ends_with("Plan: 3 to change, 0 unchanged.\n"),
        "{}",
        plan.stdout
    );
    w.cmd(["apply", "--auto-approve"]).assert().success();
    assert_eq!(get(&r, "meow:RECENT").as_deref(), Some("ON"));
    assert_eq!(get(&r, "meow:key1").as_deref(), Some("1"));
    assert_eq!(get(&r, "meow:canary_alert"), None);
    assert_eq!(w.journal_commits(), 4);
}

#[test]
fn a_write_whose_reply_is_lost_is_read_back_said_on_stderr_and_counts_as_written() {
    let r = Redis::start();
    // The two plans read the key (EVAL 1 and 2); the write is EVAL 3: Redis acts, the reply is lost.
    let proxy = Proxy::start(r.port).fault("EVAL", 3, Fault::CutAfter);
    let w = Workspace::new(&key_store(&proxy.url(), "RECENT = \"ON\"\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "warning: meow-blue {} did not answer the writes of 1 key(s)",
            proxy.url()
        )) && run
            .stderr
            .contains("Reading them back on a new connection (at most"),
        "{}",
        run.stderr
    );
    assert_eq!(get(&r, "RECENT").as_deref(), Some("ON"));
    assert_eq!(w.journal_subjects(), ["meow-blue RECENT: set to \"ON\""]);
    assert_eq!(w.run(["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn every_server_of_a_key_store_is_written_and_the_commit_names_each() {
    let (a, b) = (Redis::start(), Redis::start());
    set(&a, "RECENT", "OFF");
    let text = format!(
        "[[store]]\nname = \"meow-blue\"\ntype = \"redis-keys\"\nurls = [\"{}\", \"{}\"]\nprefix = \"meow:\"\n\n\
         [keys.meow-blue]\nRECENT = \"ON\"\n",
        a.url(),
        b.url()
    );
    set(&a, "meow:RECENT", "OFF");
    let w = Workspace::new(&text);
    let plan = w.run(["plan"]);
    assert_eq!(
        plan.stdout.lines().count(),
        3,
        "one line per target: {}",
        plan.stdout
    );
    w.cmd(["apply", "--auto-approve"]).assert().success();
    for r in [&a, &b] {
        assert_eq!(get(r, "meow:RECENT").as_deref(), Some("ON"));
    }
    assert_eq!(get(&a, "RECENT").as_deref(), Some("OFF"), "only the prefixed key");
    let log = w.journal_log();
    assert_eq!(log.len(), 2, "one commit for the key: {log:?}");
    assert!(
        log[1].contains(&format!(
            "Store: meow-blue {}\nStore: meow-blue {}",
            a.url(),
            b.url()
        )) && log[1].contains("Previous-Value: \"OFF\""),
        "{}",
        log[1]
    );
}

#[test]
fn a_replica_url_is_refused_and_replicas_acknowledge_key_writes() {
    let r = Replicated::start(2);
    let run = Workspace::new(&key_store(&r.replicas[0].url(), "RECENT = \"ON\"\n")).run(["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let primary = format!("127.0.0.1:{}", r.primary.port);
    assert!(
        run.stderr
            .contains(&format!("read-only replica of the primary {primary}")),
        "{}",
        run.all()
    );
    let w = Workspace::new(&key_store(&r.primary.url(), "RECENT = \"ON\"\nkey1 = \"1\"\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("(2 of 2 replicas acknowledged)   journal "),
        "{}",
        run.stdout
    );
    let messages = w.journal_messages();
    for m in &messages {
        assert!(
            m.ends_with(&format!(
                "Store: meow-blue {} (2 of 2 replicas acknowledged)",
                r.primary.url()
            )),
            "{m}"
        );
    }
    for replica in &r.replicas {
        assert_eq!(get(replica, "key1").as_deref(), Some("1"));
    }
}
