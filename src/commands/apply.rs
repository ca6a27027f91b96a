//! `relayctl apply [PLAN_FILE]`: write the changes, one journal commit per changed flag or key.
//!
//! Flags, then plain keys, go through the one apply engine ([`crate::apply`]); this file reads
//! the plan (saved, or made and confirmed here), renders what happened to each item as it
//! happens, and concludes with one status line or one error per kind.

use super::{check, close_journal, load, look, make_plan, open_journal, say_of, team};
use crate::apply::{self, Applicable, Event, Outcome, Tally};
use crate::desired::Config;
use crate::exit::Exit;
use crate::flag::{Flag, FlagRecord};
use crate::journal::{Entry, Journal};
use crate::key::{show_to, Key, KeyRecord};
use crate::kind::{Kind, StoreTarget};
use crate::lease::{self, Leases};
use crate::plan::{self, Part, Plan, TargetNow};
use crate::settings::Settings;
use crate::store::Stores;
use crate::ui;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use tokio::runtime::Runtime;

/// How apply shows the items of a kind, and what it says once they are all written.
trait Shown: Applicable {
    /// How an outcome line names the item (a flag's key; a key with the value written).
    fn label(record: &Self::Record) -> String;
    /// How an outcome line names the target written.
    fn shown_target(target: &StoreTarget) -> String;
    /// The status once every item was written everywhere.
    fn applied(settings: &Settings, config: &Config, changed: usize, committed: usize);
}

impl Shown for Flag {
    fn label(record: &FlagRecord) -> String {
        record.id.to_string()
    }

    fn shown_target(target: &StoreTarget) -> String {
        target.to_string()
    }

    fn applied(settings: &Settings, config: &Config, changed: usize, committed: usize) {
        settings.status(format!(
            "Apply complete: {changed} flag(s) changed, {committed} journal commit(s) in {}. Run `relayctl sync` \
             once LaunchDarkly is reachable.",
            config.journal.display()
        ));
        settings.status(
            "Services see it when their cache expires: SDKs reading the store directly after their cache TTL \
             (15 s by default), SDKs connected to Relay only once they reconnect (Relay does not push it).",
        );
    }
}

impl Shown for Key {
    fn label(record: &KeyRecord) -> String {
        format!("{}: {}", Key::record_id(record), show_to(record.value.as_deref()))
    }

    fn shown_target(target: &StoreTarget) -> String {
        target.target.clone()
    }

    fn applied(settings: &Settings, _: &Config, changed: usize, committed: usize) {
        settings.status(format!(
            "Keys: {changed} key(s) changed, {committed} journal commit(s). They are plain Redis keys with no \
             LaunchDarkly counterpart: sync and verify leave them alone, and services see them on their next read."
        ));
    }
}

/// Applies a saved plan exactly (once it is checked against the overrides file and the stores),
/// or plans, confirms and applies. Records what an interrupted apply wrote first. Exit 1 when a
/// target failed (the journal records what was written; a fresh plan shows what is left).
pub fn run(
    settings: &Settings,
    rt: &Runtime,
    plan_file: Option<&Path>,
    auto_approve: bool,
    lock_timeout: std::time::Duration,
) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    look(settings, &config);
    let saved = plan_file.map(Plan::load).transpose()?;
    record_interrupted(settings, rt, &config, &stores)?;
    let (plan, mut journal, mut leases) = match saved {
        Some(plan) if !plan.has_changes() => {
            settings.status("The plan has no changes; nothing to apply.");
            return Ok(Exit::Success);
        }
        Some(plan) => {
            apply::refuse_empty_reasons(&plan.flags)?;
            apply::refuse_empty_reasons(&plan.keys)?;
            let file = plan_file.unwrap_or(Path::new(""));
            let mut problems = check_saved::<Flag>(rt, &config, &stores, &plan);
            problems.extend(check_saved::<Key>(rt, &config, &stores, &plan));
            refuse_unsound(&problems, file)?;
            let mut journal = open_journal(settings, &config.journal)?;
            let leases = take_leases(settings, &journal, &stores, &plan, lock_timeout)?;
            combine(settings, &config, &mut journal, leases.waited)?;
            (plan, journal, leases)
        }
        None => match plan_and_confirm(settings, rt, &config, &stores, (auto_approve, lock_timeout))? {
            Some(planned) => planned,
            None => return Ok(Exit::Success),
        },
    };
    crate::interrupt::install().context("installing the Ctrl-C handler")?;
    let (flags, keys) = journal.write(|w| {
        let flags = rt.block_on(apply::apply(
            &plan.flags,
            &stores,
            w,
            &mut print::<Flag>(&plan.flags),
        ))?;
        let keys = rt.block_on(apply::apply(
            &plan.keys,
            &stores,
            w,
            &mut print::<Key>(&plan.keys),
        ))?;
        Ok((flags, keys))
    })?;
    if let Some(team) = team(settings, &config) {
        crate::team::publish(&mut journal, &team)?;
    }
    // Released while the journal is still locked: its record of the lease must not be read by
    // the next apply of this journal while the lease is live.
    let lost = leases.release();
    close_journal(journal);
    if let Some(lost) = lost {
        ui::out::eprintln(&format!(
            "{} {lost}: another apply may have written meanwhile. Every write was a compare-and-set, so none \
             overwrote another's; run `relayctl plan` to see where the stores stand",
            ui::paint(ui::WARNING, "warning:")
        ));
    }
    let flags = conclude(settings, &config, &plan.flags, &flags);
    match (flags, conclude(settings, &config, &plan.keys, &keys)) {
        (Ok(()), Ok(())) => Ok(Exit::Success),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(flags), Err(keys)) => Err(anyhow!("{flags:#}\n{keys:#}")),
    }
}

/// Prints each event of an apply of `part` as it happens: outcomes to stdout (failures to
/// stderr), aligned like the plan's lines; a target that did not answer, before it is read back.
fn print<K: Shown>(part: &Part<K>) -> impl FnMut(Event<K>) {
    let labels = part
        .by_item()
        .into_iter()
        .map(|changes| K::label(&K::record(&changes)).chars().count());
    let width = ui::column_width(labels);
    move |event| match event {
        Event::Done(o) => {
            let (out, err) = render_outcome(width, o);
            // Shown at once: a line is the word that its item was written and journaled. A
            // stdout that fails now fails the run at its end (`ui::out::finish`): the apply
            // goes on, since its writes are already under way.
            let _ = ui::out::print(&out).and_then(|()| ui::out::flush());
            ui::out::eprint(&err);
        }
        Event::Slow {
            targets,
            writes,
            after,
        } => {
            let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
            ui::out::eprintln(&format!(
                "{} still waiting for {} to answer ({writes} {} write(s) sent {}s ago); each request is bounded \
                 by the store's timeout, after which what was sent is read back",
                ui::paint(ui::WARNING, "warning:"),
                targets.join(" and "),
                K::NOUN,
                after.as_secs()
            ));
        }
        Event::Unanswered {
            target,
            ids,
            why,
            answered,
            within,
        } => {
            let (writes, one) = K::writes_of(ids);
            ui::out::eprint(&ui::read_back_warning(
                target,
                (&writes, one, answered),
                why,
                within,
            ));
        }
    }
}

/// Checks a saved plan's changes of kind `K` against the overrides file and what the stores hold
/// now, before anything is written: a plan file is only a file, and it may have been edited by
/// hand. Reads only the targets the plan names for declared items, so a store the plan does not
/// touch (or one that is down, whose writes will fail) does not stop it. One message per bad
/// change.
fn check_saved<K: Shown>(rt: &Runtime, config: &Config, stores: &Stores, saved: &Plan) -> Vec<String> {
    let declared: std::collections::BTreeSet<K::Id> =
        K::declared(config).iter().map(K::declared_id).collect();
    let pairs: Vec<(K::Id, StoreTarget)> = K::part(saved)
        .changes
        .iter()
        .filter(|c| declared.contains(&K::id(c)))
        .map(|c| (K::id(c), K::target(c).clone()))
        .collect();
    let (observed, unreadable) = rt.block_on(stores.read_named::<K>(&pairs));
    for failure in unreadable {
        ui::out::eprintln(&format!(
            "{} cannot read {failure}; the plan's changes there are checked against the overrides file \
             only, and their writes are likely to fail too",
            ui::paint(ui::WARNING, "warning:")
        ));
    }
    let now = |c: &K::Change| match stores.find::<K>(&K::id(c), K::target(c)) {
        None => TargetNow::Undeclared,
        Some(_) => observed
            .get(&K::id(c))
            .and_then(|readings| readings.iter().find(|(t, _)| t == K::target(c)))
            .map_or(TargetNow::Unreadable, |(_, held)| TargetNow::Read(held)),
    };
    plan::check_saved::<K>(saved, K::declared(config), now)
}

/// Refuses a saved plan with `problems`, before anything is written.
fn refuse_unsound(problems: &[String], file: &Path) -> Result<()> {
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

/// The closing status of one kind's part of an apply, or the error that says what was not written.
fn conclude<K: Shown>(settings: &Settings, config: &Config, part: &Part<K>, tally: &Tally) -> Result<()> {
    let (noun, handled, planned) = (K::NOUN, tally.handled, part.by_item().len());
    if handled < planned {
        bail!(
            "interrupted after {handled} of {planned} {noun}(s); each {noun} handled is in the journal. \
             Run `relayctl plan` to see what is left, then apply it"
        );
    }
    if planned == 0 {
        return Ok(());
    }
    let committed = tally.committed;
    if tally.failed == 0 {
        K::applied(settings, config, handled, committed);
        return Ok(());
    }
    let (targets, unknown) = (tally.failed_targets, tally.unknown);
    let mut next = String::new();
    if tally.stale {
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
        "{} of {handled} {noun}(s) were not written everywhere ({counts}, listed above); {committed} journal \
         commit(s) record what was written. {next}Once the failing stores are reachable, run `relayctl plan` \
         to see exactly what is left and apply it",
        tally.failed
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
    (auto_approve, lock_timeout): (bool, std::time::Duration),
) -> Result<Option<(Plan, Journal, Leases)>> {
    let preview = make_plan(settings, rt, config, stores)?;
    ui::out::print(&plan::render(&preview))?;
    check(&preview)?;
    if !preview.has_changes() {
        settings.status("No changes: the stores already match the overrides file.");
        return Ok(None);
    }
    apply::refuse_empty_reasons(&preview.flags)?;
    apply::refuse_empty_reasons(&preview.keys)?;
    // What is approved is what was shown: a plan that could not be shown is not applied.
    ui::out::flush()?;
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
    let mut journal = open_journal(settings, &config.journal)?;
    let leases = take_leases(settings, &journal, stores, &preview, lock_timeout)?;
    combine(settings, config, &mut journal, leases.waited)?;
    let plan = make_plan(settings, rt, config, stores)?;
    if plan.flags.changes != preview.flags.changes || plan.keys.changes != preview.keys.changes {
        if !plan.has_changes() && plan.problems() == 0 {
            settings.status(
                "No changes: the stores already match the overrides file (another apply wrote them meanwhile).",
            );
            return Ok(None);
        }
        settings.status("The stores changed since the plan above was made; the plan is now:");
        ui::out::print(&plan::render(&plan))?;
        check(&plan)?;
        ui::out::flush()?;
        if !auto_approve {
            bail!(
                "not applying: the plan changed after you approved it (another apply or Relay wrote \
                 meanwhile); nothing was written. Review the new plan and run apply again"
            );
        }
    }
    Ok(Some((plan, journal, leases)))
}

/// Takes the team lock (SPEC "Working as a team"): a lease in every store the plan writes to,
/// waiting up to `wait` for another operator's apply. It is taken once the journal is locked, so
/// two applies on one journal still queue on the journal's lock (its wait is longer) and only
/// applies from other journals, other machines, meet here.
fn take_leases(
    settings: &Settings,
    journal: &Journal,
    stores: &Stores,
    plan: &Plan,
    wait: std::time::Duration,
) -> Result<Leases> {
    let mut spots: Vec<_> = plan
        .flags
        .changes
        .iter()
        .filter_map(|c| stores.flag_lease(&Flag::id(c), Flag::target(c)))
        .collect();
    spots.extend(
        plan.keys
            .changes
            .iter()
            .filter_map(|c| stores.key_lease(&Key::id(c), Key::target(c))),
    );
    let command = match &settings.command {
        crate::settings::Command::Apply {
            plan_file: Some(f), ..
        } => format!("relayctl apply {}", f.display()),
        _ => "relayctl apply".to_owned(),
    };
    let author = journal.author().unwrap_or_else(|| "relayctl".to_owned());
    let holder = lease::Holder::new(&author, &command);
    let options = lease::Options {
        wait,
        ttl: settings.lease_ttl,
        say: say_of(settings),
        record: Some(journal.lease_record()),
    };
    lease::take(spots, holder, &options)
}

/// With a remote: joins what teammates pushed with the journal before writing (fetching again
/// first when this apply waited for another's lease: that one pushed just before letting go).
fn combine(settings: &Settings, config: &Config, journal: &mut Journal, waited: bool) -> Result<()> {
    let Some(team) = team(settings, config) else {
        return Ok(());
    };
    let net = team.net();
    if waited {
        if let Err(e) = journal.fetch(&net) {
            (team.say)(&format!(
                "warning: fetching the journal again failed ({e:#}); going on"
            ));
        }
    }
    journal.combine(&team.remote.shown)?;
    Ok(())
}

/// Records the writes of an interrupted apply (see `apply::record_interrupted`) before anything
/// else, so the journal knows everything that is in the stores.
fn record_interrupted(settings: &Settings, rt: &Runtime, config: &Config, stores: &Stores) -> Result<()> {
    // A journal that cannot be opened is reported by the locked open of the apply itself. One
    // whose working tree is behind its branch is brought up to date when it closes.
    let due = |j: &Journal| j.unrecorded() > 0 || j.working_tree_behind();
    if !matches!(Journal::open_existing(&config.journal), Ok(Some(j)) if due(&j)) {
        return Ok(());
    }
    let mut journal = open_journal(settings, &config.journal)?;
    record_interrupted_of::<Flag>(settings, rt, stores, &mut journal)?;
    record_interrupted_of::<Key>(settings, rt, stores, &mut journal)?;
    close_journal(journal);
    Ok(())
}

fn record_interrupted_of<K: Shown>(
    settings: &Settings,
    rt: &Runtime,
    stores: &Stores,
    journal: &mut Journal,
) -> Result<()> {
    let intents = journal.interrupted::<K>().to_vec();
    if intents.is_empty() {
        return Ok(());
    }
    let recorded = journal.write(|w| rt.block_on(apply::record_interrupted(stores, w, &intents)))?;
    settings.status(render_recorded(&recorded).trim_end());
    Ok(())
}

/// What was found in the stores for the items an interrupted apply left unrecorded.
fn render_recorded<K: Shown>(recorded: &[Entry<K>]) -> String {
    let mut out = format!(
        "An earlier apply left {} {} write(s) unrecorded (it was interrupted, or a store did not answer); \
         read the stores and recorded what it wrote:\n",
        recorded.len(),
        K::NOUN
    );
    for entry in recorded {
        let written: Vec<String> = entry.written.iter().map(|(t, v)| written::<K>(t, *v)).collect();
        let _ = writeln!(
            out,
            "  {}: {}",
            K::record_id(&entry.record),
            if written.is_empty() {
                "not written anywhere".to_owned()
            } else {
                format!("written to {}", written.join(", "))
            }
        );
    }
    out
}

/// A target written, with the version it now holds where the kind has one: `<target> (v42)`.
fn written<K: Kind>(target: &StoreTarget, version: K::Version) -> String {
    match K::show_version(version) {
        Some(v) => format!("{target} ({v})"),
        None => target.to_string(),
    }
}

/// What happened to one item: a line per target written (stdout) and per target that failed
/// (stderr). `width` aligns the item column like the plan's.
fn render_outcome<K: Shown>(width: usize, o: &Outcome<K>) -> (String, String) {
    let id = K::record_id(&o.entry.record);
    let label = K::label(&o.entry.record);
    let commit = o
        .commit
        .as_ref()
        .map(|c| format!("   journal {c}"))
        .unwrap_or_default();
    let (mut out, mut err) = (String::new(), String::new());
    for (target, version) in &o.entry.written {
        let version = K::show_version(*version)
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        let note = o
            .entry
            .note(target)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {label:<width$}   {}{version}{note}{commit}",
            ui::paint(ui::CHANGE, "~"),
            K::shown_target(target)
        );
    }
    for (target, warning) in &o.warnings {
        let _ = writeln!(
            err,
            "{} {id} written to {target}, but {warning}",
            ui::paint(ui::WARNING, "warning:")
        );
    }
    for (target, why) in &o.entry.failed {
        let _ = writeln!(
            err,
            "{} {id} NOT written to {target}: {why}",
            ui::paint(ui::ERROR, "error:")
        );
    }
    for (target, why) in &o.unresolved {
        let _ = writeln!(
            err,
            "{} {id}: whether it was written to {target} is unknown ({why}); the journal's write-ahead log \
             keeps it, and the next `relayctl apply` reads it back and records it",
            ui::paint(ui::ERROR, "error:")
        );
    }
    (out, err)
}
