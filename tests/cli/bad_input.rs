//! Bad input of every kind: a clear error naming the file/line/column or the flag, store and
//! target; exit 1; and nothing written (the store byte-for-byte unchanged, no journal created).
//! Secrets in store URLs never appear in any output or in the journal.

use crate::support::fixtures::{bool_flag, flag, redis_overrides, PREFIX};
use crate::support::{free_port, git, Redis, Run, Workspace};
use serde_json::json;
use std::time::{Duration, Instant};

/// Runs `plan` and `apply --auto-approve`; both must fail with exit 1 and write nothing.
fn refused(w: &Workspace, redis: &[&Redis]) -> Run {
    let before: Vec<_> = redis.iter().map(|r| r.dump()).collect();
    let plan = w.run(["plan"]);
    assert_eq!(plan.code, 1, "plan: {}", plan.all());
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "apply: {}", apply.all());
    assert!(
        apply.stderr.starts_with("error:") || apply.stderr.contains("\nerror:"),
        "{}",
        apply.stderr
    );
    let after: Vec<_> = redis.iter().map(|r| r.dump()).collect();
    assert_eq!(after, before, "nothing may be written");
    assert!(!w.path("journal").exists(), "no journal may be created");
    plan
}

#[test]
fn invalid_overrides_files_name_the_file_line_and_column() {
    let r = Redis::start();
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let store = redis_overrides(&[&r], "");
    let cases = [
        (
            "malformed TOML",
            format!("{store}new-checkout = {{ on = false\n"),
            "overrides.toml:8:",
        ),
        (
            "wrong type",
            format!("{store}new-checkout = {{ on = \"off\" }}\n"),
            "overrides.toml:8:",
        ),
        (
            "unknown key",
            format!("{store}new-checkout = {{ on = false, off_varation = \"x\" }}\n"),
            "overrides.toml:8:",
        ),
        (
            "unknown store key",
            store.replace("type = \"redis\"", "type = \"redis\"\ntimeout = 3"),
            "overrides.toml:4:1",
        ),
        ("empty file", "\n  \n".to_owned(), "overrides.toml:1:1"),
        (
            "no store",
            "[overrides.default.production]\nnew-checkout = false\n".to_owned(),
            "no store declared",
        ),
        (
            "duplicate store",
            format!("{}{store}", store.split("[overrides").next().unwrap()),
            "duplicate store name \"relay-redis\"",
        ),
        (
            "two environments, one prefix",
            store.replace("prefix = \"ld:{project}:{environment}\"\n", "")
                + "new-checkout = false\n[overrides.default.staging]\nnew-checkout = false\n",
            "would keep default/production and default/staging in the same place (prefix \"launchdarkly\")",
        ),
        (
            "two environments, one file",
            "[[store]]\ntype = \"file\"\npath = \"flags.json\"\n\n[overrides.default.production]\nnew-checkout = false\n\
             [overrides.default.staging]\nnew-checkout = false\n"
                .to_owned(),
            "would keep default/production and default/staging in the same place (file \"flags.json\")",
        ),
        (
            "bad prefix template",
            store.replace("{environment}", "{env}"),
            "unknown placeholder {env}",
        ),
    ];
    let mut all = String::new();
    for (name, text, want) in &cases {
        let w = Workspace::new(text);
        let run = refused(&w, &[&r]);
        assert!(run.stderr.contains(want), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains("overrides.toml:"),
            "{name}: names the file: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{name}");
        all += &format!("=== {name}\n{}\n", run.render(&[(&r.port.to_string(), "[PORT]")]));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn a_redis_store_needs_urls_or_redis_hosts() {
    let r = Redis::start();
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let text = "[[store]]\ntype = \"redis\"\nprefix = \"ld:{project}:{environment}\"\n\n\
                [overrides.default.production]\nnew-checkout = false\n";
    let w = Workspace::new(text);
    let run = refused(&w, &[&r]);
    assert!(run.stderr.contains("overrides.toml:1:1"), "{}", run.stderr);
    assert!(run.stderr.contains("REDIS_HOSTS is not set"), "{}", run.stderr);
    // relayCommander's REDIS_HOSTS fills in the URLs (from the environment or from .env).
    let hosts = format!("127.0.0.1:{}", r.port);
    let run = w.cmd(["plan"]).env("REDIS_HOSTS", &hosts).run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("redis {} (v41)", r.url())),
        "{}",
        run.stdout
    );
    w.write(".env", &format!("REDIS_HOSTS={hosts}\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["on"], json!(false));
}

#[test]
fn an_unreachable_store_fails_fast_naming_the_store_and_target() {
    let r = Redis::start();
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let down = free_port();
    let text = redis_overrides(&[&r], "new-checkout = false\n").replace(
        &format!("\"{}\"", r.url()),
        &format!("\"{}\", \"redis://127.0.0.1:{down}\"", r.url()),
    );
    let w = Workspace::new(&text);
    let started = Instant::now();
    let run = refused(&w, &[&r]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let json = w.run(["plan", "--json"]);
    assert_eq!((json.code, json.stdout.as_str()), (1, ""), "{}", json.stderr);
    assert!(
        run.stderr.contains(&format!(
            "cannot read store relay-redis: cannot connect to redis://127.0.0.1:{down}"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn store_content_that_cannot_be_planned_is_an_error_naming_flag_store_and_target() {
    let r = Redis::start();
    let mut on_string = bool_flag("rc-flag", 5);
    on_string["on"] = json!("off"); // what relayCommander wrote
    r.seed(
        PREFIX,
        &[
            bool_flag("ok-flag", 1),
            flag("colors", 3, true, json!(["red", "green", "green"])),
            on_string,
        ],
    );
    r.set_raw(PREFIX, "gone", r#"{"key":"gone","version":12,"deleted":true}"#);
    let cases = [
        (
            "missing flag",
            "nope = false",
            "default/production/nope in relay-redis",
            "not in the store (no field \"nope\" in hash ld:default:production:features)",
        ),
        (
            "deleted tombstone",
            "gone = true",
            "default/production/gone in relay-redis",
            "tombstone at version 12",
        ),
        (
            "value matches none",
            "colors = { on = false, off_variation = \"blue\" }",
            "default/production/colors in relay-redis",
            "matches no variation; the flag's variations are 0: \"red\", 1: \"green\", 2: \"green\"",
        ),
        (
            "value matches several",
            "colors = { on = true, fallthrough = \"green\" }",
            "default/production/colors in relay-redis",
            "matches several variations (1, 2)",
        ),
        (
            "index out of range",
            "colors = { on = false, off_variation = { index = 7 } }",
            "default/production/colors in relay-redis",
            "index 7 is out of range",
        ),
        (
            "on as a string",
            "rc-flag = false",
            "default/production/rc-flag in relay-redis",
            "\"on\" is \"off\", not a boolean",
        ),
    ];
    let mut all = String::new();
    for (name, decl, who, why) in cases {
        // A valid flag beside the bad one: it is not written either.
        let w = Workspace::new(&redis_overrides(&[&r], &format!("ok-flag = false\n{decl}\n")));
        let run = refused(&w, &[&r]);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(who))
            .unwrap_or_else(|| panic!("{name}: no error names the flag and store: {}", run.stderr));
        assert!(line.contains(&r.url()), "{name}: names the target: {line}");
        assert!(line.contains(why), "{name}: {line}");
        assert!(
            run.stderr.contains("nothing was written"),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(w.run(["plan", "--out", "p.json"]).code, 1);
        assert!(
            !w.path("p.json").exists(),
            "{name}: a plan with problems is not saved"
        );
        all += &format!("=== {name}\n{}\n", run.render(&[(&r.port.to_string(), "[PORT]")]));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn a_password_in_a_store_url_is_never_shown_or_journaled() {
    const SECRET: &str = "hunter2-s3cr3t";
    let r = Redis::start_with_password(SECRET);
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let w = Workspace::new(&redis_overrides(
        &[&r],
        "new-checkout = { on = false, reason = \"INC-1\" }\n",
    ));
    assert!(
        w.read("overrides.toml").contains(SECRET),
        "the test must use the secret"
    );
    let mut seen = String::new();
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--out", "p.json"],
        &["apply", "p.json"],
        &["log"],
    ] {
        let run = w.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
        seen += &run.all();
    }
    seen += &w.read("p.json");
    assert!(
        seen.contains("redis://:***@127.0.0.1"),
        "the target is shown redacted: {seen}"
    );
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["on"], json!(false));
    seen += &git(
        &w.path("journal"),
        &["log", "-p", "--all", "--format=%an %ae%n%B"],
    );
    assert!(!seen.contains(SECRET), "the password leaked: {seen}");

    // Errors too: a wrong password, an unreachable host (plain and TLS), a TOML error on the URL's
    // line. Each must also fail fast.
    let wrong = redis_overrides(&[&r], "new-checkout = true\n").replace(SECRET, "wrong-pw-x9");
    let down = format!("redis://:{SECRET}@127.0.0.1:{}", free_port());
    let unreachable = redis_overrides(&[&r], "new-checkout = true\n").replace(&r.secret_url(), &down);
    let broken = redis_overrides(&[&r], "new-checkout = true\n").replace("\"]", "\", 5]");
    let tls_down = redis_overrides(&[&r], "new-checkout = true\n")
        .replace(&r.secret_url(), &down.replace("redis://", "rediss://"));
    for (name, text, secret) in [
        ("rediss unreachable", tls_down, SECRET),
        ("wrong password", wrong, "wrong-pw-x9"),
        ("unreachable", unreachable, SECRET),
        ("TOML error", broken, SECRET),
    ] {
        let w = Workspace::new(&text);
        let started = Instant::now();
        let run = refused(&w, &[&r]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            started.elapsed()
        );
        assert!(
            !run.all().contains(secret),
            "{name}: the password leaked: {}",
            run.all()
        );
        assert!(run.stderr.contains("***@"), "{name}: {}", run.stderr);
    }
}

#[test]
fn a_journal_path_that_is_not_a_repository_stops_apply_before_any_write() {
    let r = Redis::start();
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let w = Workspace::new(&redis_overrides(&[&r], "new-checkout = false\n"));
    w.write("journal/notes.txt", "not a git repository\n");
    let before = r.dump();
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("the journal path journal is a non-empty directory that is not a git repository"),
        "{}",
        run.stderr
    );
    assert_eq!(r.dump(), before);
    assert!(!w.path("journal/.git").exists());
}

#[test]
fn a_plan_file_that_is_not_a_plan_or_names_an_undeclared_store_writes_nothing() {
    let r = Redis::start();
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let w = Workspace::new(&redis_overrides(&[&r], "new-checkout = false\n"));
    assert_eq!(w.run(["plan", "--out", "p.json"]).code, 0);
    let before = r.dump();
    let plan: serde_json::Value = serde_json::from_str(&w.read("p.json")).unwrap();

    w.write("garbage.json", "{\"changes\": 3}\n");
    let mut newer = plan.clone();
    newer["format_version"] = json!(99);
    w.write("newer.json", &newer.to_string());
    for (file, want) in [
        ("missing.json", "cannot read the plan file missing.json"),
        (
            "garbage.json",
            "garbage.json is not a plan saved by `relayctl plan --out`",
        ),
        ("newer.json", "has format_version 99"),
    ] {
        let run = w.run(["apply", file]);
        assert_eq!(run.code, 1, "{file}: {}", run.all());
        assert!(run.stderr.contains(want), "{file}: {}", run.stderr);
        assert_eq!(r.dump(), before, "{file}");
        assert!(!w.path("journal").exists(), "{file}");
    }

    // The overrides file no longer declares the plan's store: refused, named, not written.
    w.write(
        "overrides.toml",
        &redis_overrides(&[&r], "new-checkout = false\n").replace("relay-redis", "renamed"),
    );
    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("the plan names store \"relay-redis\""),
        "{}",
        run.stderr
    );
    assert_eq!(r.dump(), before);
    // Refused while checking the plan file, before the journal is even created.
    assert!(!w.path("journal").exists(), "no journal, so no flag commit");
}

#[test]
fn rediss_with_a_password_works_and_is_redacted() {
    const SECRET: &str = "tls-s3cr3t-pw";
    let r = Redis::start_tls(SECRET);
    r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    let w = Workspace::new(&redis_overrides(&[&r], "new-checkout = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("rediss://:***@127.0.0.1"), "{}", run.stdout);
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["on"], json!(false));
    let journal = git(&w.path("journal"), &["log", "-p", "--all"]);
    assert!(
        journal.contains(&format!(
            "Store: relay-redis rediss://:***@127.0.0.1:{}/#insecure v42",
            r.port
        )),
        "{journal}"
    );
    assert!(!run.all().contains(SECRET) && !journal.contains(SECRET));
}
