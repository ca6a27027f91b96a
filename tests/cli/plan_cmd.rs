//! `relayctl plan`: human output, `--json`, `--detailed-exitcode`, `--out`, and stdout/stderr
//! separation. plan never writes: every test also checks that the stores are untouched.

use crate::support::fixtures::{bool_flag, flag, redis_overrides, PREFIX};
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};

/// Two Redis hosts holding the same flags; the overrides change two of them and keep one.
fn setup() -> (Redis, Redis, Workspace) {
    let (a, b) = (Redis::start(), Redis::start());
    for r in [&a, &b] {
        r.seed(
            PREFIX,
            &[
                bool_flag("new-checkout", 41),
                flag("pricing-page", 17, true, json!(["control", "treatment"])),
                bool_flag("search-v2", 3),
                bool_flag("unmanaged", 9),
            ],
        );
    }
    let w = Workspace::new(&redis_overrides(
        &[&a, &b],
        "new-checkout = { on = false, reason = \"INC-4711: checkout returns 500\" }\n\
         pricing-page = { on = false, off_variation = \"control\" }\n\
         search-v2 = true\n",
    ));
    (a, b, w)
}

fn ports<'a>(a: &'a str, b: &'a str) -> [(&'a str, &'a str); 2] {
    [(a, "[PORT-A]"), (b, "[PORT-B]")]
}

#[test]
fn human_output_is_one_line_per_flag_and_target_then_a_summary() {
    let (a, b, w) = setup();
    let before = (a.dump(), b.dump());
    let run = w.run(["plan"]);
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    insta::assert_snapshot!(run.render(&ports(&pa, &pb)));
    assert_eq!((a.dump(), b.dump()), before, "plan must not write");
    assert!(!w.path("journal").exists(), "plan must not create the journal");
}

#[test]
fn json_is_one_document_in_the_spec_shape() {
    let (a, b, w) = setup();
    let before = (a.dump(), b.dump());
    let run = w.run(["plan", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "--json keeps stderr quiet when all is well");
    let doc: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    let change = |flag: &str, r: &Redis, version: u64, from: Value, to: Value| {
        json!({
            "project": "default", "environment": "production", "flag": flag,
            "store": "relay-redis", "target": r.url(), "version": version,
            "from": from, "to": to,
        })
    };
    let mut expected = json!({
        "format_version": 1,
        "changes": [
            change("new-checkout", &a, 41, json!({"on": true}), json!({"on": false})),
            change("new-checkout", &b, 41, json!({"on": true}), json!({"on": false})),
        ],
        "unchanged": 2,
    });
    for r in [&a, &b] {
        expected["changes"].as_array_mut().unwrap().push(change(
            "pricing-page",
            r,
            17,
            json!({"on": true, "off_variation": {"variation": {"index": 1, "value": "treatment"}}}),
            json!({"on": false, "off_variation": {"variation": {"index": 0, "value": "control"}}}),
        ));
    }
    // The reason travels with the change (apply journals it); everything else is the SPEC shape.
    for c in doc["changes"].as_array().unwrap() {
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "project",
            "environment",
            "flag",
            "store",
            "target",
            "version",
            "from",
            "to",
        ] {
            assert!(keys.contains(&k), "change lacks {k}: {c}");
        }
    }
    let mut doc = doc;
    for c in doc["changes"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("reason");
    }
    assert_eq!(doc, expected);
    assert_eq!((a.dump(), b.dump()), before);
}

#[test]
fn detailed_exitcode_is_2_with_changes_and_0_without() {
    let (_a, _b, w) = setup();
    let run = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stdout.contains("Plan: 4 to change, 2 unchanged."),
        "{}",
        run.stdout
    );
    // Without the flag, changes are still success.
    assert_eq!(w.run(["plan"]).code, 0);
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("Plan: 0 to change, 6 unchanged."),
        "{}",
        run.stdout
    );
    let run = w.run(["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["changes"], json!([]));
    assert_eq!(doc["unchanged"], json!(6));
}

#[test]
fn redirected_plan_keeps_diagnostics_and_status_off_stdout() {
    let a = Redis::start();
    // No offVariation: turning it off serves the application's fallback, which plan warns about.
    let mut bare = bool_flag("no-off", 5);
    bare["offVariation"] = Value::Null;
    a.seed(PREFIX, &[bare]);
    let w = Workspace::new(&redis_overrides(&[&a], "no-off = false\n"));
    let out = w.path("saved-plan.json");
    let run = w.run(["plan", "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let pa = a.port.to_string();
    insta::assert_snapshot!(run.render(&[(&w.root(), "[WS]"), (&pa, "[PORT]")]));
    let saved: Value = serde_json::from_str(&w.read("saved-plan.json")).unwrap();
    assert_eq!(saved["format_version"], json!(1));
    assert_eq!(saved["changes"][0]["version"], json!(5));
    // --json output stays parseable even when there are warnings.
    let run = w.run(["plan", "--json"]);
    assert_eq!(run.code, 0);
    serde_json::from_str::<Value>(&run.stdout).expect("--json stdout is pure JSON");
    assert!(run
        .stderr
        .contains("warning: default/production/no-off has no off variation"));
    // --quiet drops status but never data or warnings.
    let run = w.run(["-q", "plan", "--out", out.to_str().unwrap()]);
    assert!(!run.stderr.contains("Saved the plan"), "{}", run.stderr);
    assert!(run.stdout.contains("Plan: 1 to change"), "{}", run.stdout);
}

#[test]
fn colour_is_off_when_piped_and_on_when_asked() {
    let (_a, _b, w) = setup();
    let plain = w.run(["plan"]);
    assert!(!plain.stdout.contains('\x1b'), "{:?}", plain.stdout);
    let coloured = w.run(["--color", "always", "plan"]);
    assert!(
        coloured.stdout.contains("\x1b[33m~\x1b[0m"),
        "{:?}",
        coloured.stdout
    );
    let never = w.run(["--color", "never", "plan"]);
    assert_eq!(never.stdout, plain.stdout);
}
