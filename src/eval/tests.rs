//! The engine's side of `relayctl eval` without a store: data supplied by hand, round by round
//! as the engine asks for it; what it consulted judged; the planned view; the rendering.

use super::data::{Needs, TargetData};
use super::render;
use super::{Evaluation, Outcome};
use crate::desired::Override;
use crate::flag::{FlagId, NotAFlag, VariationRef};
use crate::kind::StoreTarget;
use crate::store::Raw;
use launchdarkly_server_sdk_evaluation::{Context, ContextBuilder};
use serde_json::{json, Value};

fn target() -> StoreTarget {
    StoreTarget {
        store: "relay-redis".into(),
        target: "redis://10.0.0.5:6379".into(),
    }
}

fn flag(key: &str, changes: Value) -> Value {
    let mut f = json!({"key": key, "on": true, "prerequisites": [], "targets": [], "rules": [],
        "fallthrough": {"variation": 0}, "offVariation": 1, "variations": ["a", "b"], "salt": "s", "version": 4});
    for (k, v) in changes.as_object().unwrap() {
        f[k] = v.clone();
    }
    f
}

fn user(key: &str) -> Context {
    ContextBuilder::new(key).build().unwrap()
}

fn supply(data: &mut TargetData<'_>, flags: &[(&str, Raw)], segments: &[(&str, Raw)]) {
    let (keys, raws): (Vec<String>, Vec<Raw>) = flags.iter().map(|(k, r)| (k.to_string(), clone(r))).unzip();
    data.supply_flags(&keys, &raws);
    let (keys, raws): (Vec<String>, Vec<Raw>) =
        segments.iter().map(|(k, r)| (k.to_string(), clone(r))).unzip();
    data.supply_segments(&keys, &raws);
}

fn clone(raw: &Raw) -> Raw {
    match raw {
        Raw::Json(j) => Raw::Json(j.clone()),
        Raw::Missing(p) => Raw::Missing(p.clone()),
        Raw::Invalid(e) => Raw::Invalid(NotAFlag::new(e.to_string())),
    }
}

fn json(v: Value) -> Raw {
    Raw::Json(v.to_string())
}

fn served(outcome: &Outcome) -> (Option<Value>, Option<usize>, Value, Vec<String>) {
    match outcome {
        Outcome::Served {
            value,
            variation,
            reason,
            problems,
        } => (value.clone(), *variation, reason.clone(), problems.clone()),
        Outcome::Unknown { why } => panic!("unknown: {why}"),
    }
}

#[test]
fn the_engine_says_what_to_read_and_missing_items_are_problems_beside_the_sdks_answer() {
    let mut data = TargetData::new(target(), ("default", "production"), None);
    let top = flag(
        "top",
        json!({"prerequisites": [{"key": "base", "variation": 0}],
               "rules": [{"id": "r", "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["beta"], "negate": false}],
                          "variation": 1, "trackEvents": false}]}),
    );
    let alice = user("alice");
    let asked = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        data.evaluate("top", &alice, false).unwrap_err(),
        Needs {
            flags: asked(&["top"]),
            segments: Default::default()
        }
    );
    supply(&mut data, &[("top", json(top))], &[]);
    assert_eq!(
        data.evaluate("top", &alice, false).unwrap_err().flags,
        asked(&["base"])
    );
    supply(
        &mut data,
        &[("base", Raw::Missing("no field \"base\"".into()))],
        &[],
    );
    let (value, variation, reason, problems) = served(&data.evaluate("top", &alice, false).unwrap());
    assert_eq!(
        (value, variation),
        (Some(json!("b")), Some(1)),
        "the off variation, as SDKs serve"
    );
    assert_eq!(
        reason,
        json!({"kind": "PREREQUISITE_FAILED", "prerequisiteKey": "base"})
    );
    assert_eq!(
        problems,
        ["prerequisite flag \"base\" is not in this target (no field \"base\"); SDKs reading it count the prerequisite as failed"]
    );

    // With the prerequisite there, the rule's segment is asked for next, then judged.
    supply(&mut data, &[("base", json(flag("base", json!({}))))], &[]);
    assert_eq!(
        data.evaluate("top", &alice, false).unwrap_err().segments,
        asked(&["beta"])
    );
    supply(
        &mut data,
        &[],
        &[("beta", Raw::Missing("no field \"beta\"".into()))],
    );
    let (_, _, reason, problems) = served(&data.evaluate("top", &alice, false).unwrap());
    assert_eq!(reason, json!({"kind": "FALLTHROUGH"}));
    assert!(
        problems[0].starts_with("segment \"beta\" is not in this target"),
        "{problems:?}"
    );
}

#[test]
fn tombstones_big_segments_and_unreadable_items() {
    let mut data = TargetData::new(target(), ("default", "production"), None);
    let gated = flag(
        "gated",
        json!({"rules": [{"id": "r", "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["big"], "negate": false}],
                          "variation": 1, "trackEvents": false}]}),
    );
    supply(
        &mut data,
        &[
            ("gated", json(gated)),
            (
                "gone",
                json(json!({"key": "$deleted", "version": 12, "deleted": true})),
            ),
            ("bytes", Raw::Invalid(NotAFlag::new("it is not UTF-8 text"))),
            ("mistyped", json(flag("mistyped", json!({"on": "off"})))),
        ],
        &[(
            "big",
            json(
                json!({"key": "big", "included": [], "excluded": [], "rules": [], "salt": "x", "unbounded": true, "version": 1}),
            ),
        )],
    );
    let alice = user("alice");
    let (value, variation, reason, problems) = served(&data.evaluate("gone", &alice, false).unwrap());
    assert_eq!((value, variation), (None, None));
    assert_eq!(reason, json!({"kind": "ERROR", "errorKind": "FLAG_NOT_FOUND"}));
    assert_eq!(
        problems,
        ["the flag is not in this target (it is a deleted tombstone, version 12)"]
    );
    for (key, why) in [
        (
            "gated",
            "its rules test big segment \"big\" (\"unbounded\": true)",
        ),
        ("bytes", "the stored flag cannot be read: it is not UTF-8 text"),
        (
            "mistyped",
            "the stored flag cannot be read: the evaluation engine cannot read it: invalid type",
        ),
    ] {
        match data.evaluate(key, &alice, false).unwrap() {
            Outcome::Unknown { why: got } => assert!(got.starts_with(why), "{key}: {got}"),
            other => panic!("{key}: {other:?}"),
        }
    }
}

fn declared(flag: &str, on: bool, off: Option<Value>) -> Override {
    Override {
        id: FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: flag.into(),
        },
        on,
        off_variation: off.map(VariationRef::Value),
        fallthrough: None,
        reason: Some("INC-1".into()),
    }
}

#[test]
fn the_planned_view_is_the_rewrite_apply_makes_prerequisites_included() {
    let overrides = [
        declared("base", false, Some(json!("a"))),
        declared("other", false, Some(json!("nope"))),
    ];
    let mut data = TargetData::new(target(), ("default", "production"), Some(&overrides));
    let top = flag("top", json!({"prerequisites": [{"key": "base", "variation": 0}]}));
    supply(
        &mut data,
        &[
            ("top", json(top)),
            ("base", json(flag("base", json!({})))),
            ("other", json(flag("other", json!({})))),
        ],
        &[],
    );
    let alice = user("alice");
    let now = served(&data.evaluate("base", &alice, false).unwrap());
    let planned = served(&data.evaluate("base", &alice, true).unwrap());
    assert_eq!((now.1, now.2), (Some(0), json!({"kind": "FALLTHROUGH"})));
    assert_eq!(
        (planned.1, planned.2),
        (Some(0), json!({"kind": "OFF"})),
        "off, serving \"a\""
    );
    // top needs base serving variation 0 *and on*: once base is off, top's prerequisite fails.
    let top_planned = served(&data.evaluate("top", &alice, true).unwrap());
    assert_eq!(
        top_planned.2,
        json!({"kind": "PREREQUISITE_FAILED", "prerequisiteKey": "base"})
    );
    assert_eq!(
        served(&data.evaluate("top", &alice, false).unwrap()).2,
        json!({"kind": "FALLTHROUGH"})
    );
    match data.evaluate("other", &alice, true).unwrap() {
        Outcome::Unknown { why } => assert!(
            why.contains(
                "apply cannot write its declared state here (off_variation \"nope\": matches no variation"
            ),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reasons_read_as_words_and_errors_are_counted_once_per_flag_target_and_message() {
    for (reason, text) in [
        (json!({"kind": "OFF"}), "off"),
        (
            json!({"kind": "FALLTHROUGH", "inExperiment": true}),
            "fallthrough (in experiment)",
        ),
        (json!({"kind": "TARGET_MATCH"}), "target match"),
        (
            json!({"kind": "RULE_MATCH", "ruleIndex": 2, "ruleId": "r\u{1b}"}),
            "rule match: index 2, id \"r\\u001b\"",
        ),
        (
            json!({"kind": "PREREQUISITE_FAILED", "prerequisiteKey": "base"}),
            "prerequisite failed: \"base\"",
        ),
        (
            json!({"kind": "ERROR", "errorKind": "MALFORMED_FLAG"}),
            "error: MALFORMED_FLAG (the application's default is served)",
        ),
    ] {
        assert_eq!(render::reason_text(&reason), text);
    }
    let id = FlagId {
        project: "default".into(),
        environment: "production".into(),
        flag: "f".into(),
    };
    let unknown = |context| Evaluation {
        id: id.clone(),
        context,
        target: target(),
        now: Outcome::Unknown {
            why: "a big segment".into(),
        },
        planned: None,
    };
    let names = ["alice".to_owned(), "bob".to_owned(), "carol".to_owned()];
    let evaluations = [unknown(0), unknown(1), unknown(2)];
    assert_eq!(
        render::errors(&evaluations, &names),
        ["default/production/f for alice and 2 more context(s) in relay-redis redis://10.0.0.5:6379: cannot evaluate here because a big segment"]
    );
    let doc: Value = serde_json::from_str(&render::to_json(&evaluations[..1], &names)).unwrap();
    assert_eq!(
        doc,
        json!({"format_version": 1, "results": [{"project": "default", "environment": "production", "flag": "f",
            "context": "alice", "store": "relay-redis", "target": "redis://10.0.0.5:6379", "value": null,
            "variation": null, "reason": null, "error": "cannot evaluate here because a big segment"}]})
    );
}
