//! How `relayctl eval` shows its evaluations: one aligned line per flag, context and target for
//! people, or one JSON document (`--json`, SPEC "eval"); the summary and the errors. Pure.
//!
//! Values, rule ids and keys come from the stores and are hostile: a line quotes them as JSON
//! and escapes whatever could move or hide text on a terminal ([`ui::printable`]).

use super::{Evaluation, Outcome};
use crate::ui;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The version of the `eval --json` document.
pub const FORMAT_VERSION: u32 = 1;

/// The outcome a line shows: the planned one with `--planned`, else the current one.
fn shown(e: &Evaluation) -> &Outcome {
    e.planned.as_ref().unwrap_or(&e.now)
}

/// Whether apply would change what the context gets (`--planned` only).
fn changes(e: &Evaluation) -> bool {
    e.planned.as_ref().is_some_and(|p| *p != e.now)
}

/// The evaluations' (context, flag) pairs whose targets give different answers.
fn disagreeing(evaluations: &[Evaluation]) -> BTreeMap<(usize, String), bool> {
    let mut first: BTreeMap<(usize, String), &Outcome> = BTreeMap::new();
    let mut differ = BTreeMap::new();
    for e in evaluations {
        let key = (e.context, e.id.to_string());
        let seen = *first.entry(key.clone()).or_insert(shown(e));
        let entry = differ.entry(key).or_insert(false);
        *entry |= !same_answer(seen, shown(e));
    }
    differ
}

/// Whether two outcomes serve the same (value, variation, reason), whatever the messages say.
fn same_answer(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (
            Outcome::Served {
                value,
                variation,
                reason,
                ..
            },
            Outcome::Served {
                value: v2,
                variation: i2,
                reason: r2,
                ..
            },
        ) => value == v2 && variation == i2 && reason == r2,
        (Outcome::Unknown { .. }, Outcome::Unknown { .. }) => true,
        _ => false,
    }
}

/// The value, variation and reason cells of an outcome.
fn answer_cells(outcome: &Outcome) -> [String; 3] {
    match outcome {
        Outcome::Served {
            value,
            variation,
            reason,
            ..
        } => [
            value
                .as_ref()
                .map_or_else(|| "(application default)".to_owned(), Value::to_string),
            variation.map_or_else(|| "-".to_owned(), |i| format!("variation {i}")),
            reason_text(reason),
        ],
        Outcome::Unknown { .. } => ["?".to_owned(), "-".to_owned(), "cannot evaluate here".to_owned()],
    }
}

/// LaunchDarkly's evaluation reason in words: `off`, `fallthrough`, `target match`,
/// `rule match: index 0, id "r1"` (the index counts from 0, as in the reason's JSON),
/// `prerequisite failed: "other-flag"`, `error: MALFORMED_FLAG`.
pub fn reason_text(reason: &Value) -> String {
    let quoted = |v: &Value| v.to_string();
    let experiment = match reason["inExperiment"].as_bool() {
        Some(true) => " (in experiment)",
        _ => "",
    };
    match reason["kind"].as_str() {
        Some("OFF") => "off".to_owned(),
        Some("FALLTHROUGH") => format!("fallthrough{experiment}"),
        Some("TARGET_MATCH") => "target match".to_owned(),
        Some("RULE_MATCH") => {
            let id = match reason.get("ruleId") {
                Some(id) => format!(", id {}", quoted(id)),
                None => String::new(),
            };
            format!("rule match: index {}{id}{experiment}", reason["ruleIndex"])
        }
        Some("PREREQUISITE_FAILED") => {
            format!("prerequisite failed: {}", quoted(&reason["prerequisiteKey"]))
        }
        Some("ERROR") => format!(
            "error: {} (the application's default is served)",
            reason["errorKind"].as_str().unwrap_or("?")
        ),
        _ => reason.to_string(),
    }
}

/// What follows a line: the problems of its outcome, why it cannot be evaluated, and (planned)
/// what the context gets now when apply would change it.
fn note(e: &Evaluation) -> String {
    let mut parts = Vec::new();
    match shown(e) {
        Outcome::Served { problems, .. } => parts.extend(problems.iter().cloned()),
        Outcome::Unknown { why } => parts.push(format!("because {why}")),
    }
    if changes(e) {
        let [value, variation, reason] = answer_cells(&e.now);
        parts.push(format!("apply changes this; now: {value}, {variation}, {reason}"));
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!("  ({})", parts.join("; ")),
    }
}

/// The human lines: `!` where the targets disagree, then the flag, the context, the value, the
/// variation, the reason, the target, and a note. Aligned; styled for a terminal (printing
/// through `anstream` drops the styles where colour is off).
pub fn render(evaluations: &[Evaluation], contexts: &[String]) -> String {
    let differ = disagreeing(evaluations);
    let rows: Vec<(bool, [String; 6], String)> = evaluations
        .iter()
        .map(|e| {
            let [value, variation, reason] = answer_cells(shown(e));
            let context = contexts.get(e.context).map_or("?", String::as_str);
            let cells = [
                e.id.to_string(),
                context.to_owned(),
                value,
                variation,
                reason,
                e.target.to_string(),
            ];
            let disagree = differ.get(&(e.context, e.id.to_string())) == Some(&true);
            (
                disagree,
                cells.map(|c| ui::printable(&c).into_owned()),
                ui::printable(&note(e)).into_owned(),
            )
        })
        .collect();
    let mut widths = [0usize; 6];
    for (_, cells, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (disagree, cells, note) in rows {
        out.push_str(&match disagree {
            true => ui::paint(ui::WARNING, "!"),
            false => " ".to_owned(),
        });
        let last = cells.len() - 1;
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            match i == last {
                true => out.push_str(&format!(" {cell}")),
                false => out.push_str(&format!(" {cell:<width$} ")),
            }
        }
        if !note.is_empty() {
            let style = if note.starts_with("  (because") || note.contains(" is not in this target") {
                ui::ERROR
            } else {
                ui::CHANGE
            };
            out.push_str(&ui::paint(style, &note));
        }
        out.push('\n');
    }
    out
}

/// One outcome in JSON: value, variation, reason (LaunchDarkly's JSON), and `error` when
/// something is missing or it cannot be evaluated.
#[derive(Serialize)]
struct OutcomeJson<'a> {
    value: Option<&'a Value>,
    variation: Option<usize>,
    reason: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> From<&'a Outcome> for OutcomeJson<'a> {
    fn from(outcome: &'a Outcome) -> Self {
        match outcome {
            Outcome::Served {
                value,
                variation,
                reason,
                problems,
            } => OutcomeJson {
                value: value.as_ref(),
                variation: *variation,
                reason: Some(reason),
                error: (!problems.is_empty()).then(|| problems.join("; ")),
            },
            Outcome::Unknown { why } => OutcomeJson {
                value: None,
                variation: None,
                reason: None,
                error: Some(format!("cannot evaluate here because {why}")),
            },
        }
    }
}

/// One result of the `--json` document.
#[derive(Serialize)]
struct ResultJson<'a> {
    project: &'a str,
    environment: &'a str,
    flag: &'a str,
    context: Option<&'a str>,
    store: &'a str,
    target: &'a str,
    value: Option<&'a Value>,
    variation: Option<usize>,
    reason: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    now: Option<OutcomeJson<'a>>,
}

/// The `--json` document: `{"format_version": 1, "results": [...]}`, one result per line, each
/// `{"project", "environment", "flag", "context", "store", "target", "value", "variation",
/// "reason"}` (plus `"error"` when there is one, and `"now"` with the same fields when planned).
pub fn to_json(evaluations: &[Evaluation], contexts: &[String]) -> String {
    let mut out = format!("{{\"format_version\": {FORMAT_VERSION}, \"results\": [\n");
    for (i, e) in evaluations.iter().enumerate() {
        let shown = OutcomeJson::from(shown(e));
        let line = ResultJson {
            project: &e.id.project,
            environment: &e.id.environment,
            flag: &e.id.flag,
            context: contexts.get(e.context).map(String::as_str),
            store: &e.target.store,
            target: &e.target.target,
            value: shown.value,
            variation: shown.variation,
            reason: shown.reason,
            error: shown.error,
            now: e.planned.as_ref().map(|_| OutcomeJson::from(&e.now)),
        };
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str(&serde_json::to_string(&line).expect("a result serializes"));
    }
    out.push_str("\n]}\n");
    out
}

/// How many evaluations there were, where targets disagree and what apply would change.
pub fn summary(evaluations: &[Evaluation], contexts: usize) -> String {
    let flags: std::collections::BTreeSet<String> = evaluations.iter().map(|e| e.id.to_string()).collect();
    let targets: std::collections::BTreeSet<String> =
        evaluations.iter().map(|e| e.target.to_string()).collect();
    let mut out = format!(
        "Evaluated {} flag(s) for {contexts} context(s) on {} store target(s)",
        flags.len(),
        targets.len()
    );
    let disagree = disagreeing(evaluations).values().filter(|d| **d).count();
    if disagree > 0 {
        let _ = write!(out, "; {disagree} where the targets disagree (marked !)");
    }
    if evaluations.iter().any(|e| e.planned.is_some()) {
        let changed = evaluations.iter().filter(|e| changes(e)).count();
        let _ = write!(
            out,
            "; shown as apply would leave them: {changed} line(s) that apply changes"
        );
    }
    out.push('.');
    out
}

/// One message per distinct error (flag, target, what is wrong), naming the first context it
/// concerns and how many more.
pub fn errors(evaluations: &[Evaluation], contexts: &[String]) -> Vec<String> {
    let mut seen: BTreeMap<(String, String, String), (usize, usize)> = BTreeMap::new();
    let mut order = Vec::new();
    for e in evaluations {
        // The planned outcome only where it says something the current one does not.
        let planned = e.planned.as_ref().filter(|p| **p != e.now);
        let outcomes = [Some(&e.now), planned];
        for (planned, outcome) in outcomes.into_iter().enumerate() {
            let message = match outcome {
                Some(Outcome::Served { problems, .. }) if !problems.is_empty() => problems.join("; "),
                Some(Outcome::Unknown { why }) => format!("cannot evaluate here because {why}"),
                _ => continue,
            };
            let message = match planned {
                1 => format!("as apply would leave it, {message}"),
                _ => message,
            };
            let key = (e.id.to_string(), e.target.to_string(), message);
            let entry = seen.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                (e.context, 0)
            });
            entry.1 += 1;
        }
    }
    order
        .into_iter()
        .map(|key| {
            let (first, count) = seen[&key];
            let context = contexts.get(first).map_or("?", String::as_str);
            let more = match count {
                1 => String::new(),
                n => format!(" and {} more context(s)", n - 1),
            };
            let (id, target, message) = key;
            ui::printable(&format!("{id} for {context}{more} in {target}: {message}")).into_owned()
        })
        .collect()
}
