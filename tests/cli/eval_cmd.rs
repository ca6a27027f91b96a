//! `relayctl eval`: one line per flag, context and target (snapshotted), the shorthand contexts
//! and where a context comes from; what a target lacks, a big segment, an unreadable item, an
//! unreachable target, a malformed context: each an error naming it (exit 1), after every line
//! that could be given; hostile stored text escaped; the `--json` shape. eval never writes.
//! Its answers themselves are checked against the Python SDK in `eval_conformance`.

use crate::support::eval_data::{flag, segment};
use crate::support::fixtures::{evaluate_contexts, overrides, redis_overrides, redis_sdk_store, PREFIX};
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};

/// The incident's flag: `new-checkout` serves `true` (the broken path) to New Zealand and to the
/// beta segment, needs `payments-v2`, and targets two customers individually.
fn checkout(on: bool) -> Value {
    let mut f = flag("new-checkout", json!([false, true]), json!({"variation": 0}));
    f["on"] = json!(on);
    f["prerequisites"] = json!([{"key": "payments-v2", "variation": 0}]);
    f["targets"] = json!([{"variation": 1, "values": ["cust-17"]}, {"variation": 0, "values": ["cust-99"]}]);
    f["rules"] = json!([
        {"id": "nz-first", "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"], "negate": false}],
         "variation": 1, "trackEvents": false},
        {"id": "beta", "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["beta-customers"], "negate": false}],
         "variation": 1, "trackEvents": false}
    ]);
    f
}

/// Two Redis hosts holding the incident's flags, except that host b has `new-checkout` turned
/// off (a write that reached one host only).
fn two_hosts() -> (Redis, Redis, Workspace) {
    let (a, b) = (Redis::start(), Redis::start());
    let payments = flag("payments-v2", json!(["on", "off"]), json!({"variation": 0}));
    let beta = segment("beta-customers", json!({"included": ["cust-42"]}));
    for (r, on) in [(&a, true), (&b, false)] {
        r.seed(PREFIX, &[checkout(on), payments.clone()]);
        r.seed_segments(PREFIX, std::slice::from_ref(&beta));
    }
    let w = Workspace::new(&redis_overrides(&[&a, &b], ""));
    (a, b, w)
}

/// `text` with every run of spaces made one, to check a line whatever its columns' widths.
fn squeeze(text: &str) -> String {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn render(run: &crate::support::Run, a: &Redis, b: &Redis) -> String {
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    run.render(&[(&pa, "[PORT-A]"), (&pb, "[PORT-B]")])
}

#[test]
fn an_incident_question_gets_one_line_per_target() {
    let (a, b, w) = two_hosts();
    let before = (a.dump(), b.dump());
    let run = w.run([
        "eval",
        "default/production/new-checkout",
        "default/production/payments-v2",
        "--user",
        "cust-42",
        "--attr",
        "country=DE",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    insta::assert_snapshot!(render(&run, &a, &b));
    assert_eq!((a.dump(), b.dump()), before, "eval must not write");

    // The same context given as JSON, from a file, from standard input, or built with a kind.
    let json = r#"{"kind": "user", "key": "cust-42", "country": "DE"}"#;
    w.write("customer.json", json);
    let flag = "default/production/new-checkout";
    for (args, stdin) in [
        (vec!["--context", json], ""),
        (vec!["--context", "@customer.json"], ""),
        (vec!["--context", "-"], json),
        (
            vec![
                "--context-kind",
                "user",
                "--key",
                "cust-42",
                "--attr",
                "country=DE",
            ],
            "",
        ),
    ] {
        let same = w.cmd(["eval", flag]).args(&args).stdin(stdin).run();
        assert_eq!(same.code, 0, "{args:?}: {}", same.all());
        let lines = |r: &crate::support::Run| r.stdout.lines().take(2).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(lines(&same), lines(&run), "{args:?}");
    }
    let nz = w.run(["eval", flag, "--user", "cust-7", "--attr", "country=NZ", "--json"]);
    let doc: Value = serde_json::from_str(&nz.stdout).unwrap();
    assert_eq!(
        doc["results"][0]["reason"],
        json!({"kind": "RULE_MATCH", "ruleIndex": 0, "ruleId": "nz-first"})
    );
}

#[test]
fn json_is_one_document_with_the_spec_shape() {
    let (a, _b, w) = two_hosts();
    let run = w.run([
        "eval",
        "default/production/new-checkout",
        "--context",
        r#"[{"kind": "user", "key": "cust-17"}, {"kind": "multi", "user": {"key": "x"}, "org": {"key": "acme"}}]"#,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stderr, "", "--json keeps stderr quiet when all is well");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["format_version"], json!(1));
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "two contexts on two targets");
    assert_eq!(
        results[0],
        json!({"project": "default", "environment": "production", "flag": "new-checkout", "context": "cust-17",
               "store": "relay-redis", "target": a.url(), "value": true, "variation": 1,
               "reason": {"kind": "TARGET_MATCH"}})
    );
    assert_eq!(results[1]["reason"], json!({"kind": "OFF"}));
    assert_eq!(results[2]["context"], json!("org:acme:user:x"));
    assert_eq!(results[2]["reason"], json!({"kind": "FALLTHROUGH"}));

    // --planned: the declared state as value/variation/reason, what the target holds as "now".
    w.write(
        "overrides.toml",
        &redis_overrides(&[&a], "new-checkout = { on = false, reason = \"INC-4711\" }\n"),
    );
    let planned = w.run([
        "eval",
        "default/production/new-checkout",
        "--user",
        "cust-17",
        "--json",
        "--planned",
    ]);
    assert_eq!(planned.code, 0, "{}", planned.all());
    let doc: Value = serde_json::from_str(&planned.stdout).unwrap();
    let r = &doc["results"][0];
    assert_eq!(
        (&r["value"], &r["reason"]),
        (&json!(false), &json!({"kind": "OFF"}))
    );
    assert_eq!(
        r["now"],
        json!({"value": true, "variation": 1, "reason": {"kind": "TARGET_MATCH"}})
    );
    let human = w.run([
        "eval",
        "default/production/new-checkout",
        "--user",
        "cust-17",
        "--planned",
    ]);
    assert!(
        human
            .stdout
            .contains("apply changes this; now: true, variation 1, target match"),
        "{}",
        human.all()
    );
}

#[test]
fn what_a_target_lacks_is_an_error_naming_it_after_the_sdks_answer() {
    let r = Redis::start();
    // The prerequisite and the segment never reached this store (a partial restore, say).
    r.seed(PREFIX, &[checkout(true)]);
    let w = Workspace::new(&redis_overrides(&[&r], ""));
    let contexts = [json!({"kind": "user", "key": "cust-1", "country": "DE"})];
    let run = w.run([
        "eval",
        "default/production/new-checkout",
        "default/production/no-such-flag",
        "--context",
        &contexts[0].to_string(),
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc: Value = serde_json::from_str(&run.stdout).expect("the results are printed first");
    let results = doc["results"].as_array().unwrap();
    let sdk = evaluate_contexts(&redis_sdk_store(&r), &["new-checkout", "no-such-flag"], &contexts);
    for (result, flag) in results.iter().zip(["new-checkout", "no-such-flag"]) {
        let served = &sdk[0][flag];
        let value = match &result["value"] {
            Value::Null => json!("<default>"),
            v => v.clone(),
        };
        assert_eq!(
            (value, &result["variation"], &result["reason"]),
            (
                served["value"].clone(),
                &served["variation_index"],
                &served["reason"]
            ),
            "{flag}: relayctl answers what the SDK serves from this store"
        );
    }
    assert_eq!(
        results[0]["reason"],
        json!({"kind": "PREREQUISITE_FAILED", "prerequisiteKey": "payments-v2"})
    );
    let hash = format!("{PREFIX}:features");
    for expected in [
        format!(
            "error: default/production/new-checkout for cust-1 in relay-redis {}: prerequisite flag \"payments-v2\" is not in \
             this target (no field \"payments-v2\" in hash {hash}); SDKs reading it count the prerequisite as failed",
            r.url()
        ),
        format!("error: default/production/no-such-flag for cust-1 in relay-redis {}: the flag is not in this target", r.url()),
        "error: 2 evaluations above are incomplete".to_owned(),
    ] {
        assert!(run.stderr.contains(&expected), "{expected}\n---\n{}", run.stderr);
    }

    // With the prerequisite back, the missing segment is what the rules consult.
    r.seed(
        PREFIX,
        &[flag("payments-v2", json!(["on", "off"]), json!({"variation": 0}))],
    );
    let run = w.run(["eval", "default/production/new-checkout", "--user", "cust-1"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        squeeze(&run.stdout).contains("false variation 0 fallthrough"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "segment \"beta-customers\" is not in this target (no field \"beta-customers\" in hash {PREFIX}:segments); \
             SDKs reading it count the context as outside it"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_big_segment_or_an_unreadable_item_cannot_be_evaluated_here() {
    let r = Redis::start();
    let mut f = flag("gated", json!(["old", "new"]), json!({"variation": 0}));
    f["targets"] = json!([{"variation": 1, "values": ["vip"]}]);
    f["rules"] = json!([{"id": "big", "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["whales"], "negate": false}],
                         "variation": 1, "trackEvents": false}]);
    r.seed(PREFIX, &[f]);
    r.seed_segments(
        PREFIX,
        &[segment("whales", json!({"unbounded": true, "generation": 4}))],
    );
    let w = Workspace::new(&redis_overrides(&[&r], ""));
    let contexts = [
        json!({"kind": "user", "key": "vip"}),
        json!({"kind": "user", "key": "someone"}),
    ];
    let args = [
        "eval",
        "default/production/gated",
        "--context",
        &Value::from(contexts.to_vec()).to_string(),
    ];
    let run = w.run(args);
    assert_eq!(run.code, 1, "{}", run.all());
    let lines: Vec<String> = run.stdout.lines().map(squeeze).collect();
    assert!(
        lines[0].contains("gated vip \"new\" variation 1 target match"),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].contains("gated someone ? - cannot evaluate here"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "error: default/production/gated for someone in relay-redis {}: cannot evaluate here because its rules \
             test big segment \"whales\" (\"unbounded\": true)",
            r.url()
        )),
        "{}",
        run.stderr
    );
    // The named case the SDK and relayctl cannot share: without a big segment store the SDK
    // answers "not a member" and says it could not look (NOT_CONFIGURED); relayctl says so.
    let sdk = evaluate_contexts(&redis_sdk_store(&r), &["gated"], &contexts);
    assert_eq!(
        sdk[1]["gated"]["reason"]["bigSegmentsStatus"],
        json!("NOT_CONFIGURED")
    );
    assert_eq!(sdk[0]["gated"]["reason"], json!({"kind": "TARGET_MATCH"}));

    r.set_raw(PREFIX, "gated", "{\"key\": \"gated\", \"on\": \"yes\"}");
    let run = w.run(["eval", "default/production/gated", "--user", "vip", "--json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let error = doc["results"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("cannot evaluate here because the stored flag cannot be read: the evaluation engine cannot read it: invalid type"),
        "{error}"
    );
    assert_eq!(doc["results"][0]["value"], Value::Null);
}

#[test]
fn an_unreachable_target_is_an_error_and_the_others_still_answer() {
    let (a, mut b, w) = two_hosts();
    b.kill();
    let run = w.run(["eval", "default/production/new-checkout", "--user", "cust-17"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let lines: Vec<String> = run.stdout.lines().map(squeeze).collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].contains(&format!("true variation 1 target match relay-redis {}", a.url())),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].contains("cannot evaluate here") && lines[1].contains(&b.url()),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "cannot evaluate here because the stored flag cannot be read: cannot read relay-redis {}: cannot connect to {}",
            b.url(),
            b.url()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_malformed_context_names_the_field_at_fault_and_nothing_is_evaluated() {
    let (_a, _b, w) = two_hosts();
    let flag = "default/production/new-checkout";
    w.write(
        "bad.json",
        r#"[{"kind": "user", "key": "ok"}, {"kind": "multi", "org": {"name": "Acme"}}]"#,
    );
    for (args, expected) in [
        (
            vec!["--context", r#"{"kind": "user", "key": 17}"#],
            "the --context JSON is not a valid LaunchDarkly context: \"key\" is 17, not a string (the evaluation engine says: invalid type: integer `17`, expected a string); fix that field",
        ),
        (
            vec!["--context", "@bad.json"],
            "the context file bad.json, context 2 of the array is not a valid LaunchDarkly context: in kind \"org\", it has no \"key\"",
        ),
        (vec!["--context", "@missing.json"], "cannot read the context file missing.json: No such file"),
        (vec!["--context", "{\"kind\": "], "the --context JSON is not JSON (EOF while parsing"),
        (vec!["--context-kind", "org!", "--key", "acme"], "the context of kind \"org!\" and key \"acme\" is not valid: context kind contains disallowed characters"),
        (vec!["--user", "alice", "--attr", "country"], "--attr country: expected name=value, e.g. --attr country=NZ"),
        (vec!["--user", "alice", "--context", "{}"], "cannot be used with"),
        (vec![], "the following required arguments were not provided"),
    ] {
        let run = w.cmd(["eval", flag]).args(&args).run();
        assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{args:?}: {}", run.all());
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    let run = w.run(["eval", "default/production", "--user", "a"]);
    assert!(
        run.stderr.contains("names no flag: eval takes PROJECT/ENV/FLAG"),
        "{}",
        run.stderr
    );
}

#[test]
fn hostile_stored_text_is_escaped_in_lines_and_errors() {
    // A flag file (no server) whose variation values, rule id and missing segment's key carry
    // terminal escapes, a bidirectional override and a line break.
    let mut f = flag(
        "hostile",
        json!(["\u{1b}]0;owned\u{7}", "a\u{202e}b"]),
        json!({"variation": 0}),
    );
    f["rules"] = json!([
        {"id": "r\u{1b}[2J", "clauses": [{"attribute": "key", "op": "in", "values": ["x"], "negate": false}],
         "variation": 1, "trackEvents": false},
        {"id": "s", "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["seg\nerror: forged"], "negate": false}],
         "variation": 1, "trackEvents": false}
    ]);
    let file = json!({"flags": {"hostile": f}, "segments": {}});
    let w = Workspace::new(&overrides(
        "[[store]]\ntype = \"file\"\npath = \"flags/{project}-{environment}.json\"\n\n",
        "",
    ));
    w.write("flags/default-production.json", &file.to_string());
    for user in ["x", "y"] {
        let run = w.run(["eval", "default/production/hostile", "--user", user]);
        let all = run.all();
        for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(
                !all.contains(bad),
                "{user}: {bad:?} reached the terminal: {all:?}"
            );
        }
        assert!(!all.contains("\nerror: forged"), "{user}: a forged line: {all}");
        let escaped = ["\\u001b", "\\u{202e}"];
        assert!(
            escaped.iter().any(|e| all.contains(e)),
            "{user}: escaped, still visible: {all}"
        );
    }
    let run = w.run(["eval", "default/production/hostile", "--user", "y"]);
    assert_eq!(run.code, 1, "the segment is missing: {}", run.all());
    assert!(
        run.stderr
            .contains("segment \"seg\\nerror: forged\" is not in this target"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_store_password_never_shows_in_lines_json_or_errors() {
    let r = Redis::start_with_password("s3cret-Pa55");
    r.seed(PREFIX, &[checkout(true)]);
    let w = Workspace::new(&redis_overrides(&[&r], ""));
    let flag = "default/production/new-checkout";
    for args in [vec!["--user", "cust-17"], vec!["--user", "cust-17", "--json"]] {
        let run = w.cmd(["eval", flag]).args(&args).run();
        assert_eq!(run.code, 1, "payments-v2 is missing: {}", run.all());
        assert!(
            !run.all().contains("s3cret-Pa55"),
            "{args:?}: leaked: {}",
            run.all()
        );
        assert!(
            run.all().contains(&format!("redis://:***@127.0.0.1:{}", r.port)),
            "{}",
            run.all()
        );
    }
    let wrong = redis_overrides(&[&r], "").replace("s3cret-Pa55", "wrong-Pa55");
    w.write("overrides.toml", &wrong);
    let run = w.run(["eval", flag, "--user", "cust-17"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("cannot evaluate here"), "{}", run.all());
    assert!(!run.all().contains("Pa55"), "leaked: {}", run.all());
}
