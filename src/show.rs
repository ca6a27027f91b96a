//! `relayctl show`'s model and rendering, for flags and plain keys alike ([`Showable`]: flags in
//! [`flags`], keys in [`keys`]): what each store target holds for each item, by value; whether
//! the targets agree; and whether it is the state the overrides file declares.
//!
//! Pure, like the planner: no I/O, BTreeMap order. The command reads the stores and streams what
//! [`render`] / [`to_json`] return, one item at a time. Whether an item is in its declared state
//! is decided by the planner itself ([`crate::plan::plan`] on that one item), so `show` and
//! `plan` can never disagree about it. Keys and values come from the stores and are hostile:
//! every cell goes through [`ui::printable`].

mod flags;
pub mod keys;

pub use flags::{build, rollout_text, State};

use crate::flag::Flag;
use crate::key::Key;
use crate::kind::{Observed, StoreTarget};
use crate::plan::{Plannable, Problem};
use crate::ui;
use serde::Serialize;
use std::fmt::Write as _;

/// The version of the `show --json` document.
pub const FORMAT_VERSION: u32 = 1;

/// A kind of item `show` shows: what a target holds, in show's terms, and the cells of its line.
pub trait Showable: Plannable<Id: Serialize> {
    /// What a target holds (`status` and its details in JSON).
    type State: Clone + PartialEq + Serialize + std::fmt::Debug;
    fn state(held: &Self::Held) -> Self::State;
    /// Whether two targets hold the same thing.
    fn same(a: &Self::State, b: &Self::State) -> bool;
    /// The cells of a line before its target: the item, and what the target holds for it.
    fn cells(id: &Self::Id, state: &Self::State) -> Vec<String>;
    /// Why what a target holds is not an item at all, if it is not (said after the line).
    fn invalid(state: &Self::State) -> Option<String>;
    /// How the planner's change of a target differs from what it holds, property by property.
    fn differences(change: &Self::Change) -> Vec<String>;
    /// Why the planner cannot plan a target, as a line of show says it.
    fn problem(p: &Problem<Self>) -> String;
    /// The count of these items in the summary.
    fn counted(summary: &mut Summary) -> &mut usize;
}

/// One item, on every target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(bound = "")]
pub struct View<K: Showable> {
    #[serde(flatten)]
    pub id: K::Id,
    /// Whether the overrides file declares it.
    pub declared: bool,
    /// Whether every target holds the same thing.
    pub agree: bool,
    pub targets: Vec<TargetView<K>>,
}

/// What one target holds for an item, and how that compares with the declaration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(bound = "")]
pub struct TargetView<K: Showable> {
    #[serde(flatten)]
    pub target: StoreTarget,
    #[serde(flatten)]
    pub state: K::State,
    /// Set when the item is declared.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
}

/// How a target compares with the declared state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "declared_state", rename_all = "snake_case")]
pub enum Declared {
    /// In the declared state: `plan` changes nothing here.
    Matches,
    /// `plan` would change these properties (`on: true -> false`).
    Differs { changes: Vec<String> },
    /// `plan` cannot plan it (missing, deleted, a variation that does not exist...).
    Problem { problem: String },
}

/// One item's view from what each of its targets holds (`readings`, in the overrides file's
/// order); the declared state is judged by the planner on this one item.
pub fn view<K: Showable>(
    id: K::Id,
    readings: Vec<(StoreTarget, K::Held)>,
    declared: Option<&K::Declared>,
) -> View<K> {
    let states: Vec<K::State> = readings.iter().map(|(_, held)| K::state(held)).collect();
    let agree = states.windows(2).all(|w| K::same(&w[0], &w[1]));
    let targets: Vec<StoreTarget> = readings.iter().map(|(t, _)| t.clone()).collect();
    let judged: Vec<Option<Declared>> = match declared {
        None => vec![None; targets.len()],
        Some(d) => {
            let observed = Observed::<K>::from([(id.clone(), readings)]);
            let plan = crate::plan::plan::<K>(std::slice::from_ref(d), &observed);
            let part = K::part(&plan);
            let judge = |t: &StoreTarget| match part.problems.iter().find(|p| p.target == *t) {
                Some(p) => Declared::Problem {
                    problem: K::problem(p),
                },
                None => match part.changes.iter().find(|c| K::target(c) == t) {
                    Some(c) => Declared::Differs {
                        changes: K::differences(c),
                    },
                    None => Declared::Matches,
                },
            };
            targets.iter().map(|t| Some(judge(t))).collect()
        }
    };
    let targets = targets.into_iter().zip(states).zip(judged);
    View {
        id,
        declared: declared.is_some(),
        agree,
        targets: targets
            .map(|((target, state), declared)| TargetView {
                target,
                state,
                declared,
            })
            .collect(),
    }
}

/// Totals over the items shown, for the closing status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub flags: usize,
    pub keys: usize,
    pub disagreeing: usize,
    pub declared: usize,
    /// Declared items that some target does not hold in the declared state.
    pub not_in_state: usize,
}

impl Summary {
    /// Counts `views` in.
    pub fn add<K: Showable>(&mut self, views: &[View<K>]) {
        for v in views {
            *K::counted(self) += 1;
            self.disagreeing += usize::from(!v.agree);
            self.declared += usize::from(v.declared);
            let differs =
                |d: &Option<Declared>| matches!(d, Some(Declared::Differs { .. } | Declared::Problem { .. }));
            self.not_in_state += usize::from(v.targets.iter().any(|t| differs(&t.declared)));
        }
    }
}

/// The closing status line (for stderr).
pub fn render_summary(s: &Summary) -> String {
    let mut out = format!("Shown: {} flag(s)", s.flags);
    if s.keys > 0 {
        let _ = write!(out, " and {} key(s)", s.keys);
    }
    if s.disagreeing > 0 {
        let _ = write!(
            out,
            ", {} where the targets disagree (marked {})",
            s.disagreeing,
            ui::paint(ui::WARNING, "!")
        );
    }
    let _ = write!(out, "; {} declared in the overrides file", s.declared);
    if s.not_in_state > 0 {
        let _ = write!(
            out,
            ", {} not in the declared state: `relayctl plan` shows the changes",
            s.not_in_state
        );
    }
    out.push_str(".\n");
    out
}

/// Column widths over the items of one environment or store, so their lines align.
#[derive(Debug, Clone, Default)]
pub struct Widths(Vec<usize>);

/// The cells of one line (what [`Showable::cells`] says, the target, the declared state),
/// printable, and the style of the declared state.
fn cells<K: Showable>(view: &View<K>, t: &TargetView<K>) -> (Vec<String>, Option<anstyle::Style>) {
    let (declared, style) = match &t.declared {
        None => ("not declared".to_owned(), None),
        Some(Declared::Matches) => ("declared, in state".to_owned(), None),
        Some(Declared::Differs { changes }) => (
            format!("declared, differs: {}", changes.join(", ")),
            Some(ui::CHANGE),
        ),
        Some(Declared::Problem { .. }) => ("declared, cannot be planned".to_owned(), Some(ui::ERROR)),
    };
    let mut cells = K::cells(&view.id, &t.state);
    cells.extend([t.target.to_string(), declared]);
    let cells = cells
        .into_iter()
        .map(|c| ui::printable(&c).into_owned())
        .collect();
    (cells, style)
}

/// The widths that align the lines of `views`.
pub fn widths<K: Showable>(views: &[View<K>]) -> Widths {
    let mut w = Widths::default();
    for v in views {
        for t in &v.targets {
            let cells = cells(v, t).0;
            w.0.resize(w.0.len().max(cells.len()), 0);
            for (width, cell) in w.0.iter_mut().zip(&cells) {
                *width = ui::column_width([*width, cell.chars().count()]);
            }
        }
    }
    w
}

/// One item, one line per target: `!` when the targets disagree, the cells padded to the
/// widths, the declared state last (styled), then why, when what the target holds is not an
/// item or cannot be planned. Printing through `anstream` drops the styles where colour is off.
pub fn render<K: Showable>(view: &View<K>, w: &Widths) -> String {
    let mut out = String::new();
    let mark = match view.agree {
        true => " ".to_owned(),
        false => ui::paint(ui::WARNING, "!"),
    };
    for t in &view.targets {
        let (cells, style) = cells(view, t);
        let _ = write!(out, "{mark}");
        let (last, padded) = cells.split_last().expect("cells");
        for (cell, width) in padded.iter().zip(&w.0) {
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            let _ = write!(out, " {cell}{pad} ");
        }
        let _ = write!(
            out,
            " {}",
            style.map_or_else(|| last.clone(), |style| ui::paint(style, last))
        );
        let note = match (K::invalid(&t.state), &t.declared) {
            (Some(why), _) => Some(why),
            (None, Some(Declared::Problem { problem })) => Some(problem.clone()),
            _ => None,
        };
        if let Some(note) = note {
            let _ = write!(out, "  ({})", ui::printable(&note));
        }
        out.push('\n');
    }
    out
}

/// The opening of the `--json` document; the flags follow, separated by [`JSON_SEPARATOR`],
/// then [`JSON_KEYS`], the keys, and [`JSON_CLOSE`].
pub fn json_open() -> String {
    format!("{{\"format_version\": {FORMAT_VERSION}, \"flags\": [\n")
}

/// Between two items of the `--json` document.
pub const JSON_SEPARATOR: &str = ",\n";
/// Between the flags and the keys of the `--json` document.
pub const JSON_KEYS: &str = "\n], \"keys\": [\n";
/// The end of the `--json` document.
pub const JSON_CLOSE: &str = "\n]}\n";

/// One item of the `--json` document, on one line.
pub fn to_json<K: Showable>(view: &View<K>) -> String {
    serde_json::to_string(view).expect("a view serializes")
}

/// A flag's or a key's view.
pub type FlagView = View<Flag>;
pub type KeyView = View<Key>;

#[cfg(test)]
mod tests {
    use super::flags::percent;
    use super::*;
    use crate::desired::Override;
    use crate::flag::{FlagId, Lookup, StoredFlag, VariationRef};
    use crate::store::Listing;
    use serde_json::{json, Value};

    fn target(host: &str) -> StoreTarget {
        StoreTarget {
            store: "relay-redis".into(),
            target: format!("redis://{host}:6379"),
        }
    }

    fn found(v: Value) -> Lookup {
        Lookup::Found(StoredFlag::parse(&v.to_string()).unwrap())
    }

    fn flag(key: &str, on: bool, version: u64) -> Value {
        json!({"key": key, "on": on, "offVariation": 1, "fallthrough": {"variation": 0},
               "variations": ["treatment", "control"], "version": version})
    }

    fn listing(flags: Vec<(&str, Lookup)>) -> Listing {
        Listing {
            place: "hash ld:default:production:features".into(),
            flags: flags.into_iter().map(|(k, l)| (k.to_owned(), l)).collect(),
        }
    }

    fn declare(flag: &str, on: bool, off: Option<&str>) -> Override {
        Override {
            id: FlagId {
                project: "default".into(),
                environment: "production".into(),
                flag: flag.into(),
            },
            on,
            off_variation: off.map(|v| VariationRef::Value(json!(v))),
            fallthrough: None,
            reason: None,
        }
    }

    /// Two Redis hosts: agreeing, disagreeing, declared, a rollout, a tombstone, a value that is
    /// not a flag, a flag only one host has, and a hostile key.
    fn views() -> Vec<FlagView> {
        let mut rollout = flag("rollout", true, 4);
        rollout["fallthrough"] = json!({"rollout": {"variations": [
            {"variation": 0, "weight": 66667}, {"variation": 1, "weight": 33333}]}});
        let common = || {
            vec![
                ("agreed", found(flag("agreed", true, 7))),
                ("declared-in-state", found(flag("declared-in-state", false, 3))),
                ("rollout", found(rollout.clone())),
                (
                    "deleted",
                    found(json!({"key": "$deleted", "version": 9, "deleted": true})),
                ),
                ("evil\n\u{1b}[31mforged", found(flag("evil", true, 1))),
                (
                    "hostile-value",
                    found(
                        json!({"key": "hostile-value", "on": true, "offVariation": 0, "fallthrough": {"variation": 0},
                                 "variations": ["\u{9b}31m\u{202e}\u{7f}"], "version": 1}),
                    ),
                ),
            ]
        };
        let mut a = common();
        a.push(("disagreed", found(flag("disagreed", true, 12))));
        a.push((
            "broken",
            Lookup::Invalid(StoredFlag::parse(r#"{"key":"broken","version":1,"on":"off"}"#).unwrap_err()),
        ));
        a.push(("only-here", found(flag("only-here", true, 2))));
        let mut b = common();
        b.push(("disagreed", found(flag("disagreed", false, 13))));
        b.push(("broken", found(flag("broken", true, 1))));
        let listings = vec![(target("10.0.0.5"), listing(a)), (target("10.0.0.6"), listing(b))];
        let overrides = [
            declare("declared-in-state", false, None),
            declare("disagreed", false, Some("control")),
            declare("not-in-store", true, None),
        ];
        build("default", "production", &listings, None, &overrides)
    }

    #[test]
    fn one_line_per_flag_and_target_by_value() {
        let views = views();
        let w = widths(&views);
        let text: String = views.iter().map(|v| ui::plain(&render(v, &w))).collect();
        insta::assert_snapshot!(text);
        assert!(
            !text.contains('\u{1b}'),
            "a key from the store cannot reach the terminal raw"
        );
        let mut summary = Summary::default();
        summary.add(&views);
        insta::assert_snapshot!(ui::plain(&render_summary(&summary)), @"Shown: 10 flag(s), 3 where the targets disagree (marked !); 3 declared in the overrides file, 2 not in the declared state: `relayctl plan` shows the changes.");
    }

    #[test]
    fn agreement_and_the_declared_state_come_from_the_stores_and_the_planner() {
        let views = views();
        let get = |flag: &str| views.iter().find(|v| v.id.flag == flag).unwrap();
        assert!(get("agreed").agree && !get("agreed").declared);
        assert!(!get("disagreed").agree);
        assert!(!get("only-here").agree, "missing on one target is a disagreement");
        assert_eq!(
            get("declared-in-state").targets[0].declared,
            Some(Declared::Matches)
        );
        assert_eq!(
            get("disagreed").targets[0].declared,
            Some(Declared::Differs {
                changes: vec!["on: true -> false".into()]
            })
        );
        assert_eq!(get("disagreed").targets[1].declared, Some(Declared::Matches));
        assert!(matches!(
            &get("not-in-store").targets[0].declared,
            Some(Declared::Problem { problem }) if problem.contains("not in the store")
        ));
        let only: Vec<String> = vec!["agreed".into(), "nope".into()];
        let listings = vec![(
            target("10.0.0.5"),
            listing(vec![("agreed", found(flag("agreed", true, 7)))]),
        )];
        let picked = build("default", "production", &listings, Some(&only), &[]);
        assert_eq!(picked.len(), 2);
        assert!(
            matches!(&picked[1].targets[0].state, State::Missing { place } if place.contains("no flag \"nope\""))
        );
    }

    #[test]
    fn json_names_values_versions_and_the_declared_state() {
        let views = views();
        let get = |flag: &str| {
            serde_json::from_str::<Value>(&to_json(views.iter().find(|v| v.id.flag == flag).unwrap()))
                .unwrap()
        };
        assert_eq!(
            get("disagreed"),
            json!({"project": "default", "environment": "production", "flag": "disagreed", "declared": true, "agree": false,
                "targets": [
                    {"store": "relay-redis", "target": "redis://10.0.0.5:6379", "status": "found", "version": 12, "on": true,
                     "off_variation": {"variation": {"index": 1, "value": "control"}}, "fallthrough": {"variation": {"index": 0, "value": "treatment"}},
                     "declared_state": "differs", "changes": ["on: true -> false"]},
                    {"store": "relay-redis", "target": "redis://10.0.0.6:6379", "status": "found", "version": 13, "on": false,
                     "off_variation": {"variation": {"index": 1, "value": "control"}}, "fallthrough": {"variation": {"index": 0, "value": "treatment"}},
                     "declared_state": "matches"}]})
        );
        assert_eq!(
            get("rollout")["targets"][0]["fallthrough"],
            json!({"rollout": [{"index": 0, "value": "treatment", "weight": 66667}, {"index": 1, "value": "control", "weight": 33333}]})
        );
        assert_eq!(get("deleted")["targets"][0]["status"], json!("deleted"));
        let doc = format!(
            "{}{}{JSON_SEPARATOR}{}{JSON_CLOSE}",
            json_open(),
            to_json(&views[0]),
            to_json(&views[1])
        );
        let doc: Value = serde_json::from_str(&doc).expect("one JSON document");
        assert_eq!(doc["format_version"], json!(1));
        assert_eq!(doc["flags"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(100_000), "100%");
        assert_eq!(percent(33_333), "33.333%");
        assert_eq!(percent(50_500), "50.5%");
        assert_eq!(percent(0), "0%");
    }

    #[test]
    fn one_huge_key_does_not_widen_every_line() {
        let huge = "k".repeat(200_000);
        let mut flags: Vec<(&str, Lookup)> = vec![(huge.as_str(), found(flag("x", true, 1)))];
        let names: Vec<String> = (0..1000).map(|i| format!("flag-{i:04}")).collect();
        flags.extend(names.iter().map(|n| (n.as_str(), found(flag(n, true, 1)))));
        let listings = vec![(target("10.0.0.5"), listing(flags))];
        let views = build("default", "production", &listings, None, &[]);
        let w = widths(&views);
        let text: String = views.iter().map(|v| render(v, &w)).collect();
        // One line holds the key; the other 1,000 are as long as their own cells make them.
        assert!(text.len() < 200_000 + 1_000 * 200, "{} bytes", text.len());
    }
}
