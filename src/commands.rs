//! The commands: each wires configuration, stores, planner, journal and output together.
//!
//! The decisions live elsewhere (plan.rs decides, apply.rs executes, journal.rs records); this
//! module loads inputs, calls them and prints. Data goes to stdout, status and diagnostics to
//! stderr.

use crate::apply::{self, apply, FlagOutcome};
use crate::desired::{self, Config, FlagId};
use crate::journal::Journal;
use crate::plan::{self, Plan, Style};
use crate::settings::Settings;
use crate::store::Stores;
use crate::Exit;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use tokio::runtime::Runtime;

fn load(settings: &Settings) -> Result<(Config, Stores)> {
    let config = desired::load(&settings.config, &settings.config_env())?;
    let stores = Stores::open(&config.stores)?;
    Ok((config, stores))
}

/// Reads the stores and plans the overrides file against them.
fn make_plan(settings: &Settings, rt: &Runtime, config: &Config, stores: &Stores) -> Result<Plan> {
    let started = Instant::now();
    let flags: Vec<FlagId> = config.overrides.iter().map(|o| o.id.clone()).collect();
    let observed = rt.block_on(stores.read(&flags))?;
    if settings.verbose > 0 {
        settings.status(format!(
            "Read {} flags from {} store targets in {} ms.",
            flags.len(),
            stores.targets().len(),
            started.elapsed().as_millis()
        ));
    }
    Ok(plan::plan(&config.overrides, &observed))
}

fn painter(settings: &Settings, stderr: bool) -> impl Fn(Style, &str) -> String + '_ {
    move |style, text| {
        if stderr {
            settings.stderr.paint(style, text)
        } else {
            settings.stdout.paint(style, text)
        }
    }
}

/// Fails when the plan has problems, after printing its diagnostics.
fn check(settings: &Settings, plan: &Plan) -> Result<()> {
    eprint!("{}", plan::render_diagnostics(plan, &painter(settings, true)));
    if !plan.problems.is_empty() {
        bail!(
            "{} declared flag/target pair(s) cannot be planned (listed above); nothing was written. \
             Fix the overrides file or the store, then run plan again",
            plan.problems.len()
        );
    }
    Ok(())
}

/// `relayctl plan`.
pub fn plan(
    settings: &Settings,
    rt: &Runtime,
    out: Option<&Path>,
    json: bool,
    detailed: bool,
) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    let plan = make_plan(settings, rt, &config, &stores)?;
    if json {
        check(settings, &plan)?;
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan::render(&plan, &painter(settings, false)));
        check(settings, &plan)?;
    }
    if let Some(out) = out {
        let text = serde_json::to_string_pretty(&plan)? + "\n";
        std::fs::write(out, text).with_context(|| format!("saving the plan to {}", out.display()))?;
        settings.status(format!(
            "Saved the plan to {}. Apply exactly it with: relayctl -c {} apply {}",
            out.display(),
            settings.config.display(),
            out.display()
        ));
    }
    Ok(if detailed && !plan.changes.is_empty() {
        Exit::Pending
    } else {
        Exit::Success
    })
}

fn read_plan_file(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan file {}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a plan saved by `relayctl plan --out`", path.display()))?;
    if plan.format_version != plan::FORMAT_VERSION {
        bail!(
            "the plan file {} has format_version {}, this relayctl reads {}; make a new plan with this version",
            path.display(),
            plan.format_version,
            plan::FORMAT_VERSION
        );
    }
    Ok(plan)
}

/// `relayctl apply`.
pub fn apply_cmd(
    settings: &Settings,
    rt: &Runtime,
    plan_file: Option<&Path>,
    auto_approve: bool,
) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    let saved = plan_file.map(read_plan_file).transpose()?;
    record_interrupted(settings, rt, &config, &stores)?;
    let (plan, mut journal) = match saved {
        Some(plan) if plan.changes.is_empty() => {
            settings.status("The plan has no changes; nothing to apply.");
            return Ok(Exit::Success);
        }
        Some(plan) => (plan, Journal::open_locked(&config.journal, settings.lock_wait)?),
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
    let outcomes =
        journal.write(|w| rt.block_on(apply(&plan, &stores, w, &mut |o| report(settings, width, o))))?;
    journal.close()?;

    let flags = outcomes.len();
    let planned = plan.by_flag().len();
    if flags < planned {
        bail!(
            "interrupted after {flags} of {planned} flag(s); each flag handled is in the journal. \
             Run `relayctl plan` to see what is left, then apply it"
        );
    }
    let committed = outcomes.iter().filter(|o| o.commit.is_some()).count();
    let failed: Vec<&FlagOutcome> = outcomes.iter().filter(|o| !o.entry.failed.is_empty()).collect();
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
    let next = if failed.iter().any(|o| o.stale) {
        "Stale targets changed since the plan was made: run `relayctl plan` again and review. "
    } else {
        ""
    };
    Err(anyhow!(
        "{} of {flags} flag(s) were not written everywhere ({targets} target write(s) failed, listed above); \
         {committed} journal commit(s) record what was written. {next}Once the failing stores are reachable, \
         run `relayctl plan` to see exactly what is left and apply it",
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
    print!("{}", plan::render(&preview, &painter(settings, false)));
    check(settings, &preview)?;
    if preview.changes.is_empty() {
        settings.status("No changes: the stores already match the overrides file.");
        return Ok(None);
    }
    if !auto_approve {
        if !crate::ui::interactive() {
            bail!(
                "not applying: there is no terminal to confirm on. Review the plan above and run \
                 `relayctl apply --auto-approve`, or save it with `relayctl plan --out FILE` and run \
                 `relayctl apply FILE`"
            );
        }
        if !crate::ui::confirm("Apply these changes? Only 'yes' is accepted:")? {
            bail!("not applying: the answer was not 'yes'. Nothing was written");
        }
    }
    let journal = Journal::open_locked(&config.journal, settings.lock_wait)?;
    let plan = make_plan(settings, rt, config, stores)?;
    if plan.changes != preview.changes {
        if plan.changes.is_empty() && plan.problems.is_empty() {
            settings.status(
                "No changes: the stores already match the overrides file (another apply wrote them meanwhile).",
            );
            return Ok(None);
        }
        settings.status("The stores changed since the plan above was made; the plan is now:");
        print!("{}", plan::render(&plan, &painter(settings, false)));
        check(settings, &plan)?;
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
fn record_interrupted(settings: &Settings, rt: &Runtime, config: &Config, stores: &Stores) -> Result<()> {
    // A journal that cannot be opened is reported by the locked open of the apply itself.
    if !matches!(Journal::open_existing(&config.journal), Ok(Some(j)) if j.unrecorded() > 0) {
        return Ok(());
    }
    let mut journal = Journal::open_locked(&config.journal, settings.lock_wait)?;
    if !journal.interrupted().is_empty() {
        let intents = journal.interrupted().to_vec();
        let recorded = journal.write(|w| rt.block_on(apply::record_interrupted(stores, w, &intents)))?;
        settings.status(format!(
            "An earlier apply was interrupted while writing {} flag(s); read the stores and recorded what it wrote:",
            recorded.len()
        ));
        for entry in &recorded {
            let written: Vec<String> = entry.written.iter().map(|(t, v)| format!("{t} (v{v})")).collect();
            settings.status(format!(
                "  {}: {}",
                entry.id,
                if written.is_empty() {
                    "not written anywhere".to_owned()
                } else {
                    format!("written to {}", written.join(", "))
                }
            ));
        }
    }
    journal.close()
}

/// Prints what happened to one flag; `width` aligns the flag column like the plan's.
fn report(settings: &Settings, width: usize, o: &FlagOutcome) {
    let commit = o
        .commit
        .map(|c| format!("   journal {}", &c.to_string()[..7]))
        .unwrap_or_default();
    for (target, version) in &o.entry.written {
        println!(
            "  {} {:<width$}   {target} (v{version}){commit}",
            settings.stdout.paint(Style::Change, "~"),
            o.entry.id.to_string()
        );
    }
    for (target, why) in &o.entry.failed {
        eprintln!(
            "{} {} NOT written to {target}: {why}",
            settings.stderr.paint(Style::Error, "error:"),
            o.entry.id
        );
    }
}

/// `relayctl log`.
pub fn log(settings: &Settings, pending_only: bool) -> Result<Exit> {
    let config = desired::load(&settings.config, &settings.config_env())?;
    let Some(journal) = Journal::open_existing(&config.journal)? else {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    };
    let unrecorded = journal.unrecorded();
    if unrecorded > 0 {
        eprintln!(
            "warning: {unrecorded} change(s) of an interrupted or running apply are not in the journal yet; \
             the next `relayctl apply` records them (it reads the stores to tell what was written)"
        );
    }
    let mut shown = 0;
    for r in journal.entries()? {
        if pending_only && r.is_synced() {
            continue;
        }
        shown += 1;
        println!(
            "{}  {}  {:<24}  {}  [{}]",
            r.short,
            crate::journal::format_utc(r.time),
            r.author,
            r.subject,
            r.status()
        );
    }
    if shown == 0 {
        settings.status(if pending_only {
            "Nothing pending: every journal commit is synced."
        } else {
            "The journal has no flag changes yet."
        });
    }
    Ok(Exit::Success)
}

/// `relayctl sync`: see [`crate::sync::sync`] for what a re-run after a crash does.
pub fn sync(settings: &Settings, rt: &Runtime, dry_run: bool, force: bool) -> Result<Exit> {
    let config = desired::load(&settings.config, &settings.config_env())?;
    crate::sync::sync_command(settings, rt, &config, crate::sync::Options { dry_run, force })
}

/// `relayctl verify`.
pub fn verify(settings: &Settings, rt: &Runtime) -> Result<Exit> {
    let config = desired::load(&settings.config, &settings.config_env())?;
    crate::sync::verify_command(settings, rt, &config)
}
