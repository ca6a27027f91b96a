//! Generated test data for `relayctl eval`'s differential tests: flags and segments as
//! LaunchDarkly stores them, covering every way a flag can decide (individual and context
//! targets, rules on several attributes with every operator, segments with rules, nested
//! segments and weighted rules, percentage rollouts by key, by another attribute and by another
//! context kind, experiments with an untracked slice, prerequisite chains, an off flag), and
//! random contexts (users, organisations, multi-kind) to evaluate them for.
//!
//! Everything comes from one seeded generator: a failure names its seed, and the same seed gives
//! the same data (`RELAYCTL_EVAL_SEED=N` tries another).

use serde_json::{json, Value};

/// The seed unless `RELAYCTL_EVAL_SEED` names another.
pub fn seed() -> u64 {
    std::env::var("RELAYCTL_EVAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_124)
}

/// A clause (`negate` false unless given).
fn clause(attribute: &str, op: &str, values: Value) -> Value {
    json!({"attribute": attribute, "op": op, "values": values, "negate": false})
}

/// A rule serving `variation` when all `clauses` match.
fn rule(id: &str, clauses: Value, serve: Value) -> Value {
    let mut r = json!({"id": id, "clauses": clauses, "trackEvents": false});
    for (k, v) in serve.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// `n` random weights (1/1000 percent) adding up to 100000.
fn weights(rng: &mut fastrand::Rng, n: usize) -> Vec<u64> {
    let mut cuts: Vec<u64> = (0..n - 1).map(|_| rng.u64(0..=100_000)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain([100_000]) {
        out.push(c - last);
        last = c;
    }
    out
}

/// A rollout over `n` variations with random weights; `extra` adds properties (bucketBy, kind...).
fn rollout(rng: &mut fastrand::Rng, n: usize, extra: Value) -> Value {
    let variations: Vec<Value> = weights(rng, n)
        .into_iter()
        .enumerate()
        .map(|(i, w)| json!({"variation": i, "weight": w}))
        .collect();
    let mut r = json!({"variations": variations});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    json!({"rollout": r})
}

/// A flag as Relay stores it: every property present, as LaunchDarkly sends it.
pub fn flag(key: &str, variations: Value, fallthrough: Value) -> Value {
    json!({
        "key": key, "on": true, "prerequisites": [], "targets": [], "contextTargets": [], "rules": [],
        "fallthrough": fallthrough, "offVariation": 0, "variations": variations, "clientSide": false,
        "salt": format!("salt-{key}"), "trackEvents": false, "trackEventsFallthrough": false,
        "debugEventsUntilDate": null, "version": 7, "deleted": false
    })
}

/// `flag` with `changes` set.
fn with(mut flag: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        flag[k] = v.clone();
    }
    flag
}

/// A segment as Relay stores it.
pub fn segment(key: &str, changes: Value) -> Value {
    with(
        json!({"key": key, "included": [], "excluded": [], "includedContexts": [], "excludedContexts": [],
               "rules": [], "salt": format!("salt-{key}"), "unbounded": false, "generation": null,
               "version": 3, "deleted": false}),
        changes,
    )
}

/// The segments the flags test.
pub fn segments() -> Vec<Value> {
    vec![
        segment(
            "beta-testers",
            json!({"included": ["user-3", "user-7"], "excluded": ["user-4", "user-3"],
                   "includedContexts": [{"contextKind": "org", "values": ["org-2"]}],
                   "rules": [{"id": "s1", "clauses": [clause("email", "endsWith", json!(["@example.org"]))]}]}),
        ),
        segment(
            "big-spenders",
            json!({"rules": [{"id": "s2", "clauses": [clause("spend", "greaterThanOrEqual", json!([500]))],
                              "weight": 60000, "bucketBy": "email", "rolloutContextKind": "user"}]}),
        ),
        segment(
            "enterprise",
            json!({"rules": [{"id": "s3", "clauses": [{"contextKind": "org", "attribute": "tier", "op": "in",
                                                     "values": ["enterprise"], "negate": false}]}]}),
        ),
        segment("no-members-yet", json!({})),
        segment(
            "german-testers",
            json!({"excludedContexts": [{"contextKind": "user", "values": ["user-8"]}],
                   "rules": [{"id": "s4", "clauses": [clause("country", "in", json!(["DE"])),
                                                      clause("", "segmentMatch", json!(["beta-testers"]))]}]}),
        ),
    ]
}

/// The flags, from `rng`: each one a way flags decide; their keys are [`FLAGS`].
pub fn flags(rng: &mut fastrand::Rng) -> Vec<Value> {
    let s = |v: &[&str]| json!(v);
    vec![
        with(
            flag("targets", s(&["a", "b", "c"]), json!({"variation": 0})),
            json!({"targets": [{"variation": 1, "values": ["user-1", "user-2"]}, {"variation": 2, "values": ["user-5"]}],
                   "contextTargets": [{"contextKind": "user", "variation": 1, "values": []},
                                      {"contextKind": "org", "variation": 2, "values": ["org-1", "org-3"]}]}),
        ),
        with(
            flag("strings", s(&["zero", "one", "two"]), rollout(rng, 3, json!({}))),
            json!({"rules": [
                rule("r-country", json!([clause("country", "in", json!(["NZ", "AU"]))]), json!({"variation": 1})),
                rule("r-email", json!([clause("email", "endsWith", json!(["@example.com"]))]), json!({"variation": 2})),
                rule("r-plan", json!([clause("plan", "startsWith", json!(["ent"])), clause("name", "contains", json!(["an"]))]), json!({"variation": 1})),
                rule("r-regex", json!([clause("email", "matches", json!(["^[a-f][0-9]+@"]))]), json!({"variation": 0})),
                rule("r-negate", json!([{"attribute": "country", "op": "in", "values": ["US", "DE", "NZ", "AU"], "negate": true},
                                        clause("plan", "in", json!(["free"]))]), rollout(rng, 3, json!({"bucketBy": "email"}))),
            ]}),
        ),
        with(
            flag("numbers", json!([1, 2.5, 100, -3]), json!({"variation": 2})),
            json!({"rules": [
                rule("r-minor", json!([clause("age", "lessThan", json!([18]))]), json!({"variation": 0})),
                rule("r-senior", json!([clause("age", "greaterThanOrEqual", json!([65.5]))]), json!({"variation": 1})),
                rule("r-spend", json!([clause("spend", "lessThanOrEqual", json!([99.5, 10]))]), json!({"variation": 3})),
                rule("r-high", json!([clause("spend", "greaterThan", json!([1000]))]), json!({"variation": 1})),
            ]}),
        ),
        with(
            flag(
                "dates-versions",
                json!([{"v": 0}, {"v": 1}, {"v": 2}, {"v": 3}]),
                json!({"variation": 0}),
            ),
            json!({"rules": [
                rule("r-before", json!([clause("created", "before", json!(["2023-01-01T00:00:00Z"]))]), json!({"variation": 1})),
                rule("r-after", json!([clause("created", "after", json!([1_717_200_000_000_u64]))]), json!({"variation": 2})),
                rule("r-semver-gt", json!([clause("version", "semVerGreaterThan", json!(["2.0.0"]))]), json!({"variation": 3})),
                rule("r-semver-eq", json!([clause("version", "semVerEqual", json!(["1.5.0"]))]), json!({"variation": 1})),
                rule("r-semver-lt", json!([clause("version", "semVerLessThan", json!(["1.0.0"]))]), json!({"variation": 2})),
            ]}),
        ),
        with(
            flag(
                "segments",
                s(&["none", "beta", "spender", "enterprise", "german"]),
                json!({"variation": 0}),
            ),
            json!({"rules": [
                rule("r-german", json!([clause("", "segmentMatch", json!(["german-testers"]))]), json!({"variation": 4})),
                rule("r-beta", json!([clause("", "segmentMatch", json!(["beta-testers"]))]), json!({"variation": 1})),
                rule("r-spend", json!([clause("", "segmentMatch", json!(["no-members-yet", "big-spenders"]))]), json!({"variation": 2})),
                rule("r-ent", json!([clause("", "segmentMatch", json!(["enterprise"]))]), json!({"variation": 3})),
            ]}),
        ),
        flag(
            "rollout-by-country",
            json!([true, false]),
            rollout(rng, 2, json!({"bucketBy": "country", "contextKind": "user"})),
        ),
        flag(
            "rollout-by-org",
            s(&["x", "y", "z"]),
            rollout(rng, 3, json!({"contextKind": "org"})),
        ),
        with(
            flag(
                "experiment",
                s(&["control", "treatment", "holdout"]),
                rollout(rng, 3, json!({"kind": "experiment", "seed": 61})),
            ),
            json!({"rules": [rule("r-exp", json!([clause("plan", "in", json!(["pro"]))]),
                                  json!({"rollout": {"kind": "experiment", "variations": [
                                      {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 40000},
                                      {"variation": 2, "weight": 10000, "untracked": true}]}}))]}),
        ),
        with(
            flag(
                "kinds-and-paths",
                s(&["plain", "org-kind", "city", "admin", "anon"]),
                json!({"variation": 0}),
            ),
            json!({"rules": [
                rule("r-kind", json!([clause("kind", "in", json!(["org"]))]), json!({"variation": 1})),
                rule("r-city", json!([{"contextKind": "user", "attribute": "/address/city", "op": "in",
                                        "values": ["Berlin", "Auckland"], "negate": false}]), json!({"variation": 2})),
                rule("r-groups", json!([clause("groups", "in", json!(["admins"]))]), json!({"variation": 3})),
                rule("r-anon", json!([clause("anonymous", "in", json!([true])), clause("beta", "in", json!([true]))]), json!({"variation": 4})),
            ]}),
        ),
        with(
            flag("prereq-base", json!([true, false]), json!({"variation": 0})),
            json!({"rules": [rule("r-us", json!([clause("country", "in", json!(["US"]))]), json!({"variation": 1}))]}),
        ),
        with(
            flag("prereq-mid", s(&["on", "off"]), rollout(rng, 2, json!({}))),
            json!({"prerequisites": [{"key": "prereq-base", "variation": 0}], "offVariation": 1}),
        ),
        with(
            flag("prereq-top", s(&["new", "old"]), json!({"variation": 0})),
            json!({"prerequisites": [{"key": "prereq-mid", "variation": 0}, {"key": "targets", "variation": 0}],
                   "offVariation": 1}),
        ),
        with(
            flag("switched-off", json!([true, false]), json!({"variation": 0})),
            json!({"on": false, "offVariation": 1}),
        ),
        with(
            flag("needs-off-flag", json!([true, false]), json!({"variation": 0})),
            json!({"prerequisites": [{"key": "switched-off", "variation": 0}], "offVariation": 1}),
        ),
        with(
            flag("no-off-variation", json!([true, false]), json!({"variation": 0})),
            json!({"on": false, "offVariation": null}),
        ),
    ]
}

/// The keys of [`flags`], in order.
pub const FLAGS: [&str; 15] = [
    "targets",
    "strings",
    "numbers",
    "dates-versions",
    "segments",
    "rollout-by-country",
    "rollout-by-org",
    "experiment",
    "kinds-and-paths",
    "prereq-base",
    "prereq-mid",
    "prereq-top",
    "switched-off",
    "needs-off-flag",
    "no-off-variation",
];

/// `items[i]` for a random `i`.
fn pick<T: Clone>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())].clone()
}

/// Sets `name` on `context` to a random one of `values` about half the time.
fn maybe(rng: &mut fastrand::Rng, context: &mut Value, name: &str, values: &[Value]) {
    if rng.bool() {
        context[name] = pick(rng, values);
    }
}

/// A random user (single-kind, or nested in a multi-kind context when `nested`).
fn user(rng: &mut fastrand::Rng, nested: bool) -> Value {
    let key = format!("user-{}", rng.u32(0..40));
    let mut u = match nested {
        true => json!({"key": key}),
        false => json!({"kind": "user", "key": key}),
    };
    maybe(
        rng,
        &mut u,
        "country",
        &[
            json!("NZ"),
            json!("AU"),
            json!("US"),
            json!("DE"),
            json!("FR"),
            json!(null),
            json!(64),
        ],
    );
    let local = format!("{}{}", pick(rng, &["a", "b", "f", "k", "z"]), rng.u32(0..100));
    let domain = pick(rng, &["example.com", "example.org", "corp.test"]);
    maybe(
        rng,
        &mut u,
        "email",
        &[json!(format!("{local}@{domain}")), json!(7)],
    );
    maybe(
        rng,
        &mut u,
        "plan",
        &[
            json!("free"),
            json!("pro"),
            json!("enterprise"),
            json!("ent"),
            json!(["pro"]),
        ],
    );
    maybe(
        rng,
        &mut u,
        "name",
        &[json!("Ann"), json!("Hannah"), json!("Bob"), json!("Zoë Ångström")],
    );
    let (age, spend) = (rng.u32(0..100), rng.u32(0..2000));
    maybe(
        rng,
        &mut u,
        "age",
        &[json!(age), json!(17.9), json!(65.5), json!("42")],
    );
    maybe(
        rng,
        &mut u,
        "spend",
        &[json!(spend), json!(99.5), json!(10), json!(500), json!(true)],
    );
    maybe(
        rng,
        &mut u,
        "created",
        &[
            json!("2022-06-01T12:00:00Z"),
            json!("2024-07-01T00:00:00.500+02:00"),
            json!(1_600_000_000_000_u64),
            json!(1_800_000_000_000_u64),
            json!("yesterday"),
        ],
    );
    maybe(
        rng,
        &mut u,
        "version",
        &[
            json!("1.5.0"),
            json!("2.1.0"),
            json!("2.0.0-rc.1"),
            json!("0.9.9"),
            json!("3.0.0+build.5"),
            json!("not-a-version"),
        ],
    );
    maybe(
        rng,
        &mut u,
        "groups",
        &[
            json!(["admins", "ops"]),
            json!(["users"]),
            json!([]),
            json!("admins"),
        ],
    );
    maybe(
        rng,
        &mut u,
        "address",
        &[
            json!({"city": "Berlin"}),
            json!({"city": "Paris"}),
            json!({"street": "x"}),
        ],
    );
    maybe(rng, &mut u, "beta", &[json!(true), json!(false), json!("true")]);
    if rng.u8(0..10) == 0 {
        u["anonymous"] = json!(true);
    }
    u
}

/// A random organisation (single-kind, or nested when `nested`).
fn org(rng: &mut fastrand::Rng, nested: bool) -> Value {
    let key = format!("org-{}", rng.u32(0..8));
    let mut o = match nested {
        true => json!({"key": key}),
        false => json!({"kind": "org", "key": key}),
    };
    maybe(rng, &mut o, "tier", &[json!("enterprise"), json!("startup")]);
    maybe(rng, &mut o, "country", &[json!("DE"), json!("NZ")]);
    o
}

/// `n` random contexts: mostly users, some organisations, some multi-kind (user and org).
/// No user in the old format (no `kind`): the engine reads it, but the Python SDK (9.x) no
/// longer does (`Context.from_dict` requires `kind`), so the two cannot be compared on it.
pub fn contexts(rng: &mut fastrand::Rng, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| match rng.u8(0..10) {
            0..=5 => user(rng, false),
            6 => org(rng, false),
            _ => json!({"kind": "multi", "user": user(rng, true), "org": org(rng, true)}),
        })
        .collect()
}
