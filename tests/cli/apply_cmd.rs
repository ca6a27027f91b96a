//! `relayctl apply`: what it writes to the store (and what it must not touch), the journal
//! commit it makes per flag, saved plans, stale plans, and refusing to run unattended.

use crate::support::fixtures::{bool_flag, edited, flag, redis_overrides, PREFIX};
use crate::support::{git, Dump, DumpValue, Redis, Run, Workspace};
use serde_json::{json, Value};

const SEGMENTS: &str = "ld:default:production:segments";

/// One Redis with managed flags, an unmanaged flag, a segment and `$inited`; a flag carrying
/// properties relayctl has never heard of.
fn seeded() -> Redis {
    let r = Redis::start();
    let mut checkout = bool_flag("new-checkout", 41);
    checkout["futureProperty"] = json!({"nested": [1, 2.5, "x"], "null": null});
    checkout["_meta"] = json!("kept");
    r.seed(
        PREFIX,
        &[
            checkout,
            flag("pricing-page", 17, true, json!(["control", "treatment"])),
            flag("recommendations", 8, true, json!(["v2", "v1", "off"])),
            bool_flag("unmanaged", 9),
        ],
    );
    redis::cmd("HSET")
        .arg(SEGMENTS)
        .arg("beta-users")
        .arg(r#"{"key":"beta-users","included":["alice"],"excluded":[],"rules":[],"salt":"s","version":4,"deleted":false}"#)
        .exec(&mut r.conn())
        .unwrap();
    r
}

const FLAGS: &str = "new-checkout = { on = false, reason = \"INC-4711: checkout returns 500\" }\n\
pricing-page = { on = false, off_variation = \"control\", reason = \"INC-4711\" }\n\
recommendations = { on = true, fallthrough = \"v1\" }\n";

fn raw(dump: &Dump, key: &str, field: &str) -> String {
    match &dump[key] {
        DumpValue::Hash(h) => h[field].clone(),
        other => panic!("{key} is {other:?}"),
    }
}

#[test]
fn auto_approve_writes_only_the_managed_properties_and_journals_each_flag() {
    let r = seeded();
    let before = r.dump();
    let w = Workspace::new(&redis_overrides(&[&r], FLAGS));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let port = r.port.to_string();
    insta::with_settings!({filters => vec![(r"journal [0-9a-f]{7}", "journal [SHA]")]}, {
        insta::assert_snapshot!(run.render(&[(&port, "[PORT]"), (&w.root(), "[WS]")]));
    });
    let after = r.dump();

    // Everything but the three managed flags is byte-for-byte what it was.
    let features = format!("{PREFIX}:features");
    for (key, value) in &before {
        if *key != features {
            assert_eq!(after.get(key), Some(value), "{key} changed");
        }
    }
    assert_eq!(after.len(), before.len(), "apply added or removed keys");
    assert_eq!(
        raw(&after, &features, "unmanaged"),
        raw(&before, &features, "unmanaged")
    );

    // The changed flags: the stored JSON with only on / offVariation / fallthrough / version
    // changed, in the same property order, with JSON booleans and integers.
    let expect = |flag: &str, changes: Value| {
        let v: Value = serde_json::from_str(&raw(&before, &features, flag)).unwrap();
        assert_eq!(
            raw(&after, &features, flag),
            edited(&v, changes).to_string(),
            "{flag}"
        );
    };
    expect("new-checkout", json!({"on": false, "version": 42}));
    expect(
        "pricing-page",
        json!({"on": false, "offVariation": 0, "version": 18}),
    );
    expect(
        "recommendations",
        json!({"fallthrough": {"variation": 1}, "version": 9}),
    );
    assert!(raw(&after, &features, "new-checkout").contains(r#""on":false"#));

    // One commit per flag, with the SPEC's message: subject, reason as body, trailers.
    let store = format!("Store: relay-redis {}", r.url());
    assert_eq!(
        w.journal_messages(),
        vec![
            format!(
                "default/production/new-checkout: turn off\n\nINC-4711: checkout returns 500\n\n\
                 Project: default\nEnvironment: production\nFlag: new-checkout\nOn: false\n\
                 Previous-On: true\nBase-Version: 41\n{store} v42"
            ),
            format!(
                "default/production/pricing-page: turn off, serve \"control\" when off\n\nINC-4711\n\n\
                 Project: default\nEnvironment: production\nFlag: pricing-page\nOn: false\n\
                 Previous-On: true\nBase-Version: 17\nOff-Variation: 0\n{store} v18"
            ),
            format!(
                "default/production/recommendations: fall through to \"v1\"\n\n\
                 Project: default\nEnvironment: production\nFlag: recommendations\nOn: true\n\
                 Previous-On: true\nBase-Version: 8\nFallthrough: 1\n{store} v9"
            ),
        ]
    );
    let journal = w.path("journal");
    // git itself reads the trailers.
    let trailers = git(
        &journal,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Fallthrough,valueonly)%(trailers:key=Store,valueonly)",
        ],
    );
    assert_eq!(trailers.trim(), format!("1\nrelay-redis {} v9", r.url()));
    let authors = git(&journal, &["log", "--format=%an <%ae>"]);
    assert!(
        authors
            .lines()
            .all(|a| a == "Test Operator <operator@example.com>"),
        "{authors}"
    );
    // The tree holds each flag's state, each variation by index and value; the working tree is
    // checked out.
    assert_eq!(
        w.read("journal/default/production/pricing-page.toml"),
        "# default/production/pricing-page: override state written by relayctl\non = false\n\
         off_variation = { index = 0, value = \"control\" }\nreason = \"INC-4711\"\n"
    );
    assert_eq!(git(&journal, &["status", "--porcelain"]), "");

    // A re-run has nothing to do: no write, no commit.
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("No changes"), "{}", run.stderr);
    assert_eq!(r.dump(), after);
    assert_eq!(w.journal_commits(), 4);
}

#[test]
fn without_a_terminal_or_auto_approve_it_refuses_and_writes_nothing() {
    let r = seeded();
    let before = r.dump();
    let w = Workspace::new(&redis_overrides(&[&r], FLAGS));
    let run = w.run(["apply"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("no terminal"), "{}", run.stderr);
    assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    assert!(
        run.stdout.contains("Plan: 3 to change"),
        "the plan is shown: {}",
        run.stdout
    );
    assert_eq!(r.dump(), before);
    assert!(
        !w.path("journal").exists(),
        "a refused apply must not create the journal"
    );
}

#[test]
fn a_saved_plan_is_applied_exactly_even_if_the_overrides_file_changed() {
    let r = seeded();
    let w = Workspace::new(&redis_overrides(&[&r], "new-checkout = false\n"));
    let run = w.run(["plan", "--out", "p.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // After the plan was reviewed, someone edits the overrides file: apply p.json ignores it.
    w.write(
        "overrides.toml",
        &redis_overrides(&[&r], "new-checkout = false\npricing-page = false\n"),
    );
    let before = r.dump();
    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let after = r.dump();
    let features = format!("{PREFIX}:features");
    for f in ["pricing-page", "recommendations", "unmanaged"] {
        assert_eq!(raw(&after, &features, f), raw(&before, &features, f), "{f}");
    }
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["on"], json!(false));
    assert_eq!(w.journal_commits(), 2);
    // Applying the same plan again: every target is now stale, nothing is written twice.
    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("stale plan"), "{}", run.stderr);
    assert_eq!(r.dump(), after);
    assert_eq!(w.journal_commits(), 2);
}

#[test]
fn a_flag_changed_since_the_plan_is_refused_as_stale_and_the_others_applied() {
    let r = seeded();
    let w = Workspace::new(&redis_overrides(&[&r], FLAGS));
    assert_eq!(w.run(["plan", "--out", "p.json"]).code, 0);
    // A concurrent writer (Relay, LD coming back) changes pricing-page: v17 -> v18.
    let mut theirs = r.flag(PREFIX, "pricing-page").unwrap();
    theirs["version"] = json!(18);
    theirs["rules"] = json!([]);
    r.set_raw(PREFIX, "pricing-page", &theirs.to_string());
    // Relay also rewrites an unrelated flag in the same hash: that makes nothing stale.
    let unrelated = flag("unmanaged", 10, false, json!([true, false]));
    r.set_raw(PREFIX, "unmanaged", &unrelated.to_string());

    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("pricing-page"))
        .unwrap_or_else(|| panic!("no error names the stale flag: {}", run.stderr));
    assert!(line.contains("stale plan"), "{line}");
    assert!(line.contains("v18") && line.contains("v17"), "{line}");
    assert!(line.contains(&r.url()), "{line}");
    // The stale flag keeps the concurrent writer's value, byte for byte.
    assert_eq!(r.flag(PREFIX, "pricing-page").unwrap(), theirs);
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["version"], json!(42));
    assert_eq!(r.flag(PREFIX, "recommendations").unwrap()["version"], json!(9));
    assert_eq!(r.flag(PREFIX, "unmanaged").unwrap(), unrelated);
    let subjects: Vec<String> = w
        .journal_log()
        .iter()
        .map(|l| l.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects,
        [
            "Start the relayctl journal",
            "default/production/new-checkout: turn off",
            "default/production/recommendations: fall through to \"v1\"",
        ]
    );
    // A fresh plan shows exactly what is left: the refused flag, at its new version.
    let run = w.run(["plan"]);
    assert!(
        run.stdout.contains("Plan: 1 to change, 2 unchanged."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("pricing-page") && run.stdout.contains("(v18)"),
        "{}",
        run.stdout
    );
}

#[test]
fn prefixes_default_to_launchdarkly_and_exact_prefixes_win() {
    let (a, b) = (Redis::start(), Redis::start());
    let f = || bool_flag("new-checkout", 41);
    // a: the SDK/Relay default prefix. b: an auto-config $CID prefix, and a decoy under the template.
    a.seed("launchdarkly", &[f()]);
    b.seed("5f3c0ffee0ddba11", &[f()]);
    b.seed("ld:default:staging", &[f()]);
    let w = Workspace::new(&format!(
        "[[store]]\nname = \"plain\"\ntype = \"redis\"\nurl = \"{}\"\n\n\
         [[store]]\nname = \"auto-config\"\ntype = \"redis\"\nurl = \"{}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\
         [store.prefixes]\n\"default/staging\" = \"5f3c0ffee0ddba11\"\n\n\
         [overrides.default.staging]\nnew-checkout = false\n",
        a.url(),
        b.url()
    ));
    let before = b.dump();
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        a.flag("launchdarkly", "new-checkout").unwrap()["version"],
        json!(42)
    );
    assert_eq!(
        b.flag("5f3c0ffee0ddba11", "new-checkout").unwrap()["version"],
        json!(42)
    );
    let after = b.dump();
    assert_eq!(
        after["ld:default:staging:features"],
        before["ld:default:staging:features"]
    );
    assert_eq!(
        after["ld:default:staging:$inited"],
        before["ld:default:staging:$inited"]
    );
}

#[test]
fn the_operators_git_identity_is_the_author_before_relayctl_author() {
    let r = seeded();
    let w = Workspace::new(&redis_overrides(&[&r], "new-checkout = false\n"));
    // HOME is the workspace: this is the operator's global git config.
    w.write(
        ".gitconfig",
        "[user]\n\tname = Jane Oncall\n\temail = jane@example.com\n",
    );
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let authors = git(&w.path("journal"), &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]);
    assert_eq!(
        authors.trim(),
        "Jane Oncall <jane@example.com>|Jane Oncall <jane@example.com>"
    );
}

/// Runs `relayctl apply` on a pseudo-terminal (util-linux `script`), typing `answer`.
fn apply_on_a_terminal(w: &Workspace, answer: &str) -> Run {
    w.cmd(["apply"])
        .on_terminal()
        .stdin(format!("{answer}\n"))
        .timeout(std::time::Duration::from_secs(30))
        .run()
}

#[test]
fn on_a_terminal_only_yes_applies() {
    let r = seeded();
    let before = r.dump();
    let w = Workspace::new(&redis_overrides(&[&r], FLAGS));
    for answer in ["no", "y"] {
        let run = apply_on_a_terminal(&w, answer);
        // script merges stdout and stderr: the terminal shows both.
        assert_eq!(run.code, 1, "{answer}: {}", run.all());
        assert!(
            run.stdout
                .contains("Apply these changes? Only 'yes' is accepted:"),
            "{answer}: {}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("the answer was not 'yes'. Nothing was written"),
            "{}",
            run.stdout
        );
        assert_eq!(r.dump(), before, "{answer}");
        assert!(!w.path("journal").exists(), "{answer}: no journal");
    }
    let run = apply_on_a_terminal(&w, "yes");
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("Apply complete: 3 flag(s) changed"),
        "{}",
        run.stdout
    );
    assert_eq!(w.journal_commits(), 4);
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["on"], json!(false));
}

#[test]
fn a_database_number_in_the_url_selects_that_database() {
    let r = Redis::start();
    let f = bool_flag("new-checkout", 41);
    r.seed(PREFIX, std::slice::from_ref(&f));
    let mut db2 = redis::Client::open(format!("{}/2", r.url()))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("HSET")
        .arg(format!("{PREFIX}:features"))
        .arg("new-checkout")
        .arg(f.to_string())
        .exec(&mut db2)
        .unwrap();
    let text = redis_overrides(
        &[&r],
        "new-checkout = { on = false, reason = \"Line one.\\n\\nTicket: INC-9\" }\n",
    )
    .replace(&format!("\"{}\"", r.url()), &format!("\"{}/2\"", r.url()));
    let w = Workspace::new(&text);
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap(), f, "db 0 untouched");
    let stored: String = redis::cmd("HGET")
        .arg(format!("{PREFIX}:features"))
        .arg("new-checkout")
        .query(&mut db2)
        .unwrap();
    assert!(stored.contains(r#""on":false"#), "{stored}");
    // A multi-paragraph reason stays in the body; the trailers are still the last paragraph.
    let journal = w.path("journal");
    assert_eq!(
        git(&journal, &["log", "-1", "--format=%b"])
            .split("\n\nProject:")
            .next()
            .unwrap(),
        "Line one.\n\nTicket: INC-9"
    );
    assert_eq!(
        git(
            &journal,
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Store,valueonly)%(trailers:key=Ticket,valueonly)"
            ]
        )
        .trim(),
        format!("relay-redis {}/2 v42", r.url())
    );
}

#[test]
fn a_saved_plan_without_changes_applies_nothing_and_creates_no_journal() {
    let r = seeded();
    let w = Workspace::new(&redis_overrides(&[&r], "unmanaged = true\n"));
    let run = w.run(["plan", "--out", "p.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("Plan: 0 to change, 1 unchanged."),
        "{}",
        run.stdout
    );
    let before = r.dump();
    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("nothing to apply"), "{}", run.stderr);
    assert_eq!(r.dump(), before);
    assert!(!w.path("journal").exists());
}

#[test]
fn git_log_p_shows_each_change_of_a_flag_as_a_diff() {
    let r = seeded();
    let w = Workspace::new(&redis_overrides(
        &[&r],
        "new-checkout = { on = false, reason = \"INC-1\" }\n",
    ));
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    w.write(
        "overrides.toml",
        &redis_overrides(&[&r], "new-checkout = { on = true, reason = \"INC-1 fixed\" }\n"),
    );
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(r.flag(PREFIX, "new-checkout").unwrap()["version"], json!(43));
    let journal = w.path("journal");
    let diff = git(
        &journal,
        &[
            "log",
            "-1",
            "-p",
            "--format=",
            "--",
            "default/production/new-checkout.toml",
        ],
    );
    for line in [
        "-on = false\n",
        "+on = true\n",
        "-reason = \"INC-1\"\n",
        "+reason = \"INC-1 fixed\"\n",
    ] {
        assert!(diff.contains(line), "{line:?} in {diff}");
    }
    let trailers = git(
        &journal,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=On)%(trailers:key=Previous-On)%(trailers:key=Base-Version)",
        ],
    );
    assert_eq!(trailers.trim(), "On: true\nPrevious-On: false\nBase-Version: 42");
    assert_eq!(
        git(&journal, &["log", "-1", "--format=%s"]).trim(),
        "default/production/new-checkout: turn on"
    );
}
