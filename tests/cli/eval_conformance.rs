//! `relayctl eval` against the real LaunchDarkly Python server SDK (daemon mode,
//! tests/conformance/evaluate.py) reading the same Redis and the same DynamoDB (moto): generated
//! flags and segments (support/eval_data.rs) and 2,000 seeded random contexts; relayctl's value,
//! variation and whole reason must be the SDK's for every flag, context and target. And the
//! `--planned` view must be what `eval` (and the SDK) give once apply has written it.
//!
//! Each side runs once per batch: one relayctl run evaluates every context on both targets, one
//! Python process per store evaluates every context. A failure names the seed
//! (`RELAYCTL_EVAL_SEED=N` reruns with another).
//!
//! Cases the two legitimately cannot share are left out of the random data, and said here:
//! - users in the old format (no `kind`): the engine reads them, the Python SDK 9.x refuses them;
//! - big segments: the SDK without a big segment store answers "not a member" with
//!   `bigSegmentsStatus: NOT_CONFIGURED`, relayctl says it cannot evaluate (eval_cmd tests it);
//! - a rollout bucket within about 1e-7 of a slice's edge: the engine buckets in f32, the Python
//!   SDK in f64 (no seeded context here lands there; another seed could, rarely).

use crate::support::eval_data::{self, FLAGS};
use crate::support::fixtures::{
    dynamodb_sdk_store, evaluate_contexts, overrides, redis_sdk_store, redis_store, PREFIX,
};
use crate::support::moto::Moto;
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const TABLE: &str = "ld-relay";
const CONTEXTS: usize = 2_000;

/// The two stores of the overrides file: `relay-redis` and `relay-ddb`, both under [`PREFIX`].
fn stores(redis: &Redis, moto: &Moto) -> String {
    format!(
        "{}[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"{TABLE}\"\nendpoint_url = \"{}\"\n\
         prefix = \"ld:{{project}}:{{environment}}\"\n\n",
        redis_store(&[redis.secret_url()]),
        moto.endpoint()
    )
}

/// `eval --json` of every flag of [`FLAGS`] for the contexts in the workspace file `contexts`,
/// with `more` arguments; its results, after checking the run succeeded.
fn eval_json(w: &Workspace, contexts: &str, more: &[&str]) -> Vec<Value> {
    let flags = FLAGS.iter().map(|f| format!("default/production/{f}"));
    let run = w
        .cmd(["eval"])
        .args(flags)
        .args(["--context", &format!("@{contexts}"), "--json"])
        .args(more)
        .aws()
        .run();
    assert_eq!(run.code, 0, "seed {}: {}", eval_data::seed(), run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["format_version"], json!(1));
    doc["results"].as_array().unwrap().clone()
}

/// (value, variation, reason) of a relayctl result, as the SDK reports them ("<default>" for the
/// application's default value).
fn answer(result: &Value) -> (Value, Value, Value) {
    let value = match (&result["value"], &result["variation"]) {
        (Value::Null, Value::Null) => json!("<default>"),
        (v, _) => v.clone(),
    };
    (value, result["variation"].clone(), result["reason"].clone())
}

/// (value, variation, reason) of one flag in one context's SDK result.
fn sdk_answer(sdk: &Value) -> (Value, Value, Value) {
    (
        sdk["value"].clone(),
        sdk["variation_index"].clone(),
        sdk["reason"].clone(),
    )
}

/// Compares relayctl's `results` (context, then flag, then target, as eval orders them) with
/// what the SDK served on each target (`sdk[target][context][flag]`); returns the mismatches.
fn mismatches(results: &[Value], sdk: &[Vec<Value>], contexts: &[Value], targets: &[&str]) -> Vec<String> {
    let per_context = FLAGS.len() * targets.len();
    assert_eq!(results.len(), contexts.len() * per_context);
    let mut out = Vec::new();
    for (i, result) in results.iter().enumerate() {
        let (c, f, t) = (
            i / per_context,
            i / targets.len() % FLAGS.len(),
            i % targets.len(),
        );
        assert_eq!(
            (result["flag"].as_str(), result["store"].as_str()),
            (Some(FLAGS[f]), Some(targets[t])),
            "result {i} is out of order: {result}"
        );
        let expected = sdk_answer(&sdk[t][c][FLAGS[f]]);
        if answer(result) != expected {
            out.push(format!(
                "{} on {}: context {}: relayctl {:?}, the SDK {:?}",
                FLAGS[f],
                targets[t],
                contexts[c],
                answer(result),
                expected
            ));
        }
    }
    out
}

#[test]
fn eval_serves_what_the_python_sdk_serves_on_redis_and_dynamodb() {
    let seed = eval_data::seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let flags = eval_data::flags(&mut rng);
    let contexts = eval_data::contexts(&mut rng, CONTEXTS);
    let segments = eval_data::segments();
    let redis = Redis::start();
    redis.seed(PREFIX, &flags);
    redis.seed_segments(PREFIX, &segments);
    // DynamoDB missed two writes that reached Redis: the targets must disagree where it shows.
    let mut behind = flags.clone();
    for f in behind.iter_mut() {
        match f["key"].as_str() {
            Some("strings") => f["on"] = json!(false),
            Some("prereq-base") => f["fallthrough"] = json!({"variation": 1}),
            _ => {}
        }
    }
    let moto = Moto::start();
    moto.create_table(TABLE);
    moto.seed(TABLE, Some(PREFIX), &behind);
    moto.seed_segments(TABLE, PREFIX, &segments);
    let w = Workspace::new(&overrides(&stores(&redis, &moto), ""));
    w.write("contexts.json", &Value::from(contexts.clone()).to_string());

    let results = eval_json(&w, "contexts.json", &[]);
    let sdk = [
        evaluate_contexts(&redis_sdk_store(&redis), &FLAGS, &contexts),
        evaluate_contexts(&dynamodb_sdk_store(&moto, TABLE), &FLAGS, &contexts),
    ];
    let wrong = mismatches(&results, &sdk, &contexts, &["relay-redis", "relay-ddb"]);
    assert!(
        wrong.is_empty(),
        "seed {seed}: {} of {} evaluations differ from the Python SDK's; the first:\n{}",
        wrong.len(),
        results.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert_coverage(&flags, &results);
    let differ = |flag: &str| {
        results
            .chunks(2)
            .filter(|pair| pair[0]["flag"] == json!(flag) && answer(&pair[0]) != answer(&pair[1]))
            .count()
    };
    for flag in ["strings", "prereq-base", "prereq-mid", "prereq-top"] {
        assert!(
            differ(flag) > 0,
            "{flag}: Redis and DynamoDB should disagree for some contexts"
        );
    }
    assert_eq!(differ("numbers"), 0, "where the stores agree, so do the answers");
}

/// Checks the data exercised what it is for, on the Redis target: every rule of every flag
/// matched some context, and every kind of reason (experiments included) was given.
fn assert_coverage(flags: &[Value], results: &[Value]) {
    let on_redis = results.iter().filter(|r| r["store"] == json!("relay-redis"));
    let reasons: BTreeSet<String> = on_redis
        .map(|r| {
            let reason = &r["reason"];
            let id = reason["ruleId"].as_str().unwrap_or("");
            let experiment = reason["inExperiment"].as_bool().unwrap_or(false);
            format!("{} {id} {experiment}", reason["kind"].as_str().unwrap())
        })
        .collect();
    let rule_ids = flags
        .iter()
        .flat_map(|f| f["rules"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap());
    for id in rule_ids {
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with(&format!("RULE_MATCH {id} "))),
            "seed {}: no context matched rule {id}; reasons given: {reasons:#?}",
            eval_data::seed()
        );
    }
    for kind in [
        "OFF",
        "FALLTHROUGH",
        "TARGET_MATCH",
        "PREREQUISITE_FAILED",
        "FALLTHROUGH  true",
        "RULE_MATCH r-exp true",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(kind)),
            "no evaluation gave {kind}: {reasons:#?}"
        );
    }
}

#[test]
fn the_planned_view_is_what_eval_and_the_sdk_give_after_apply() {
    let mut rng = fastrand::Rng::with_seed(eval_data::seed() + 1);
    let flags = eval_data::flags(&mut rng);
    let contexts = eval_data::contexts(&mut rng, 300);
    let redis = Redis::start();
    redis.seed(PREFIX, &flags);
    redis.seed_segments(PREFIX, &eval_data::segments());
    // A prerequisite turned off (its dependants change too), a rollout replaced by one variation,
    // an off flag turned on, an experiment stopped on its holdout.
    let declared = "prereq-base = { on = false, off_variation = false, reason = \"INC-9\" }\n\
                    strings = { on = true, fallthrough = \"two\", reason = \"INC-9\" }\n\
                    switched-off = { on = true, reason = \"INC-9\" }\n\
                    experiment = { on = false, off_variation = \"holdout\", reason = \"INC-9\" }\n";
    let w = Workspace::new(&overrides(&redis_store(&[redis.secret_url()]), declared));
    w.write("contexts.json", &Value::from(contexts.clone()).to_string());

    let now = eval_json(&w, "contexts.json", &[]);
    let planned = eval_json(&w, "contexts.json", &["--planned"]);
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let after = eval_json(&w, "contexts.json", &[]);

    let answers = |results: &[Value]| results.iter().map(answer).collect::<Vec<_>>();
    assert_eq!(
        answers(&planned),
        answers(&after),
        "--planned shows what apply then serves"
    );
    let before: Vec<_> = planned.iter().map(|r| answer(&r["now"])).collect();
    assert_eq!(
        before,
        answers(&now),
        "--planned's \"now\" is what eval gave before apply"
    );
    let changed = before
        .iter()
        .zip(answers(&after))
        .filter(|(b, a)| *b != a)
        .count();
    assert!(
        changed > contexts.len(),
        "the declarations change many answers: {changed}"
    );
    for flag in ["prereq-mid", "prereq-top", "needs-off-flag"] {
        let moved = planned
            .iter()
            .filter(|r| r["flag"] == json!(flag) && answer(r) != answer(&r["now"]))
            .count();
        assert!(
            moved > 0,
            "{flag} depends on a declared flag: its answers change too"
        );
    }
    let sdk = [evaluate_contexts(&redis_sdk_store(&redis), &FLAGS, &contexts)];
    let wrong = mismatches(&after, &sdk, &contexts, &["relay-redis"]);
    assert!(
        wrong.is_empty(),
        "after apply: {}",
        wrong[..wrong.len().min(10)].join("\n")
    );
}
