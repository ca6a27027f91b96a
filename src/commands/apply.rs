//! `relayctl apply [PLAN_FILE]`: write the changes, one journal commit per changed flag.

use super::{check, close_journal, load, make_plan, open_journal};
use crate::apply::{self, Event, FlagOutcome};
use crate::desired::Config;
use crate::exit::Exit;
use crate::flag::{FlagId, StoreTarget};
use crate::journal::{Entry, Journal};
use crate::keys;
use crate::plan::{self, Change, Plan, TargetNow};
use crate::settings::Settings;
use crate::store::redis_keys::KeyStores;
use crate::store::Stores;
use crate::ui;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use tokio::runtime::Runtime;

/// Applies a saved plan exactly (once it is checked against the overrides file and the stores),
/// or plans, confirms and applies. Records what an interrupted apply wrote first. Exit 1 when a
/// target failed (the journal records what was written; a fresh plan shows what is left).
pub fn run(settings: &Settings, rt: &Runtime, plan_file: Option<&Path>, auto_approve: bool) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    let key_stores = KeyStores::open(&config.key_stores, settings.redis_timeout)?;
    let saved = plan_file.map(Plan::load).transpose()?;
    record_interrupted(settings, rt, &config, &stores, &key_stores)?;
    let (plan, mut journal) = match saved {
        Some(plan) if !plan.has_changes() => {
            settings.status("The plan has no changes; nothing to apply.");
            return Ok(Exit::Success);
        }
        Some(plan) => {
            apply::refuse_empty_reasons(&plan)?;
            keys::apply::refuse_empty_reasons(&plan.keys)?;
            check_saved(rt, &config, &stores, &plan, plan_file.unwrap_or(Path::new("")))?;
            keys::refuse_unsound(
                &plan.keys,
                &config.keys,
                &key_stores,
                plan_file.unwrap_or(Path::new("")),
            )?;
            (plan, open_journal(settings, &config.journal)?)
        }
        None => match plan_and_confirm(settings, rt, &config, &stores, auto_approve)? {
            Some(planned) => planned,
            None => return Ok(Exit::Success),
        },
    };
    crate::interrupt::install().context("installing the Ctrl-C handler")?;
    let width = plan
        .changes
        .iter()
        .map(|c| c.id.to_string().len())
        .max()
        .unwrap_or(0);
    let (outcomes, key_outcomes) = journal.write(|w| {
        let flags = rt.block_on(apply::apply(&plan, &stores, w, &mut |event| match event {
            Event::Flag(o) => {
                let (out, err) = render_outcome(width, o);
                anstream::print!("{out}");
                anstream::eprint!("{err}");
            }
            Event::Unanswered { .. } => anstream::eprint!("{}", render_unanswered(&event)),
        }))?;
        let keys = rt.block_on(keys::apply::apply(
            &plan.keys,
            &key_stores,
            w,
            &mut |event| match event {
                keys::apply::KeyEvent::Key(o) => {
                    let (out, err) = keys::apply::render_outcome(o);
                    anstream::print!("{out}");
                    anstream::eprint!("{err}");
                }
                unanswered => anstream::eprint!("{}", keys::apply::render_notice(&unanswered)),
            },
        ))?;
        Ok((flags, keys))
    })?;
    close_journal(journal);
    let keys_done = keys::apply::conclude(settings, &plan, &key_outcomes);
    if plan.changes.is_empty() {
        return keys_done.map(|()| Exit::Success);
    }
    match (keys_done, conclude(settings, &config, &plan, &outcomes)) {
        (Ok(()), flags) => flags,
        (Err(keys), Ok(_)) => Err(keys),
        (Err(keys), Err(flags)) => Err(anyhow!("{flags:#}\n{keys:#}")),
    }
}

/// Checks a saved plan against the overrides file and what the stores hold now, before anything
/// is written: a plan file is only a file, and it may have been edited by hand. Reads only the
/// targets the plan names for declared flags, so a store the plan does not touch (or one that
/// is down, whose writes will fail) does not stop it.
fn check_saved(rt: &Runtime, config: &Config, stores: &Stores, saved: &Plan, file: &Path) -> Result<()> {
    let declared: std::collections::BTreeSet<&FlagId> = config.overrides.iter().map(|o| &o.id).collect();
    let pairs: Vec<(FlagId, StoreTarget)> = saved
        .changes
        .iter()
        .filter(|c| declared.contains(&c.id))
        .map(|c| (c.id.clone(), c.target.clone()))
        .collect();
    let (observed, unreadable) = rt.block_on(stores.read_named(&pairs));
    for failure in unreadable {
        anstream::eprintln!(
            "{} cannot read {failure}; the plan's changes there are checked against the overrides file \
             only, and their writes are likely to fail too",
            ui::paint(ui::WARNING, "warning:")
        );
    }
    let now = |c: &Change| match stores.find(&c.id, &c.target) {
        None => TargetNow::Undeclared,
        Some(_) => observed
            .get(&c.id)
            .and_then(|readings| readings.iter().find(|(t, _)| *t == c.target))
            .map_or(TargetNow::Unreadable, |(_, lookup)| TargetNow::Read(lookup)),
    };
    let problems = plan::check_saved(saved, &config.overrides, now);
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "the plan file {} does not match the overrides file and the stores, so nothing was written:\n  {}\n\
         Make a new plan with `relayctl plan --out FILE`, review it, and apply that",
        file.display(),
        problems.join("\n  ")
    )
}

/// The closing status of an apply, or the error that says what was not written.
fn conclude(settings: &Settings, config: &Config, plan: &Plan, outcomes: &[FlagOutcome]) -> Result<Exit> {
    let flags = outcomes.len();
    let planned = plan.by_flag().len();
    if flags < planned {
        bail!(
            "interrupted after {flags} of {planned} flag(s); each flag handled is in the journal. \
             Run `relayctl plan` to see what is left, then apply it"
        );
    }
    let committed = outcomes.iter().filter(|o| o.commit.is_some()).count();
    let failed: Vec<&FlagOutcome> = outcomes
        .iter()
        .filter(|o| !o.entry.failed.is_empty() || !o.unresolved.is_empty())
        .collect();
    if failed.is_empty() {
        settings.status(format!(
            "Apply complete: {flags} flag(s) changed, {committed} journal commit(s) in {}. Run `relayctl sync` once LaunchDarkly is reachable.",
            config.journal.display()
        ));
        settings.status(
            "Services see it when their cache expires: SDKs reading the store directly after their cache TTL \
             (15 s by default), SDKs connected to Relay only once they reconnect (Relay does not push it).",
        );
        return Ok(Exit::Success);
    }
    let targets: usize = failed.iter().map(|o| o.entry.failed.len()).sum();
    let unknown: usize = failed.iter().map(|o| o.unresolved.len()).sum();
    let mut next = String::new();
    if failed.iter().any(|o| o.stale) {
        next += "Stale targets changed since the plan was made: run `relayctl plan` again and review. ";
    }
    if unknown > 0 {
        let _ = write!(
            next,
            "{unknown} target write(s) have an unknown outcome: the journal's write-ahead log keeps them, \
             and the next `relayctl apply` reads them back and records them. "
        );
    }
    let counts = match unknown {
        0 => format!("{targets} target write(s) failed"),
        _ => format!("{targets} target write(s) failed, {unknown} unknown"),
    };
    Err(anyhow!(
        "{} of {flags} flag(s) were not written everywhere ({counts}, listed above); {committed} journal \
         commit(s) record what was written. {next}Once the failing stores are reachable, run `relayctl plan` \
         to see exactly what is left and apply it",
        failed.len()
    ))
}

/// Plans, shows the plan and gets it approved, then takes the journal lock and plans again:
/// another apply (or Relay) may have written meanwhile. Whatever refuses the apply (bad store
/// content, nothing to do, no terminal, an answer other than yes) is found before the journal is
/// created or locked, so it leaves no trace. `None` when there is nothing to do.
fn plan_and_confirm(
    settings: &Settings,
    rt: &Runtime,
    config: &Config,
    stores: &Stores,
    auto_approve: bool,
) -> Result<Option<(Plan, Journal)>> {
    let preview = make_plan(settings, rt, config, stores)?;
    anstream::print!("{}", plan::render(&preview));
    check(&preview)?;
    if !preview.has_changes() {
        settings.status("No changes: the stores already match the overrides file.");
        return Ok(None);
    }
    apply::refuse_empty_reasons(&preview)?;
    keys::apply::refuse_empty_reasons(&preview.keys)?;
    if !auto_approve {
        if !ui::interactive() {
            bail!(
                "not applying: there is no terminal to confirm on. Review the plan above and run \
                 `relayctl apply --auto-approve`, or save it with `relayctl plan --out FILE` and run \
                 `relayctl apply FILE`"
            );
        }
        if !ui::confirm("Apply these changes? Only 'yes' is accepted:")? {
            bail!("not applying: the answer was not 'yes'. Nothing was written");
        }
    }
    let journal = open_journal(settings, &config.journal)?;
    let plan = make_plan(settings, rt, config, stores)?;
    if plan.changes != preview.changes || plan.keys != preview.keys {
        if !plan.has_changes() && plan.problems.is_empty() && plan.key_problems.is_empty() {
            settings.status(
                "No changes: the stores already match the overrides file (another apply wrote them meanwhile).",
            );
            return Ok(None);
        }
        settings.status("The stores changed since the plan above was made; the plan is now:");
        anstream::print!("{}", plan::render(&plan));
        check(&plan)?;
        if !auto_approve {
            bail!(
                "not applying: the plan changed after you approved it (another apply or Relay wrote \
                 meanwhile); nothing was written. Review the new plan and run apply again"
            );
        }
    }
    Ok(Some((plan, journal)))
}

/// Records the flag writes of an interrupted apply (see `apply::record_interrupted`) before
/// anything else, so the journal knows everything that is in the stores.
fn record_interrupted(
    settings: &Settings,
    rt: &Runtime,
    config: &Config,
    stores: &Stores,
    key_stores: &KeyStores,
) -> Result<()> {
    // A journal that cannot be opened is reported by the locked open of the apply itself. One
    // whose working tree is behind its branch is brought up to date when it closes.
    let due = |j: &Journal| j.unrecorded() > 0 || j.working_tree_behind();
    if !matches!(Journal::open_existing(&config.journal), Ok(Some(j)) if due(&j)) {
        return Ok(());
    }
    let mut journal = open_journal(settings, &config.journal)?;
    if !journal.interrupted().is_empty() {
        let intents = journal.interrupted().to_vec();
        let recorded = journal.write(|w| rt.block_on(apply::record_interrupted(stores, w, &intents)))?;
        settings.status(render_recorded(&recorded).trim_end());
    }
    if !journal.key_interrupted().is_empty() {
        let intents = journal.key_interrupted().to_vec();
        let recorded =
            journal.write(|w| rt.block_on(keys::apply::record_interrupted(key_stores, w, &intents)))?;
        settings.status(keys::apply::render_recorded(&recorded).trim_end());
    }
    close_journal(journal);
    Ok(())
}

/// What was found in the stores for the flags an interrupted apply left unrecorded.
fn render_recorded(recorded: &[Entry]) -> String {
    let mut out = format!(
        "An earlier apply left {} flag write(s) unrecorded (it was interrupted, or a store did not answer); \
         read the stores and recorded what it wrote:\n",
        recorded.len()
    );
    for entry in recorded {
        let written: Vec<String> = entry.written.iter().map(|(t, v)| format!("{t} (v{v})")).collect();
        let _ = writeln!(
            out,
            "  {}: {}",
            entry.id,
            if written.is_empty() {
                "not written anywhere".to_owned()
            } else {
                format!("written to {}", written.join(", "))
            }
        );
    }
    out
}

/// What happened to one flag: a line per target written (stdout) and per target that failed
/// (stderr). `width` aligns the flag column like the plan's.
fn render_outcome(width: usize, o: &FlagOutcome) -> (String, String) {
    let commit = o
        .commit
        .as_ref()
        .map(|c| format!("   journal {c}"))
        .unwrap_or_default();
    let (mut out, mut err) = (String::new(), String::new());
    for (target, version) in &o.entry.written {
        let note = match o.entry.notes.iter().find(|(t, _)| t == target) {
            Some((_, note)) => format!(" [{note}]"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} {:<width$}   {target} (v{version}){note}{commit}",
            ui::paint(ui::CHANGE, "~"),
            o.entry.id.to_string()
        );
    }
    for (target, warning) in &o.warnings {
        let _ = writeln!(
            err,
            "{} {} written to {target}, but {warning}",
            ui::paint(ui::WARNING, "warning:"),
            o.entry.id
        );
    }
    for (target, why) in &o.entry.failed {
        let _ = writeln!(
            err,
            "{} {} NOT written to {target}: {why}",
            ui::paint(ui::ERROR, "error:"),
            o.entry.id
        );
    }
    for (target, why) in &o.unresolved {
        let _ = writeln!(
            err,
            "{} {}: whether it was written to {target} is unknown ({why}); the journal's write-ahead log \
             keeps it, and the next `relayctl apply` reads it back and records it",
            ui::paint(ui::ERROR, "error:"),
            o.entry.id
        );
    }
    (out, err)
}

/// The wait after a target did not answer the writes of a batch, said once before it starts.
fn render_unanswered(event: &Event) -> String {
    let Event::Unanswered {
        target,
        flags,
        why,
        within,
    } = event
    else {
        return String::new();
    };
    let writes = match flags {
        [id] => format!("the write of {id}"),
        _ => format!("the writes of {} flags", flags.len()),
    };
    ui::read_back_warning(target, &writes, flags.len() == 1, why, *within)
}
