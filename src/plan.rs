//! The planner: a pure function from desired state and observed store contents to a [`Plan`],
//! written once for every kind of item ([`Plannable`]: flags in [`flags`], plain keys in
//! [`keys`]).
//!
//! No I/O, no clock: the same inputs give the same plan, in `BTreeMap` order, so it is tested with
//! tables and snapshotted. A plan is a value: `plan --out` saves it as JSON and `apply` executes
//! exactly that value, checking per target that the store still holds what was planned against.
//! A saved plan is only a file, so before it is applied [`check_saved`] holds it against the
//! overrides file and what the stores hold now.

mod flags;
mod keys;

use crate::flag::{Flag, FlagChange};
use crate::key::{Key, KeyChange};
use crate::kind::{Kind, Observed, StoreTarget};
use crate::ui;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// The version of the plan JSON (`plan --json`, `plan --out`).
pub const FORMAT_VERSION: u32 = 1;

/// A kind of item the planner plans: how it is declared and compared with what a target holds.
pub trait Plannable: Kind {
    /// One declaration of the overrides file.
    type Declared;
    /// Every declaration of this kind in the overrides file.
    fn declared(config: &crate::desired::Config) -> &[Self::Declared];
    fn declared_id(d: &Self::Declared) -> Self::Id;
    fn declared_reason(d: &Self::Declared) -> Option<&str>;
    /// The change (and a warning) that makes a target holding `held` hold `d`, `None` when it
    /// already does, or why it cannot be planned.
    #[allow(clippy::type_complexity)]
    fn plan_target(
        d: &Self::Declared,
        target: &StoreTarget,
        held: &Self::Held,
    ) -> Result<Option<(Self::Change, Option<String>)>, String>;
    /// How a saved change differs from what the overrides file declares for its item.
    fn declared_problems(d: &Self::Declared, c: &Self::Change) -> Vec<String>;
    /// How a saved change differs from what its target holds now, where that is still what the
    /// plan was made against (otherwise the write refuses it as stale).
    fn stored_problems(c: &Self::Change, held: &Self::Held) -> Vec<String>;
    /// Why an id a plan file names is not one the overrides file could declare, if so.
    fn id_problem(id: &Self::Id) -> Option<String>;
    /// A change as a line of the plan, in columns (the last one not padded).
    fn row(c: &Self::Change) -> Vec<String>;
    /// This kind's part of a plan.
    fn part(plan: &Plan) -> &Part<Self>;
    fn part_mut(plan: &mut Plan) -> &mut Part<Self>;
}

/// A declared item that cannot be planned on a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem<K: Kind> {
    pub id: K::Id,
    pub target: StoreTarget,
    pub message: String,
}

/// One kind's part of a plan: its changes, and the declared items that cannot be planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Part<K: Kind> {
    pub changes: Vec<K::Change>,
    /// With any, nothing may be applied.
    pub problems: Vec<Problem<K>>,
}

impl<K: Kind> Default for Part<K> {
    fn default() -> Self {
        Part {
            changes: Vec::new(),
            problems: Vec::new(),
        }
    }
}

impl<K: Kind> Part<K> {
    /// The changes grouped per item, in item order: one journal commit each.
    pub fn by_item(&self) -> Vec<Vec<&K::Change>> {
        let mut out: BTreeMap<K::Id, Vec<&K::Change>> = BTreeMap::new();
        for c in &self.changes {
            out.entry(K::id(c)).or_default().push(c);
        }
        out.into_values().collect()
    }
}

/// The changes that make the stores match the overrides file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "File", into = "File")]
pub struct Plan {
    pub flags: Part<Flag>,
    /// Plain Redis keys (`[keys.<store>]`), applied after the flags.
    pub keys: Part<Key>,
    /// Item/target pairs that already match.
    pub unchanged: usize,
    /// Things the operator should know before applying.
    pub warnings: Vec<String>,
}

/// A plan as JSON: what `plan --json` prints and `plan --out` saves.
#[derive(Clone, Serialize, Deserialize)]
struct File {
    format_version: u32,
    changes: Vec<FlagChange>,
    unchanged: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<KeyChange>,
}

impl From<File> for Plan {
    fn from(f: File) -> Plan {
        Plan {
            flags: Part {
                changes: f.changes,
                problems: Vec::new(),
            },
            keys: Part {
                changes: f.keys,
                problems: Vec::new(),
            },
            unchanged: f.unchanged,
            warnings: Vec::new(),
        }
    }
}

impl From<Plan> for File {
    fn from(p: Plan) -> File {
        File {
            format_version: FORMAT_VERSION,
            changes: p.flags.changes,
            unchanged: p.unchanged,
            keys: p.keys.changes,
        }
    }
}

impl Plan {
    /// Reads a plan saved by `relayctl plan --out`.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan file {}", path.display()))?;
        let not_a_plan = || format!("{} is not a plan saved by `relayctl plan --out`", path.display());
        let version: serde_json::Value = serde_json::from_str(&text).with_context(not_a_plan)?;
        let version = version["format_version"].as_u64();
        if version.is_some_and(|v| v != u64::from(FORMAT_VERSION)) {
            bail!(
                "the plan file {} has format_version {}, this relayctl reads {FORMAT_VERSION}; make a new plan with this version",
                path.display(),
                version.unwrap_or_default(),
            );
        }
        serde_json::from_str(&text).with_context(not_a_plan)
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

    /// Whether the plan changes anything, a flag or a key.
    pub fn has_changes(&self) -> bool {
        !self.flags.changes.is_empty() || !self.keys.changes.is_empty()
    }

    /// How many item/target pairs cannot be planned.
    pub fn problems(&self) -> usize {
        self.flags.problems.len() + self.keys.problems.len()
    }

    /// Plans the items `declared` of kind `K` against what `observed` says their targets hold.
    pub fn add<K: Plannable>(&mut self, declared: &[K::Declared], observed: &Observed<K>) {
        for d in declared {
            let id = K::declared_id(d);
            if K::declared_reason(d) == Some("") {
                self.warnings.push(format!(
                    "{id} has an empty reason: say why before you apply (apply refuses to write it until then)."
                ));
            }
            for (target, held) in observed.get(&id).into_iter().flatten() {
                match K::plan_target(d, target, held) {
                    Ok(None) => self.unchanged += 1,
                    Ok(Some((change, warning))) => {
                        K::part_mut(self).changes.push(change);
                        self.warnings.extend(warning);
                    }
                    Err(message) => K::part_mut(self).problems.push(Problem {
                        id: id.clone(),
                        target: target.clone(),
                        message,
                    }),
                }
            }
        }
    }
}

/// The plan of the items `declared` of one kind against `observed`.
pub fn plan<K: Plannable>(declared: &[K::Declared], observed: &Observed<K>) -> Plan {
    let mut plan = Plan::default();
    plan.add::<K>(declared, observed);
    plan
}

/// What a saved plan's target holds now, for [`check_saved`].
#[derive(Debug)]
pub enum TargetNow<'a, H> {
    /// What the store holds.
    Read(&'a H),
    /// Declared, but it could not be read: its write fails, or the store's own check refuses
    /// what it does not hold.
    Unreadable,
    /// Not a target the overrides file declares for the item.
    Undeclared,
}

// Only a reference: copied whatever `H` is (a derive would ask `H: Copy`).
impl<H> Clone for TargetNow<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for TargetNow<'_, H> {}

/// Checks a saved plan's changes of kind `K` against the overrides file (`declared`) and the
/// stores (`now`): every change names a declared item with the state and reason declared, and a
/// declared store target, once; and where the target still holds what was planned against, it
/// is what the plan says (each variation the plan serves there at its index, serving the value
/// the plan recorded). A target that moved since is left to the write, which refuses it as a
/// stale plan. Returns one message per bad change, naming it; empty when the plan is sound.
pub fn check_saved<'a, K: Plannable>(
    saved: &Plan,
    declared: &[K::Declared],
    now: impl Fn(&K::Change) -> TargetNow<'a, K::Held>,
) -> Vec<String>
where
    K::Held: 'a,
{
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for c in &K::part(saved).changes {
        let (id, target) = (K::id(c), K::target(c));
        let mut problems = Vec::new();
        if !seen.insert((id.clone(), target.clone())) {
            problems.push("the plan lists it more than once".to_owned());
        }
        match (
            K::id_problem(&id),
            declared.iter().find(|d| K::declared_id(d) == id),
        ) {
            (Some(e), _) => problems.push(e),
            (None, None) => problems.push(format!("the overrides file does not declare this {}", K::NOUN)),
            (None, Some(d)) => {
                problems.extend(K::declared_problems(d, c));
                if K::declared_reason(d) != K::reason(c) {
                    problems.push("its reason is not the one the overrides file gives".to_owned());
                }
                match now(c) {
                    TargetNow::Undeclared => problems.push(format!(
                        "the plan names store {:?} target {}, which the overrides file does not declare for this {}",
                        target.store,
                        target.target,
                        K::NOUN
                    )),
                    TargetNow::Read(held) => problems.extend(K::stored_problems(c, held)),
                    TargetNow::Unreadable => {}
                }
            }
        }
        if !problems.is_empty() {
            out.push(format!("{id} in {target}: {}", problems.join("; ")));
        }
    }
    out
}

/// Renders the plan for people: one line per item and target, then the summary.
/// Styled for a terminal; printing through `anstream` drops the styles where colour is off.
pub fn render(plan: &Plan) -> String {
    let mut out = rows::<Flag>(plan);
    out += &rows::<Key>(plan);
    let _ = write!(
        out,
        "Plan: {} to change, {} unchanged",
        plan.flags.changes.len() + plan.keys.changes.len(),
        plan.unchanged
    );
    if plan.problems() > 0 {
        let _ = write!(
            out,
            ", {} {}",
            plan.problems(),
            ui::paint(ui::ERROR, "cannot be planned")
        );
    }
    out.push_str(".\n");
    out
}

/// The lines of one kind's changes, their columns aligned.
fn rows<K: Plannable>(plan: &Plan) -> String {
    let rows: Vec<Vec<String>> = K::part(plan).changes.iter().map(K::row).collect();
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| ui::column_width(rows.iter().map(|r| r[i].chars().count())))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let _ = write!(out, "  {}", ui::paint(ui::CHANGE, "~"));
        for (i, cell) in row.iter().enumerate() {
            match i + 1 == columns {
                true => {
                    let _ = writeln!(out, " {cell}");
                }
                false => {
                    let _ = write!(out, " {cell:<w$}  ", w = widths[i]);
                }
            }
        }
    }
    out
}

/// Renders the problems and warnings, the plan's diagnostics (for stderr).
pub fn render_diagnostics(plan: &Plan) -> String {
    let mut out = String::new();
    let error = ui::paint(ui::ERROR, "error:");
    for p in &plan.flags.problems {
        let _ = writeln!(out, "{error} {} in {}: {}", p.id, p.target, p.message);
    }
    for p in &plan.keys.problems {
        let _ = writeln!(out, "{error} {} in {}: {}", p.id, p.target, p.message);
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "{} {w}", ui::paint(ui::WARNING, "warning:"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Override;
    use crate::flag::{FlagId, Lookup, Serve, StoredFlag, Targeting, Variation, VariationRef};
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
        let observed = Observed::<Flag>::from([(o.id.clone(), vec![(target(), lookup)])]);
        plan::<Flag>(&[o], &observed)
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
            let got: Vec<_> = p
                .flags
                .changes
                .iter()
                .map(|c| (c.from.clone(), c.to.clone()))
                .collect();
            assert_eq!(got, c.changes, "{}", c.name);
            assert_eq!(p.unchanged, c.unchanged, "{}", c.name);
            match c.problem {
                Some(want) => {
                    assert_eq!(p.flags.problems.len(), 1, "{}", c.name);
                    assert!(
                        p.flags.problems[0].message.contains(want),
                        "{}: {}",
                        c.name,
                        p.flags.problems[0].message
                    );
                }
                None => assert!(p.flags.problems.is_empty(), "{}: {:?}", c.name, p.flags.problems),
            }
        }
    }

    #[test]
    fn change_records_observed_version_and_reason() {
        let mut o = ov("f", false, None, None);
        o.reason = Some("INC-1".into());
        let p = run(o, found(AB(true)));
        assert_eq!(p.flags.changes[0].version, 7);
        assert_eq!(p.flags.changes[0].reason.as_deref(), Some("INC-1"));
    }

    #[test]
    fn warns_when_off_would_serve_the_fallback_value() {
        let p = run(
            ov("f", false, None, None),
            found(json!({"key": "f", "on": true, "variations": [true, false], "version": 1})),
        );
        assert_eq!(p.flags.changes.len(), 1);
        assert!(p.warnings[0].contains("has no off variation"), "{:?}", p.warnings);
        let p = run(ov("f", false, None, None), found(AB(true)));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn warns_about_an_empty_reason() {
        let mut o = ov("f", false, None, None);
        o.reason = Some(String::new());
        let p = run(o.clone(), found(AB(true)));
        assert_eq!(
            p.flags.changes.len(),
            1,
            "an empty reason is planned like any other"
        );
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
        assert_eq!(good.flags.changes.len(), 1);
        let check = |p: &Plan, now: TargetNow<Lookup>| {
            check_saved::<Flag>(p, std::slice::from_ref(&declared), |_| now)
        };
        assert!(check(&good, TargetNow::Read(&stored)).is_empty());
        let moved = found(json!({"key": "f", "variations": ["x"], "version": 8}));
        assert!(
            check(&good, TargetNow::Read(&moved)).is_empty(),
            "a stale target is the write's to refuse"
        );
        assert!(check(&good, TargetNow::Unreadable).is_empty());

        type Edit = fn(&mut FlagChange);
        let cases: [(&str, Edit, TargetNow<Lookup>, &str); 9] = [
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
            edit(&mut p.flags.changes[0]);
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
            edit(&mut p.flags.changes[0]);
            assert_eq!(check(&p, TargetNow::Read(&stored)).len(), 1, "{name}");
            assert!(check(&p, TargetNow::Read(&stored))[0].contains(want), "{name}");
        }
        let mut twice = good.clone();
        twice.flags.changes.push(good.flags.changes[0].clone());
        let problems = check(&twice, TargetNow::Read(&stored));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].ends_with("the plan lists it more than once"),
            "{problems:?}"
        );
    }

    fn set_off(c: &mut FlagChange, index: usize, value: Value) {
        c.to.off_variation = var(index, value);
    }

    #[test]
    fn renders_one_line_per_flag_and_target() {
        let o1 = ov("new-checkout", false, None, None);
        let o2 = ov("pricing-page", false, Some(VariationRef::Value(json!("a"))), None);
        let observed = Observed::<Flag>::from([
            (o1.id.clone(), vec![(target(), found(AB(true)))]),
            (o2.id.clone(), vec![(target(), found(AB(false)))]),
        ]);
        let text = ui::plain(&render(&plan::<Flag>(&[o1, o2], &observed)));
        insta::assert_snapshot!(text);
    }
}
