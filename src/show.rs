//! `relayctl show`'s model and rendering: what each store target holds for each flag of an
//! environment, by value; whether the targets agree; and whether it is the state the overrides
//! file declares.
//!
//! Pure, like the planner: no I/O, BTreeMap order. The command reads the stores
//! (`Stores::list`) and streams what [`render_flag`] / [`to_json`] return, one flag at a time.
//! Whether a flag is in its declared state is decided by the planner itself (`plan::plan` on that
//! one flag), so `show` and `plan` can never disagree about it. Flag keys come from the stores and
//! are hostile: a key that is not a LaunchDarkly key is shown quoted and escaped, never raw.

pub mod keys;

use crate::desired::Override;
use crate::flag::{is_key, FlagId, Serve, Variation, Weighted};
use crate::flag::{Flag, Lookup};
use crate::kind::Observed;
use crate::kind::StoreTarget;
use crate::store::Listing;
use crate::ui;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The version of the `show --json` document.
pub const FORMAT_VERSION: u32 = 1;

/// One flag of one environment, on every target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagView {
    #[serde(flatten)]
    pub id: FlagId,
    /// Whether the overrides file declares this flag.
    pub declared: bool,
    /// Whether every target holds the same thing (state, variations served, version).
    pub agree: bool,
    pub targets: Vec<TargetView>,
}

/// What one target holds for a flag, and how that compares with the declaration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetView {
    #[serde(flatten)]
    pub target: StoreTarget,
    #[serde(flatten)]
    pub state: State,
    /// Set when the flag is declared.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
}

/// What a target holds for a flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum State {
    Found {
        version: u64,
        on: bool,
        off_variation: Serve,
        fallthrough: Fallthrough,
    },
    /// A deleted flag's tombstone: the SDKs treat it as not found.
    Deleted { version: u64 },
    /// Not there; `place` says where it was looked for.
    Missing { place: String },
    /// A value the SDKs would reject.
    Invalid { why: String },
}

/// What a flag serves when on and no target or rule matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallthrough {
    Variation(Variation),
    /// A percentage rollout, slice by slice.
    Rollout(Vec<Weighted>),
    Unset,
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

impl State {
    fn from_lookup(lookup: &Lookup) -> State {
        match lookup {
            Lookup::Found(f) if f.deleted => State::Deleted { version: f.version },
            Lookup::Found(f) => State::Found {
                version: f.version,
                on: f.on(),
                off_variation: f.off_variation().clone(),
                fallthrough: match f.fallthrough() {
                    Serve::Variation(v) => Fallthrough::Variation(v.clone()),
                    Serve::Rollout => Fallthrough::Rollout(f.rollout()),
                    Serve::Unset => Fallthrough::Unset,
                },
            },
            Lookup::Missing { place } => State::Missing { place: place.clone() },
            Lookup::Invalid(e) => State::Invalid { why: e.to_string() },
        }
    }

    /// Whether two targets hold the same thing (where each looked for a missing flag aside).
    fn same_as(&self, other: &State) -> bool {
        match (self, other) {
            (State::Missing { .. }, State::Missing { .. }) => true,
            _ => self == other,
        }
    }
}

/// Builds the views of one environment from what each target holds there (`listings`, in the
/// overrides file's order): the flags in `only` when given, else every flag any target holds or
/// the overrides file declares there. Sorted by flag key.
pub fn build(
    project: &str,
    environment: &str,
    listings: &[(StoreTarget, Listing)],
    only: Option<&[String]>,
    overrides: &[Override],
) -> Vec<FlagView> {
    let declared: BTreeMap<&str, &Override> = overrides
        .iter()
        .filter(|o| o.id.project == project && o.id.environment == environment)
        .map(|o| (o.id.flag.as_str(), o))
        .collect();
    let flags: BTreeSet<&str> = match only {
        Some(only) => only.iter().map(String::as_str).collect(),
        None => listings
            .iter()
            .flat_map(|(_, l)| l.flags.keys().map(String::as_str))
            .chain(declared.keys().copied())
            .collect(),
    };
    flags
        .into_iter()
        .map(|flag| {
            let id = FlagId {
                project: project.to_owned(),
                environment: environment.to_owned(),
                flag: flag.to_owned(),
            };
            let lookups: Vec<(StoreTarget, Lookup)> = listings
                .iter()
                .map(|(target, listing)| {
                    let lookup = listing
                        .flags
                        .get(flag)
                        .cloned()
                        .unwrap_or_else(|| Lookup::Missing {
                            place: format!("no flag {flag:?} in {}", listing.place),
                        });
                    (target.clone(), lookup)
                })
                .collect();
            view(id, lookups, declared.get(flag).copied())
        })
        .collect()
}

/// One flag's view; the declared state is judged by the planner on this one flag.
fn view(id: FlagId, lookups: Vec<(StoreTarget, Lookup)>, declared: Option<&Override>) -> FlagView {
    let states: Vec<State> = lookups.iter().map(|(_, l)| State::from_lookup(l)).collect();
    let agree = states.windows(2).all(|w| w[0].same_as(&w[1]));
    let targets: Vec<StoreTarget> = lookups.iter().map(|(t, _)| t.clone()).collect();
    let judged: Vec<Option<Declared>> = match declared {
        None => vec![None; targets.len()],
        Some(o) => {
            let observed = Observed::<Flag>::from([(id.clone(), lookups)]);
            let plan = crate::plan::plan::<Flag>(std::slice::from_ref(o), &observed).flags;
            targets
                .iter()
                .map(|t| {
                    if let Some(p) = plan.problems.iter().find(|p| p.target == *t) {
                        Some(Declared::Problem {
                            problem: p.message.clone(),
                        })
                    } else if let Some(c) = plan.changes.iter().find(|c| c.target == *t) {
                        Some(Declared::Differs {
                            changes: c.from.differences(&c.to),
                        })
                    } else {
                        Some(Declared::Matches)
                    }
                })
                .collect()
        }
    };
    FlagView {
        id,
        declared: declared.is_some(),
        agree,
        targets: targets
            .into_iter()
            .zip(states)
            .zip(judged)
            .map(|((target, state), declared)| TargetView {
                target,
                state,
                declared,
            })
            .collect(),
    }
}

/// Totals over the flags shown, for the closing status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub flags: usize,
    /// Plain Redis keys ([`keys::KeyView`]).
    pub keys: usize,
    pub disagreeing: usize,
    pub declared: usize,
    /// Declared flags that some target does not hold in the declared state.
    pub not_in_state: usize,
}

impl Summary {
    /// Counts `views` in.
    pub fn add(&mut self, views: &[FlagView]) {
        for v in views {
            self.flags += 1;
            self.count(v.agree, v.declared, v.targets.iter().map(|t| &t.declared));
        }
    }

    /// Counts in one flag or key shown: whether its targets agree, whether it is declared,
    /// and how each target compares with the declaration.
    fn count<'a>(
        &mut self,
        agree: bool,
        declared: bool,
        judged: impl IntoIterator<Item = &'a Option<Declared>>,
    ) {
        self.disagreeing += usize::from(!agree);
        self.declared += usize::from(declared);
        self.not_in_state += usize::from(
            judged
                .into_iter()
                .any(|d| matches!(d, Some(Declared::Differs { .. } | Declared::Problem { .. }))),
        );
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

/// Column widths over the flags of one environment, so its lines align.
#[derive(Debug, Clone, Default)]
pub struct Widths([usize; 7]);

/// Widens the column `widths` to hold `cells`.
fn fit(widths: &mut [usize], cells: &[String]) {
    for (width, cell) in widths.iter_mut().zip(cells) {
        *width = (*width).max(cell.chars().count());
    }
}

/// The cells of one line (flag, state, off variation, fallthrough, version, target, declared
/// state), unstyled, and the style of the declared state.
fn cells(view: &FlagView, t: &TargetView) -> ([String; 7], Option<anstyle::Style>) {
    let id = if is_key(&view.id.flag) {
        view.id.to_string()
    } else {
        format!("{}/{}/{:?}", view.id.project, view.id.environment, view.id.flag)
    };
    let (state, off, fallthrough, version) = match &t.state {
        State::Found {
            version,
            on,
            off_variation,
            fallthrough,
        } => (
            if *on { "on" } else { "off" }.to_owned(),
            format!("off: {off_variation}"),
            format!("fallthrough: {}", show_fallthrough(fallthrough)),
            format!("v{version}"),
        ),
        State::Deleted { version } => (
            "deleted".into(),
            String::new(),
            String::new(),
            format!("v{version}"),
        ),
        State::Missing { .. } => ("missing".into(), String::new(), String::new(), String::new()),
        State::Invalid { .. } => ("invalid".into(), String::new(), String::new(), String::new()),
    };
    let (declared, style) = declared_cell(t.declared.as_ref());
    let target = t.target.to_string();
    let cells = [id, state, off, fallthrough, version, target, declared];
    (cells.map(|c| ui::printable(&c).into_owned()), style)
}

/// The last cell of a line (how a target compares with the declaration), unstyled, and its style.
fn declared_cell(declared: Option<&Declared>) -> (String, Option<anstyle::Style>) {
    match declared {
        None => ("not declared".to_owned(), None),
        Some(Declared::Matches) => ("declared, in state".to_owned(), None),
        Some(Declared::Differs { changes }) => (
            format!("declared, differs: {}", changes.join(", ")),
            Some(ui::CHANGE),
        ),
        Some(Declared::Problem { .. }) => ("declared, cannot be planned".to_owned(), Some(ui::ERROR)),
    }
}

fn show_fallthrough(f: &Fallthrough) -> String {
    match f {
        Fallthrough::Variation(v) => v.to_string(),
        Fallthrough::Unset => "unset".into(),
        Fallthrough::Rollout(slices) => rollout_text(slices),
    }
}

/// A percentage rollout by value: `rollout 60% "treatment" / 40% "control"`.
pub fn rollout_text(slices: &[Weighted]) -> String {
    if slices.is_empty() {
        return "rollout (no slices)".into();
    }
    let parts: Vec<String> = slices
        .iter()
        .map(|s| format!("{} {}", percent(s.weight), s.variation.value))
        .collect();
    format!("rollout {}", parts.join(" / "))
}

/// A rollout weight (1/1000 percent) as a percentage: `60%`, `33.333%`.
fn percent(weight: u64) -> String {
    let whole = weight / 1000;
    match weight % 1000 {
        0 => format!("{whole}%"),
        frac => format!("{whole}.{}%", format!("{frac:03}").trim_end_matches('0')),
    }
}

/// The widths that align the lines of `views`.
pub fn widths(views: &[FlagView]) -> Widths {
    let mut w = Widths::default();
    for v in views {
        for t in &v.targets {
            fit(&mut w.0, &cells(v, t).0);
        }
    }
    w
}

/// The mark that opens each line of a flag or key: `!` when its targets disagree.
fn mark(agree: bool) -> String {
    if agree {
        " ".to_owned()
    } else {
        ui::paint(ui::WARNING, "!")
    }
}

/// Writes one line's cells but its ending: `mark`, the cells padded to `w`, and the last
/// (the declared state) in `style`.
fn write_cells(
    out: &mut String,
    mark: &str,
    cells: &[String],
    style: Option<anstyle::Style>,
    widths: &[usize],
) {
    let _ = write!(out, "{mark}");
    let (last, padded) = cells.split_last().expect("cells");
    for (cell, width) in padded.iter().zip(widths) {
        let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
        let _ = write!(out, " {cell}{pad} ");
    }
    let _ = write!(
        out,
        " {}",
        style.map_or_else(|| last.clone(), |style| ui::paint(style, last))
    );
}

/// One flag, one line per target: `!` when the targets disagree, the flag, on/off, the off
/// variation and the fallthrough by value, the version, the target, then the declared state
/// (and why, when the value is not a flag or cannot be planned).
/// Styled for a terminal; printing through `anstream` drops the styles where colour is off.
pub fn render_flag(view: &FlagView, w: &Widths) -> String {
    let mut out = String::new();
    let mark = mark(view.agree);
    for t in &view.targets {
        let (cells, style) = cells(view, t);
        write_cells(&mut out, &mark, &cells, style, &w.0);
        match (&t.state, &t.declared) {
            (State::Invalid { why }, _) => {
                let _ = write!(out, "  (not a flag: {})", ui::printable(why));
            }
            (_, Some(Declared::Problem { problem })) => {
                let _ = write!(out, "  ({})", ui::printable(problem));
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}

/// The opening of the `--json` document; the flags follow, separated by [`JSON_SEPARATOR`],
/// then [`JSON_CLOSE`].
pub fn json_open() -> String {
    format!("{{\"format_version\": {FORMAT_VERSION}, \"flags\": [\n")
}

/// Between two flags of the `--json` document.
pub const JSON_SEPARATOR: &str = ",\n";
/// The end of the `--json` document.
pub const JSON_CLOSE: &str = "\n]}\n";

/// One flag of the `--json` document, on one line.
pub fn to_json(view: &FlagView) -> String {
    serde_json::to_string(view).expect("a flag view serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flag::{StoredFlag, VariationRef};
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
        let text: String = views.iter().map(|v| ui::plain(&render_flag(v, &w))).collect();
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
}
