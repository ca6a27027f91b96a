//! The commands, one file each (cargo's `bin/cargo/commands/` style): each turns [`Settings`]
//! into plain values, calls the engine (plan, apply, sync, the journal), renders what happened
//! and picks the exit code. Data goes to stdout, status and diagnostics to stderr. This is the
//! only layer that knows both settings and exit codes.

mod apply;
mod eval;
mod generated;
mod import;
mod log;
mod plan;
mod show;
mod status;
mod sync;
mod unlock;
mod verify;

use crate::desired::{self, Config};
use crate::exit::Exit;
use crate::flag::Flag;
use crate::journal::Journal;
use crate::key::Key;
use crate::kind::Observed;
use crate::launchdarkly::{self, Client, SetupError};
use crate::plan::{Plan, Plannable};
use crate::settings::{Command, Settings};
use crate::store::{Storable, Stores};
use crate::ui;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Instant;
use tokio::runtime::Runtime;

/// Runs the command `settings` names.
pub fn run(settings: &Settings, rt: &Runtime) -> Result<Exit> {
    match &settings.command {
        Command::Plan {
            out,
            json,
            detailed_exitcode,
        } => plan::run(settings, rt, out.as_deref(), *json, *detailed_exitcode),
        Command::Apply {
            plan_file,
            auto_approve,
            lock_timeout,
        } => apply::run(settings, rt, plan_file.as_deref(), *auto_approve, *lock_timeout),
        Command::Unlock { id } => unlock::run(settings, rt, id),
        Command::Log { pending } => log::run(settings, *pending),
        Command::Sync { dry_run, force, wait } => {
            let options = crate::sync::Options {
                dry_run: *dry_run,
                force: *force,
                deadline: None,
            };
            sync::run(settings, rt, options, *wait)
        }
        Command::Verify => verify::run(settings, rt),
        Command::Show { selectors, json } => show::run(settings, rt, selectors, *json),
        Command::Import { flags, write } => import::run(settings, rt, flags, *write),
        Command::Eval {
            flags,
            contexts,
            planned,
            json,
        } => eval::run(settings, rt, flags, contexts, *planned, *json),
        Command::Status {
            selectors,
            json,
            watch,
        } => status::run(settings, rt, selectors, *json, *watch),
        Command::Completions { script } => generated::print(script),
        Command::Man { page } => generated::print(page),
    }
}

/// The overrides file (with `RELAYCTL_GIT_FETCH_WITH_CLI` applied to its journal remote).
fn load_config(settings: &Settings) -> Result<Config> {
    let mut config = desired::load(&settings.config, &settings.config_env)?;
    if let (Some(remote), Some(cli)) = (config.remote.as_mut(), settings.git_cli) {
        remote.cli = cli;
    }
    Ok(config)
}

/// Status lines on stderr unless `--quiet` (for the team's remote and the lease).
fn say_of(settings: &Settings) -> &'static dyn Fn(&str) {
    fn say(line: &str) {
        ui::out::eprintln(line);
    }
    fn silent(_: &str) {}
    if settings.quiet {
        &silent
    } else {
        &say
    }
}

/// The journal's remote, when the overrides file names one.
fn team<'a>(settings: &Settings, config: &'a Config) -> Option<crate::team::Team<'a>> {
    config.remote.as_ref().map(|remote| crate::team::Team {
        remote,
        timeout: settings.git_timeout,
        say: say_of(settings),
    })
}

/// Fetch first (SPEC "Working as a team"): with a remote, fetch the journal and say what
/// teammates did and what is not pushed; whether the remote answered.
fn look(settings: &Settings, config: &Config) -> bool {
    team(settings, config).is_some_and(|t| crate::team::look(&config.journal, &t))
}

/// The overrides file and its stores.
fn load(settings: &Settings) -> Result<(Config, Stores)> {
    let config = load_config(settings)?;
    let stores = Stores::open(&config.stores, &config.key_stores, settings.redis_timeout)?;
    Ok((config, stores))
}

/// Reads the stores and plans the overrides file against them: flags, then plain keys.
fn make_plan(settings: &Settings, rt: &Runtime, config: &Config, stores: &Stores) -> Result<Plan> {
    let started = Instant::now();
    let (flags, keys) =
        rt.block_on(async { tokio::join!(observe::<Flag>(config, stores), observe::<Key>(config, stores)) });
    if settings.verbose > 0 {
        settings.status(format!(
            "Read {} flags from {} store targets in {} ms.",
            config.overrides.len(),
            stores.len::<Flag>(),
            started.elapsed().as_millis()
        ));
    }
    let mut plan = Plan::default();
    plan.add::<Flag>(&config.overrides, &flags?);
    plan.add::<Key>(&config.keys, &keys?);
    Ok(plan)
}

/// What the stores hold for every declared item of kind `K`.
async fn observe<K: Plannable + Storable>(config: &Config, stores: &Stores) -> Result<Observed<K>> {
    let ids: Vec<K::Id> = K::declared(config).iter().map(K::declared_id).collect();
    stores.read::<K>(&ids).await
}

/// Fails when the plan has problems, after printing its diagnostics.
fn check(plan: &Plan) -> Result<()> {
    ui::out::eprint(&crate::plan::render_diagnostics(plan));
    for (problems, noun) in [
        (plan.flags.problems.len(), "flag"),
        (plan.keys.problems.len(), "key"),
    ] {
        if problems > 0 {
            bail!(
                "{problems} declared {noun}/target pair(s) cannot be planned (listed above); nothing was written. \
                 Fix the overrides file or the store, then run plan again"
            );
        }
    }
    Ok(())
}

/// Opens the journal at `path` for writing, and says what it recovered from a killed relayctl.
fn open_journal(settings: &Settings, path: &Path) -> Result<Journal> {
    open_journal_with(settings, path, &settings.journal_options())
}

/// [`open_journal`] with `options` (another lock wait).
fn open_journal_with(settings: &Settings, path: &Path, options: &crate::journal::Options) -> Result<Journal> {
    let journal = Journal::open_locked(path, options)?;
    let recovery = journal.recovery();
    if recovery.commits > 0 {
        settings.status(format!(
            "Recovered {} journal commit(s) that an interrupted relayctl had written to the stores \
             but not yet to the journal {}.",
            recovery.commits,
            path.display()
        ));
    }
    if let Some(lock) = &recovery.released_lock {
        settings.status(format!(
            "Removed {}, which a relayctl interrupted while moving that ref left behind.",
            lock.display()
        ));
    }
    if recovery.torn > 0 {
        settings.status(format!(
            "{} {} line(s) of the journal's write-ahead log {} were cut short by an interruption and \
             could not be read; run `relayctl plan` and compare the stores with `relayctl log`.",
            ui::paint(ui::WARNING, "warning:"),
            recovery.torn,
            recovery.wal.display()
        ));
    }
    Ok(journal)
}

/// Closes the journal, saying on stderr why its working tree was left as it is, if it was.
fn close_journal(journal: Journal) {
    if let Some(warning) = journal.close() {
        ui::out::eprintln(&format!("{} {warning}", ui::paint(ui::WARNING, "warning:")));
    }
}

/// The client for the configured LaunchDarkly, or why there is none (one line naming the setting
/// at fault, never its secret). Makes no request. Its notices (waits, retries) go to stderr
/// unless `--quiet`.
fn ld_client(settings: &Settings, config: &Config) -> Result<Client> {
    let Some(token) = &settings.launchdarkly.token else {
        bail!(
            "LD_API_KEY is not set: relayctl needs a LaunchDarkly API access token (with writer rights) to talk \
             to LaunchDarkly. Set LD_API_KEY in the environment or in a .env file in the working directory, \
             then run this again. Nothing was sent"
        );
    };
    let (base, source) = match (&settings.launchdarkly.base_url, &config.base_url) {
        (Some(base), _) => (base.as_str(), "LD_BASE_URL".to_owned()),
        (None, Some(base)) => (
            base.as_str(),
            format!("[launchdarkly] base_url in {}", settings.config.display()),
        ),
        (None, None) => (launchdarkly::DEFAULT_BASE_URL, "the default base URL".to_owned()),
    };
    let client = Client::new(base, token).map_err(|e| {
        let setting = match e {
            SetupError::Token(_) => "LD_API_KEY",
            SetupError::BaseUrl(_) => source.as_str(),
        };
        anyhow::anyhow!("{setting} {e}. Nothing was sent")
    })?;
    let quiet = settings.quiet;
    let client = client.with_notices(move |line| {
        if !quiet {
            ui::out::eprintln(line);
        }
    });
    Ok(match settings.launchdarkly.timeout {
        Some(timeout) => client.with_timeout(timeout),
        None => client,
    })
}
