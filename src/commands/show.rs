//! `relayctl show [PROJECT/ENV[/FLAG]]... [--json]`: what the stores hold now, by value, and
//! whether it is the declared state. Reads only; safe to run at any time. Plain Redis keys
//! (selected as `STORE` or `_keys/STORE[/KEY]`) follow the flags: [`keys`].
//!
//! Each environment is read from every target at once, then its lines are streamed to stdout as
//! they are rendered. A target that cannot be read, an environment no target holds, a flag no
//! target holds: each is an error naming it and where it was looked for, reported after what
//! could be shown (exit 1).

pub(super) mod keys;

use super::load;
use crate::desired::Config;
use crate::exit::Exit;
use crate::select::{group, parse_key, parse_selector};
use crate::settings::Settings;
use crate::show::{self, FlagView, Showable, State, Summary, View};
use crate::store::{Listing, Stores};
use crate::ui;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeSet;
use std::time::Instant;
use tokio::runtime::Runtime;

/// What to read: per project/environment, in the order first named, every flag (`None`) or
/// the flags named.
type Groups = Vec<((String, String), Option<Vec<String>>)>;

/// Every project/environment the overrides file names, or an error saying to name one.
fn named_environments(settings: &Settings, config: &crate::desired::Config) -> Result<Groups> {
    let mut envs: BTreeSet<(String, String)> = config
        .overrides
        .iter()
        .map(|o| (o.id.project.clone(), o.id.environment.clone()))
        .collect();
    for store in &config.stores {
        envs.extend(store.environments());
    }
    if envs.is_empty() && config.keys.is_empty() {
        bail!(
            "the overrides file {} names no project/environment (no [overrides.<project>.<environment>] \
             table, no [store.prefixes] entry), so there is nothing to show by default: name one, e.g. \
             `relayctl show default/production`",
            settings.config.display()
        );
    }
    Ok(envs.into_iter().map(|e| (e, None)).collect())
}

/// Shows the selected flags and keys (human or `--json`); exit 1 when something could not be
/// shown.
pub fn run(settings: &Settings, rt: &Runtime, selectors: &[String], json: bool) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    super::look(settings, &config);
    let (groups, key_groups) = if selectors.is_empty() {
        (
            named_environments(settings, &config)?,
            keys::declared_stores(&config),
        )
    } else {
        let names: Vec<&str> = config.key_stores.iter().map(|s| s.name.as_str()).collect();
        let (mut flags, mut selected) = (Vec::new(), Vec::new());
        for raw in selectors {
            match parse_key(raw, &names)? {
                Some(key) => selected.push(key),
                None => flags.push(parse_selector(raw)?),
            }
        }
        (
            group(flags.into_iter().map(|s| ((s.project, s.environment), s.flag))),
            group(selected),
        )
    };
    let mut out = Out::new(json);
    if json {
        out.write(&show::json_open())?;
    }
    let (mut summary, mut errors, mut first) = (Summary::default(), Vec::new(), true);
    for ((project, environment), only) in &groups {
        let views = environment_views(
            settings,
            rt,
            &stores,
            &config,
            (project, environment),
            only.as_deref(),
            &mut errors,
        );
        summary.add(&views);
        out.items(&views, json, &mut first)?;
    }
    if json {
        out.write(show::JSON_KEYS)?;
    }
    let mut first = true;
    for (store, only) in &key_groups {
        let views = keys::store_views(
            settings,
            rt,
            (&stores, &config),
            (store, only.as_deref()),
            &mut errors,
        );
        summary.add(&views);
        out.items(&views, json, &mut first)?;
    }
    if json {
        out.write(show::JSON_CLOSE)?;
    }
    out.finish()?;
    if !json && (summary.flags + summary.keys > 0 || errors.is_empty()) {
        settings.status(show::render_summary(&summary).trim_end());
    }
    conclude(&errors)
}

/// Reads one environment from every target and builds its views; what cannot be read or is
/// nowhere goes to `errors`.
fn environment_views(
    settings: &Settings,
    rt: &Runtime,
    stores: &Stores,
    config: &Config,
    (project, environment): (&str, &str),
    only: Option<&[String]>,
    errors: &mut Vec<String>,
) -> Vec<FlagView> {
    let started = Instant::now();
    let mut listings = Vec::new();
    for (target, result) in rt.block_on(stores.list(project, environment, only)) {
        match result {
            Ok(listing) => listings.push((target, listing)),
            Err(e) => errors.push(format!(
                "cannot read {project}/{environment} from {target}: {e:#}"
            )),
        }
    }
    if listings.is_empty() {
        return Vec::new();
    }
    let mut views = show::build(project, environment, &listings, only, &config.overrides);
    errors.extend(unknown(
        project,
        environment,
        only.is_some(),
        &listings,
        &mut views,
    ));
    if settings.verbose > 0 {
        settings.status(format!(
            "Read {} flag(s) of {project}/{environment} from {} target(s) in {} ms.",
            views.len(),
            listings.len(),
            started.elapsed().as_millis()
        ));
    }
    views
}

/// Success, or the error(s) met after what could be shown was shown.
fn conclude(errors: &[String]) -> Result<Exit> {
    match errors.len() {
        0 => Ok(Exit::Success),
        1 => Err(anyhow!("{}", errors[0])),
        n => {
            for e in errors {
                ui::out::eprintln(&format!("{} {e}", ui::paint(ui::ERROR, "error:")));
            }
            Err(anyhow!(
                "{n} parts of what was asked could not be shown (listed above); what is shown comes from the targets that answered"
            ))
        }
    }
}

/// The errors for an environment no target holds (every flag listing empty) and for named flags
/// no target holds; those are dropped from `views`.
fn unknown(
    project: &str,
    environment: &str,
    named: bool,
    listings: &[(crate::kind::StoreTarget, Listing)],
    views: &mut Vec<FlagView>,
) -> Vec<String> {
    if !named {
        if listings.iter().all(|(_, l)| l.flags.is_empty()) {
            views.clear();
            let places: Vec<String> = listings
                .iter()
                .map(|(t, l)| format!("{t} holds no flag in {}", l.place))
                .collect();
            return vec![format!(
                "{project}/{environment}: no store target holds any flag there: {}. Check the project and \
                 environment keys and the store's prefix (or path); `relayctl show` with no argument shows the \
                 environments the overrides file names",
                places.join(", ")
            )];
        }
        return Vec::new();
    }
    let mut errors = Vec::new();
    views.retain(|v| {
        let nowhere = v.targets.iter().all(|t| matches!(t.state, State::Missing { .. }));
        if nowhere {
            let places: Vec<String> = v
                .targets
                .iter()
                .filter_map(|t| match &t.state {
                    State::Missing { place } => Some(format!("{} ({place})", t.target)),
                    _ => None,
                })
                .collect();
            errors.push(format!(
                "{}: no store target holds this flag: {}. Check the flag key (`relayctl show {project}/{environment}` \
                 lists every flag there)",
                v.id,
                places.join(", ")
            ));
        }
        !nowhere
    });
    errors
}

/// Show's output on stdout ([`ui::out`]): human lines, or one JSON document.
struct Out {
    json: bool,
}

impl Out {
    fn new(json: bool) -> Out {
        Out { json }
    }

    fn write(&mut self, text: &str) -> Result<()> {
        match self.json {
            true => ui::out::print_json(text)?,
            false => ui::out::print(text)?,
        }
        Ok(())
    }

    /// Streams `views`: a line per item and target, or (`json`) a JSON line per item, separated
    /// from the one before unless `first`.
    fn items<K: Showable>(&mut self, views: &[View<K>], json: bool, first: &mut bool) -> Result<()> {
        if json {
            for v in views {
                self.write(if *first { "" } else { show::JSON_SEPARATOR })?;
                self.write(&show::to_json(v))?;
                *first = false;
            }
        } else {
            let widths = show::widths(views);
            for v in views {
                self.write(&show::render(v, &widths))?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        Ok(ui::out::flush()?)
    }
}
