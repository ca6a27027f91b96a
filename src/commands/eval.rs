//! `relayctl eval PROJECT/ENV/FLAG... (--context JSON | --user KEY | --context-kind KIND --key
//! KEY) [--attr NAME=VALUE]... [--planned] [--json]`: what a context gets from flags, on each
//! store target, by LaunchDarkly's own evaluation engine ([`crate::eval`]). Reads only; safe to
//! run at any time, and it takes no lock.
//!
//! Every line it can give goes to stdout first; then each flag, prerequisite or segment a target
//! lacks, each target that cannot be read and each evaluation that cannot be answered here (a
//! big segment) is an error naming the flag, the context and the target (exit 1).

use super::load;
use crate::desired::Override;
use crate::eval::context::{self, ContextArgs};
use crate::eval::{self, render};
use crate::exit::Exit;
use crate::flag::{Flag, FlagId};
use crate::select::parse_selector;
use crate::settings::Settings;
use crate::ui;
use anyhow::{anyhow, bail, Result};
use std::io::Read;
use std::time::Instant;
use tokio::runtime::Runtime;

/// Evaluates `flags` for the contexts `args` names and prints the results.
pub fn run(
    settings: &Settings,
    rt: &Runtime,
    flags: &[String],
    args: &ContextArgs,
    planned: bool,
    json: bool,
) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    if stores.len::<Flag>() == 0 {
        bail!(
            "the overrides file {} has no [[store]] of type redis, dynamodb or file, so there is no LaunchDarkly \
             flag to evaluate; add the store the Relay Proxy or the SDKs read",
            settings.config.display()
        );
    }
    let ids = flag_ids(flags)?;
    let contexts = context::build(args, &mut sources(args))?;
    let names: Vec<String> = contexts.iter().map(|c| context::name(c).to_owned()).collect();
    if planned {
        planned_notes(settings, &config.overrides, &ids);
    }
    let started = Instant::now();
    let declared = planned.then_some(config.overrides.as_slice());
    let evaluations = rt.block_on(eval::evaluate(&stores, &ids, &contexts, declared));
    if settings.verbose > 0 {
        settings.status(format!(
            "Evaluated {} flag/context/target triple(s) in {} ms.",
            evaluations.len(),
            started.elapsed().as_millis()
        ));
    }
    match json {
        // No styles to drop: never scanned for them (ui::out).
        true => ui::out::print_json(&render::to_json(&evaluations, &names))?,
        false => {
            ui::out::print(&render::render(&evaluations, &names))?;
            settings.status(render::summary(&evaluations, contexts.len()));
        }
    }
    conclude(&render::errors(&evaluations, &names))
}

/// What `--planned` should say before its lines: named flags the overrides file does not declare
/// (apply leaves them as they are), and declarations in their environments that apply refuses
/// to write until their reason says why (the planned view shows them written).
fn planned_notes(settings: &Settings, overrides: &[Override], ids: &[FlagId]) {
    for id in ids.iter().filter(|id| !overrides.iter().any(|o| o.id == **id)) {
        settings.status(format!(
            "{id} is not declared in {}: apply leaves it as it is (its prerequisites may still change).",
            settings.config.display()
        ));
    }
    let in_scope = |o: &&Override| {
        ids.iter()
            .any(|id| id.project == o.id.project && id.environment == o.id.environment)
    };
    for o in overrides
        .iter()
        .filter(in_scope)
        .filter(|o| o.reason.as_deref() == Some(""))
    {
        settings.status(format!(
            "{} {} has an empty reason: apply refuses to write it until its reason says why; the planned view \
             shows it written.",
            ui::paint(ui::WARNING, "warning:"),
            o.id
        ));
    }
}

/// The flags named on the command line, each once, in order.
fn flag_ids(flags: &[String]) -> Result<Vec<FlagId>> {
    let mut ids: Vec<FlagId> = Vec::new();
    for raw in flags {
        let s = parse_selector(raw)?;
        let Some(flag) = s.flag else {
            bail!(
                "{raw:?} names no flag: eval takes PROJECT/ENV/FLAG, e.g. default/production/new-checkout \
                 (`relayctl show {raw}` lists the flags there)"
            );
        };
        let id = FlagId {
            project: s.project,
            environment: s.environment,
            flag,
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Turns each `--context` value into its JSON text and how messages name it: `-` reads standard
/// input (once), `@PATH` a file, anything else is the JSON itself.
fn sources(args: &ContextArgs) -> impl FnMut(&str) -> Result<(String, String)> {
    let several = matches!(args, ContextArgs::Json(values) if values.len() > 1);
    let (mut nth, mut stdin_read) = (0, false);
    move |value: &str| {
        nth += 1;
        if value == "-" {
            if std::mem::replace(&mut stdin_read, true) {
                bail!("--context - is given twice: standard input can be read once");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow!("cannot read the context from standard input: {e}"))?;
            return Ok((text, "the context on standard input".to_owned()));
        }
        if let Some(path) = value.strip_prefix('@') {
            let shown = ui::printable(path).into_owned();
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("cannot read the context file {shown}: {e}"))?;
            return Ok((text, format!("the context file {shown}")));
        }
        let source = match several {
            true => format!("--context #{nth}"),
            false => "the --context JSON".to_owned(),
        };
        Ok((value.to_owned(), source))
    }
}

/// Success, or the errors found, after every line that could be shown was shown.
fn conclude(errors: &[String]) -> Result<Exit> {
    match errors.len() {
        0 => Ok(Exit::Success),
        1 => Err(anyhow!("{}", errors[0])),
        n => {
            for e in errors {
                ui::out::eprintln(&format!("{} {e}", ui::paint(ui::ERROR, "error:")));
            }
            Err(anyhow!(
                "{n} evaluations above are incomplete or could not be made (listed above); each line shows what the \
                 SDKs reading that target serve where it can be told"
            ))
        }
    }
}
