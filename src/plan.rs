//! The planner: a pure function from desired state and observed store contents to a [`Plan`].
//!
//! No I/O, no clock: the same inputs give the same plan, in `BTreeMap` order, so it is tested with
//! tables and snapshotted. A plan is a value: `plan --out` saves it as JSON and `apply` executes
//! exactly that value, checking per target that the store still holds the version planned against.
//! A saved plan is only a file, so before it is applied [`check_saved`] holds it against the
//! overrides file and what the stores hold now.

use crate::desired::{self, Override};
use crate::flag::{find_variation, FlagId, Serve, StoreTarget, Targeting, Variation, VariationRef};
use crate::store::{Lookup, Observed};
use crate::ui;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The version of the plan JSON (`plan --json`, `plan --out`).
pub const FORMAT_VERSION: u32 = 1;

/// One flag on one target that must change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(flatten)]
    pub id: FlagId,
    #[serde(flatten)]
    pub target: StoreTarget,
    /// The flag version observed in the store; apply refuses if it moved.
    pub version: u64,
    pub from: Targeting,
    pub to: Targeting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A declared flag that cannot be planned on a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub id: FlagId,
    pub target: StoreTarget,
    pub message: String,
}

/// The changes that make the stores match the overrides file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub changes: Vec<Change>,
    /// Flag/target pairs that already match.
    pub unchanged: usize,
    /// Flags that cannot be planned: with any, nothing may be applied.
    #[serde(skip)]
    pub problems: Vec<Problem>,
    /// Things the operator should know before applying.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Plain Redis keys that must change (`[keys.<store>]`), applied after the flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<crate::keys::KeyChange>,
    /// Declared keys that cannot be planned, one message each: with any, nothing may be applied.
    #[serde(skip)]
    pub key_problems: Vec<String>,
}

impl Plan {
    /// Reads a plan saved by `relayctl plan --out`.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan file {}", path.display()))?;
        let plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a plan saved by `relayctl plan --out`", path.display()))?;
        if plan.format_version != FORMAT_VERSION {
            bail!(
                "the plan file {} has format_version {}, this relayctl reads {FORMAT_VERSION}; make a new plan with this version",
                path.display(),
                plan.format_version,
            );
        }
        Ok(plan)
    }

    /// The plan as JSON, as `--json` prints it and `--out` saves it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serializes")
    }

    /// Saves the plan for `relayctl apply FILE`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json() + "\n")
            .with_context(|| format!("saving the plan to {}", path.display()))
    }

    /// The changes grouped per flag, in flag order: one journal commit each.
    pub fn by_flag(&self) -> BTreeMap<&FlagId, Vec<&Change>> {
        let mut out: BTreeMap<&FlagId, Vec<&Change>> = BTreeMap::new();
        for c in &self.changes {
            out.entry(&c.id).or_default().push(c);
        }
        out
    }
}

/// Plans `desired` against `observed`.
pub fn plan(desired: &[Override], observed: &Observed) -> Plan {
    let mut plan = Plan {
        format_version: FORMAT_VERSION,
        changes: Vec::new(),
        unchanged: 0,
        problems: Vec::new(),
        warnings: Vec::new(),
        keys: Vec::new(),
        key_problems: Vec::new(),
    };
    for o in desired {
        if o.reason.as_deref() == Some("") {
            plan.warnings.push(format!(
                "{} has an empty reason: say why before you apply (apply refuses to write it until then).",
                o.id
            ));
        }
        for (target, lookup) in observed.get(&o.id).into_iter().flatten() {
            match plan_target(o, target, lookup) {
                Ok(None) => plan.unchanged += 1,
                Ok(Some((change, warning))) => {
                    plan.changes.push(change);
                    plan.warnings.extend(warning);
                }
                Err(message) => plan.problems.push(Problem {
                    id: o.id.clone(),
                    target: target.clone(),
                    message,
                }),
            }
        }
    }
    plan
}

/// The change (and a warning) that makes `target` hold `o`, `None` when it already does, or why
/// it cannot be planned.
fn plan_target(
    o: &Override,
    target: &StoreTarget,
    lookup: &Lookup,
) -> Result<Option<(Change, Option<String>)>, String> {
    let flag = match lookup {
        Lookup::Found(f) if f.deleted => {
            return Err(format!(
                "the flag is deleted in the store (a tombstone at version {}); relayctl does not \
                 resurrect deleted flags: remove it from the overrides file",
                f.version
            ))
        }
        Lookup::Found(f) => f,
        Lookup::Missing { place } => {
            return Err(format!(
                "the flag is not in the store ({place}); check the flag key and the store's prefix"
            ))
        }
        Lookup::Invalid(e) => {
            return Err(format!(
                "the stored value is not a flag relayctl can rewrite safely: {e}"
            ))
        }
    };
    let resolve = |slot: &str, r: &Option<VariationRef>| -> Result<Option<Serve>, String> {
        let Some(r) = r else { return Ok(None) };
        find_variation(r, flag.variations())
            .map(|v| Some(Serve::Variation(v)))
            .map_err(|e| format!("{slot} {r}: {e}"))
    };
    let to = Targeting {
        on: o.on,
        off_variation: resolve("off_variation", &o.off_variation)?,
        fallthrough: resolve("fallthrough", &o.fallthrough)?,
    };
    let from = flag.targeting_like(&to);
    if from == to {
        return Ok(None);
    }
    flag.next_version()
        .map_err(|e| format!("the stored value is not a flag relayctl can rewrite safely: {e}"))?;
    let serves_off = to.off_variation.as_ref().unwrap_or(flag.off_variation());
    let warning = (!to.on && *serves_off == Serve::Unset).then(|| {
        format!(
            "{} has no off variation in {target}: once off, SDKs serve the application's \
             fallback value, not a flag variation. Set off_variation to choose one.",
            o.id
        )
    });
    let change = Change {
        id: o.id.clone(),
        target: target.clone(),
        version: flag.version,
        from,
        to,
        reason: o.reason.clone(),
    };
    Ok(Some((change, warning)))
}

/// What a saved plan's target holds now, for [`check_saved`].
#[derive(Debug, Clone, Copy)]
pub enum TargetNow<'a> {
    /// What the store holds.
    Read(&'a Lookup),
    /// Declared, but it could not be read: its write fails, or the store's own check refuses a
    /// variation it does not have.
    Unreadable,
    /// Not a target the overrides file declares for the flag.
    Undeclared,
}

/// Checks a saved plan against the overrides file (`desired`) and the stores (`now`): every
/// change names a declared flag (a valid key) with the state and reason declared, and a declared
/// store target, once; where the store still holds the version planned against, every variation
/// the plan serves is there at its index, serving the value the plan recorded, and `from` is
/// what the store holds. A target that moved since is left to the write, which refuses it as a
/// stale plan. Returns one message per bad change, naming it; empty when the plan is sound.
pub fn check_saved<'a>(
    saved: &Plan,
    desired: &[Override],
    now: impl Fn(&Change) -> TargetNow<'a>,
) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for c in &saved.changes {
        let mut problems = Vec::new();
        if !seen.insert((&c.id, &c.target)) {
            problems.push("the plan lists it more than once".to_owned());
        }
        match (desired::check_id(&c.id), desired.iter().find(|o| o.id == c.id)) {
            (Err(e), _) => problems.push(e),
            (Ok(()), None) => problems.push("the overrides file does not declare this flag".to_owned()),
            (Ok(()), Some(o)) => {
                problems.extend(declared_problems(o, c));
                match now(c) {
                    TargetNow::Undeclared => problems.push(format!(
                        "the plan names store {:?} target {}, which the overrides file does not declare for this flag",
                        c.target.store, c.target.target
                    )),
                    TargetNow::Read(Lookup::Found(flag)) if !flag.deleted && flag.version == c.version => {
                        problems.extend(stored_problems(flag, c));
                    }
                    TargetNow::Read(_) | TargetNow::Unreadable => {}
                }
            }
        }
        if !problems.is_empty() {
            out.push(format!("{} in {}: {}", c.id, c.target, problems.join("; ")));
        }
    }
    out
}

/// How a change differs from what the overrides file declares for its flag.
fn declared_problems(o: &Override, c: &Change) -> Vec<String> {
    let mut problems = Vec::new();
    if c.to.on != o.on {
        problems.push(format!(
            "the plan sets on = {}, but the overrides file declares on = {}",
            c.to.on, o.on
        ));
    }
    for (slot, declared, planned) in [
        ("off_variation", &o.off_variation, &c.to.off_variation),
        ("fallthrough", &o.fallthrough, &c.to.fallthrough),
    ] {
        let same = match (declared, planned) {
            (None, None) => true,
            (Some(VariationRef::Index(i)), Some(Serve::Variation(v))) => v.index == *i,
            (Some(r @ VariationRef::Value(_)), Some(Serve::Variation(v))) => {
                find_variation(r, std::slice::from_ref(&v.value)).is_ok()
            }
            _ => false,
        };
        if !same {
            let declared = declared.as_ref().map_or("none".to_owned(), ToString::to_string);
            problems.push(format!(
                "the plan's {slot} is not the one the overrides file declares ({declared})"
            ));
        }
    }
    if c.reason != o.reason {
        problems.push("its reason is not the one the overrides file gives".to_owned());
    }
    problems
}

/// How a change differs from the flag the store holds at the version it was planned against.
fn stored_problems(flag: &crate::flag::StoredFlag, c: &Change) -> Vec<String> {
    let mut problems = Vec::new();
    let variations = flag.variations();
    let slots = [
        ("off_variation", &c.to.off_variation),
        ("fallthrough", &c.to.fallthrough),
    ];
    for (slot, planned) in slots {
        let Some(Serve::Variation(v)) = planned else {
            continue;
        };
        match variations.get(v.index) {
            None => problems.push(format!(
                "{slot} index {} does not exist: the flag has {} variation(s)",
                v.index,
                variations.len()
            )),
            Some(value) if !serves(v, variations) => problems.push(format!(
                "{slot} index {} serves {value}, not {} as the plan says",
                v.index, v.value
            )),
            Some(_) => {}
        }
    }
    if flag.targeting_like(&c.to) != c.from {
        problems.push("the state the plan says it changes from is not what the store holds".to_owned());
    }
    problems
}

/// Whether `v` is at its index among `variations`, serving its value.
fn serves(v: &Variation, variations: &[serde_json::Value]) -> bool {
    matches!(v.locate(variations), Ok(found) if found.index == v.index)
}

/// Renders the plan for people: one line per flag and target, then the summary.
/// Styled for a terminal; printing through `anstream` drops the styles where colour is off.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let rows: Vec<(String, String, String)> = plan
        .changes
        .iter()
        .map(|c| {
            (
                c.id.to_string(),
                c.from.differences(&c.to).join(", "),
                format!("{} ({})", c.target, version(c.version)),
            )
        })
        .collect();
    let w_id = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w_diff = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (id, diff, target) in &rows {
        let _ = writeln!(
            out,
            "  {} {id:<w_id$}   {diff:<w_diff$}   {target}",
            ui::paint(ui::CHANGE, "~")
        );
    }
    out += &crate::keys::render_rows(&plan.keys);
    let _ = write!(
        out,
        "Plan: {} to change, {} unchanged",
        plan.changes.len() + plan.keys.len(),
        plan.unchanged
    );
    if !plan.problems.is_empty() || !plan.key_problems.is_empty() {
        let _ = write!(
            out,
            ", {} {}",
            plan.problems.len() + plan.key_problems.len(),
            ui::paint(ui::ERROR, "cannot be planned")
        );
    }
    out.push_str(".\n");
    out
}

/// Renders the problems and warnings, the plan's diagnostics (for stderr).
pub fn render_diagnostics(plan: &Plan) -> String {
    let mut out = String::new();
    for p in &plan.problems {
        let _ = writeln!(
            out,
            "{} {} in {}: {}",
            ui::paint(ui::ERROR, "error:"),
            p.id,
            p.target,
            p.message
        );
    }
    for p in &plan.key_problems {
        let _ = writeln!(out, "{} {p}", ui::paint(ui::ERROR, "error:"));
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "{} {w}", ui::paint(ui::WARNING, "warning:"));
    }
    out
}

fn version(v: u64) -> String {
    format!("v{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flag::{StoredFlag, Variation};
    use serde_json::{json, Value};

    fn id(flag: &str) -> FlagId {
        FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: flag.into(),
        }
    }

    fn target() -> StoreTarget {
        StoreTarget {
            store: "relay-redis".into(),
            target: "redis://10.0.0.5:6379".into(),
        }
    }

    fn found(v: Value) -> Lookup {
        Lookup::Found(StoredFlag::parse(&v.to_string()).unwrap())
    }

    fn ov(flag: &str, on: bool, off: Option<VariationRef>, ft: Option<VariationRef>) -> Override {
        Override {
            id: id(flag),
            on,
            off_variation: off,
            fallthrough: ft,
            reason: None,
        }
    }

    fn run(o: Override, lookup: Lookup) -> Plan {
        let observed = Observed::from([(o.id.clone(), vec![(target(), lookup)])]);
        plan(&[o], &observed)
    }

    fn var(i: usize, v: Value) -> Option<Serve> {
        Some(Serve::Variation(Variation { index: i, value: v }))
    }

    const AB: fn(bool) -> Value = |on| json!({"key": "f", "on": on, "offVariation": 1, "fallthrough": {"variation": 0}, "variations": ["a", "b", 3], "version": 7});

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            o: Override,
            lookup: Lookup,
            changes: Vec<(Targeting, Targeting)>,
            unchanged: usize,
            problem: Option<&'static str>,
        }
        let t = |on, off, ft| Targeting {
            on,
            off_variation: off,
            fallthrough: ft,
        };
        let cases = vec![
            Case { name: "turn off", o: ov("f", false, None, None), lookup: found(AB(true)), changes: vec![(t(true, None, None), t(false, None, None))], unchanged: 0, problem: None },
            Case { name: "already off", o: ov("f", false, None, None), lookup: found(AB(false)), changes: vec![], unchanged: 1, problem: None },
            Case {
                name: "off variation by value",
                o: ov("f", true, Some(VariationRef::Value(json!("a"))), None),
                lookup: found(AB(true)),
                changes: vec![(t(true, var(1, json!("b")), None), t(true, var(0, json!("a")), None))],
                unchanged: 0, problem: None,
            },
            Case {
                name: "number matches integer-valued float",
                o: ov("f", true, None, Some(VariationRef::Value(json!(3.0)))),
                lookup: found(AB(true)),
                changes: vec![(t(true, None, var(0, json!("a"))), t(true, None, var(2, json!(3))))],
                unchanged: 0, problem: None,
            },
            Case {
                name: "fallthrough by index, rollout before",
                o: ov("f", true, None, Some(VariationRef::Index(1))),
                lookup: found(json!({"key": "f", "on": true, "fallthrough": {"rollout": {"variations": []}}, "variations": ["a", "b"], "version": 2})),
                changes: vec![(t(true, None, Some(Serve::Rollout)), t(true, None, var(1, json!("b"))))],
                unchanged: 0, problem: None,
            },
            Case { name: "same off variation is a no-op", o: ov("f", true, Some(VariationRef::Index(1)), None), lookup: found(AB(true)), changes: vec![], unchanged: 1, problem: None },
            Case { name: "missing", o: ov("f", true, None, None), lookup: Lookup::Missing { place: "hash launchdarkly:features".into() }, changes: vec![], unchanged: 0, problem: Some("not in the store (hash launchdarkly:features)") },
            Case { name: "tombstone", o: ov("f", true, None, None), lookup: found(json!({"key": "$deleted", "version": 9, "deleted": true})), changes: vec![], unchanged: 0, problem: Some("deleted in the store (a tombstone at version 9)") },
            Case { name: "not a flag", o: ov("f", true, None, None), lookup: Lookup::Invalid(StoredFlag::parse("{}").unwrap_err()), changes: vec![], unchanged: 0, problem: Some("not a flag relayctl can rewrite safely: it has no \"version\"") },
            Case { name: "value matches none", o: ov("f", false, Some(VariationRef::Value(json!("c"))), None), lookup: found(AB(true)), changes: vec![], unchanged: 0, problem: Some("off_variation \"c\": matches no variation; the flag's variations are 0: \"a\", 1: \"b\", 2: 3") },
            Case { name: "index out of range", o: ov("f", true, None, Some(VariationRef::Index(5))), lookup: found(AB(true)), changes: vec![], unchanged: 0, problem: Some("fallthrough { index = 5 }: index 5 is out of range") },
            Case {
                name: "value matches several",
                o: ov("f", false, Some(VariationRef::Value(json!(true))), None),
                lookup: found(json!({"key": "f", "variations": [true, true], "version": 1})),
                changes: vec![], unchanged: 0, problem: Some("matches several variations (0, 1); name one with { index = N }"),
            },
        ];
        for c in cases {
            let p = run(c.o, c.lookup);
            let got: Vec<_> = p.changes.iter().map(|c| (c.from.clone(), c.to.clone())).collect();
            assert_eq!(got, c.changes, "{}", c.name);
            assert_eq!(p.unchanged, c.unchanged, "{}", c.name);
            match c.problem {
                Some(want) => {
                    assert_eq!(p.problems.len(), 1, "{}", c.name);
                    assert!(
                        p.problems[0].message.contains(want),
                        "{}: {}",
                        c.name,
                        p.problems[0].message
                    );
                }
                None => assert!(p.problems.is_empty(), "{}: {:?}", c.name, p.problems),
            }
        }
    }

    #[test]
    fn change_records_observed_version_and_reason() {
        let mut o = ov("f", false, None, None);
        o.reason = Some("INC-1".into());
        let p = run(o, found(AB(true)));
        assert_eq!(p.changes[0].version, 7);
        assert_eq!(p.changes[0].reason.as_deref(), Some("INC-1"));
    }

    #[test]
    fn warns_when_off_would_serve_the_fallback_value() {
        let p = run(
            ov("f", false, None, None),
            found(json!({"key": "f", "on": true, "variations": [true, false], "version": 1})),
        );
        assert_eq!(p.changes.len(), 1);
        assert!(p.warnings[0].contains("has no off variation"), "{:?}", p.warnings);
        let p = run(ov("f", false, None, None), found(AB(true)));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn warns_about_an_empty_reason() {
        let mut o = ov("f", false, None, None);
        o.reason = Some(String::new());
        let p = run(o.clone(), found(AB(true)));
        assert_eq!(p.changes.len(), 1, "an empty reason is planned like any other");
        assert_eq!(
            p.warnings,
            ["default/production/f has an empty reason: say why before you apply (apply refuses to write it until then)."]
        );
        o.reason = None;
        assert!(run(o, found(AB(true))).warnings.is_empty());
    }

    #[test]
    fn json_shape_is_the_spec() {
        let p = run(
            ov("f", false, Some(VariationRef::Index(0)), None),
            found(AB(true)),
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            json!({"format_version": 1, "unchanged": 0, "changes": [{
                "project": "default", "environment": "production", "flag": "f",
                "store": "relay-redis", "target": "redis://10.0.0.5:6379", "version": 7,
                "from": {"on": true, "off_variation": {"variation": {"index": 1, "value": "b"}}},
                "to": {"on": false, "off_variation": {"variation": {"index": 0, "value": "a"}}}
            }]})
        );
        let back: Plan = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_saved_plan_is_checked_against_the_overrides_and_the_store() {
        let declared = {
            let mut o = ov("f", false, Some(VariationRef::Value(json!("a"))), None);
            o.reason = Some("INC-1".into());
            o
        };
        let stored = found(AB(true));
        let good = run(declared.clone(), stored.clone());
        assert_eq!(good.changes.len(), 1);
        let check = |p: &Plan, now: TargetNow| check_saved(p, std::slice::from_ref(&declared), |_| now);
        assert!(check(&good, TargetNow::Read(&stored)).is_empty());
        let moved = found(json!({"key": "f", "variations": ["x"], "version": 8}));
        assert!(
            check(&good, TargetNow::Read(&moved)).is_empty(),
            "a stale target is the write's to refuse"
        );
        assert!(check(&good, TargetNow::Unreadable).is_empty());

        type Edit = fn(&mut Change);
        let cases: [(&str, Edit, TargetNow, &str); 9] = [
            ("index out of range", |c| set_off(c, 99, json!("a")), TargetNow::Read(&stored), "off_variation index 99 does not exist: the flag has 3 variation(s)"),
            ("index serving another value", |c| set_off(c, 1, json!("a")), TargetNow::Read(&stored), "off_variation index 1 serves \"b\", not \"a\" as the plan says"),
            ("another value than declared", |c| set_off(c, 1, json!("b")), TargetNow::Unreadable, "the plan's off_variation is not the one the overrides file declares (\"a\")"),
            ("unset instead of a variation", |c| c.to.off_variation = Some(Serve::Unset), TargetNow::Unreadable, "off_variation is not the one"),
            ("a slot not declared", |c| c.to.fallthrough = var(0, json!("a")), TargetNow::Unreadable, "the plan's fallthrough is not the one the overrides file declares (none)"),
            ("on", |c| c.to.on = true, TargetNow::Unreadable, "the plan sets on = true, but the overrides file declares on = false"),
            ("reason", |c| c.reason = Some("INC-2".into()), TargetNow::Unreadable, "its reason is not the one the overrides file gives"),
            ("from", |c| c.from.on = false, TargetNow::Read(&stored), "the state the plan says it changes from is not what the store holds"),
            ("target", |_| {}, TargetNow::Undeclared, "the plan names store \"relay-redis\" target redis://10.0.0.5:6379, which the overrides file does not declare"),
        ];
        for (name, edit, now, want) in cases {
            let mut p = good.clone();
            edit(&mut p.changes[0]);
            let problems = check(&p, now);
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert!(
                problems[0].starts_with("default/production/f in relay-redis redis://10.0.0.5:6379: ")
                    && problems[0].contains(want),
                "{name}: {problems:?}"
            );
        }
        for (name, edit, want) in [
            ("undeclared project", (|c| c.id.project = "evil".into()) as Edit, "evil/production/f in relay-redis redis://10.0.0.5:6379: the overrides file does not declare this flag"),
            ("not a key", |c| c.id.flag = "a/b".into(), "flag key \"a/b\" is not a LaunchDarkly key"),
        ] {
            let mut p = good.clone();
            edit(&mut p.changes[0]);
            assert_eq!(check(&p, TargetNow::Read(&stored)).len(), 1, "{name}");
            assert!(check(&p, TargetNow::Read(&stored))[0].contains(want), "{name}");
        }
        let mut twice = good.clone();
        twice.changes.push(good.changes[0].clone());
        let problems = check(&twice, TargetNow::Read(&stored));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].ends_with("the plan lists it more than once"),
            "{problems:?}"
        );
    }

    fn set_off(c: &mut Change, index: usize, value: Value) {
        c.to.off_variation = var(index, value);
    }

    #[test]
    fn renders_one_line_per_flag_and_target() {
        let o1 = ov("new-checkout", false, None, None);
        let o2 = ov("pricing-page", false, Some(VariationRef::Value(json!("a"))), None);
        let observed = Observed::from([
            (o1.id.clone(), vec![(target(), found(AB(true)))]),
            (o2.id.clone(), vec![(target(), found(AB(false)))]),
        ]);
        let text = ui::plain(&render(&plan(&[o1, o2], &observed)));
        insta::assert_snapshot!(text);
    }
}
