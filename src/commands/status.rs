//! `relayctl status [PROJECT/ENV[/FLAG]]... [--json] [--watch [--interval D]]`: for each
//! declared flag and environment, every store target, every `[[relay]]` listed for that
//! environment, and LaunchDarkly; exit 0 when every store and Relay serves the declared state,
//! 2 otherwise. Reads only (no lock, no note); safe at any time and from several terminals.
//!
//! Every wait is bounded and said on stderr first: store reads by the stores' own timeouts, each
//! Relay by relay.rs's, LaunchDarkly by [`LD_LIMIT`] per round. `--watch` refreshes every
//! interval until every store and Relay serves the declared state and LaunchDarkly has it (when
//! there is a token to ask it), or until Ctrl-C (then the exit code says where the last refresh
//! stood).

use super::{ld_client, load};
use crate::desired::{Config, Override};
use crate::exit::Exit;
use crate::flag::{is_key, FlagId};
use crate::journal::{Journal, Recorded};
use crate::launchdarkly::ApiError;
use crate::relay::{self, RelayConfig};
use crate::settings::Settings;
use crate::status::{self, Facts, FlagStatus, LdRead, LdState, RelayRead};
use crate::store::Stores;
use crate::ui;
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Runtime;

/// How long one round may wait for LaunchDarkly (all its flags together).
const LD_LIMIT: Duration = Duration::from_secs(10);
/// How many LaunchDarkly GETs are in flight at once.
const LD_CONCURRENCY: usize = 8;

/// What status reads, opened once.
struct Sources {
    config: Config,
    stores: Stores,
    declared: Vec<Override>,
    ld: Option<crate::launchdarkly::Client>,
    relays: relay::Client,
}

/// Shows the chain once, or refreshes it (`watch`).
pub fn run(
    settings: &Settings,
    rt: &Runtime,
    selectors: &[String],
    json: bool,
    watch: Option<Duration>,
) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    let declared = select(&config, selectors, settings)?;
    super::look(settings, &config);
    let ld = match settings.launchdarkly.token {
        Some(_) => Some(ld_client(settings, &config)?),
        None => None,
    };
    let sources = Sources {
        config,
        stores,
        declared,
        ld,
        relays: relay::Client::new().context("building the HTTP client for Relay")?,
    };
    announce(settings, &sources);
    let Some(interval) = watch else {
        let all = round(settings, rt, &sources)?;
        return show(settings, &all, json, false);
    };
    crate::interrupt::install().context("installing the Ctrl-C handler")?;
    let terminal = std::io::stdout().is_terminal();
    loop {
        let all = round(settings, rt, &sources)?;
        let exit = show(settings, &all, json, terminal)?;
        // Without a token LaunchDarkly cannot be asked: the stores and Relays are all there is.
        let ld_done = |s: &FlagStatus| matches!(s.launchdarkly.state, LdState::Synced | LdState::NoToken);
        if exit == Exit::Success && all.iter().all(ld_done) {
            settings.status("Every store and Relay serves the declared state (and LaunchDarkly has it, where asked): done watching.");
            return Ok(exit);
        }
        if crate::interrupt::requested() || !rt.block_on(crate::interrupt::sleep(interval)) {
            settings
                .status("Interrupted: stopped watching; the exit code says where the last refresh stood.");
            return Ok(exit);
        }
    }
}

/// The declared flags the selectors name (all of them without one). A selector naming no declared
/// flag is an error: status judges declared states only.
fn select(config: &Config, selectors: &[String], settings: &Settings) -> Result<Vec<Override>> {
    if config.overrides.is_empty() {
        bail!(
            "the overrides file {} declares no flag, so status has nothing to follow: declare flags under \
             [overrides.<project>.<environment>] (`relayctl show` shows what the stores hold)",
            settings.config.display()
        );
    }
    if selectors.is_empty() {
        return Ok(config.overrides.clone());
    }
    let mut chosen = BTreeSet::new();
    for raw in selectors {
        let parts: Vec<&str> = raw.split('/').collect();
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| is_key(p)) {
            bail!(
                "{raw:?} is not PROJECT/ENV or PROJECT/ENV/FLAG of LaunchDarkly keys; for example default/production \
                 or default/production/new-checkout"
            );
        }
        let matching: Vec<&FlagId> = config
            .overrides
            .iter()
            .map(|o| &o.id)
            .filter(|id| id.project == parts[0] && id.environment == parts[1])
            .filter(|id| parts.get(2).is_none_or(|f| id.flag == *f))
            .collect();
        if matching.is_empty() {
            bail!(
                "{raw} is not declared in {}: status follows declared flags only (`relayctl show {raw}` shows what \
                 the stores hold)",
                settings.config.display()
            );
        }
        chosen.extend(matching.into_iter().cloned());
    }
    Ok(config
        .overrides
        .iter()
        .filter(|o| chosen.contains(&o.id))
        .cloned()
        .collect())
}

/// Says on stderr what will be asked and how long each may take.
fn announce(settings: &Settings, s: &Sources) {
    let relays = s.config.relays.len();
    let ld = match &s.ld {
        Some(c) => format!(
            "LaunchDarkly at {} ({} s at most)",
            c.base_url(),
            LD_LIMIT.as_secs()
        ),
        None => "not LaunchDarkly (LD_API_KEY is not set)".to_owned(),
    };
    settings.status(format!(
        "Reading {} declared flag(s) from {} store target(s), asking {relays} Relay(s) ({} s at most each) and {ld}.",
        s.declared.len(),
        s.stores.len::<crate::flag::Flag>(),
        relay::REQUEST_TIMEOUT.as_secs() + relay::CONNECT_TIMEOUT.as_secs(),
    ));
}

/// Prints one refresh (clearing a terminal first when watching) and says which exit it means.
fn show(settings: &Settings, all: &[FlagStatus], json: bool, clear: bool) -> Result<Exit> {
    if clear {
        ui::out::clear_screen()?;
    }
    if json {
        ui::out::print_json(&status::to_json(all))?;
    } else {
        let out: String = all.iter().map(status::render_line).collect();
        ui::out::print(&out)?;
    }
    ui::out::flush()?;
    if !json {
        settings.status(status::render_summary(all));
    }
    Ok(match all.iter().all(FlagStatus::in_place) {
        true => Exit::Success,
        false => Exit::Pending,
    })
}

/// Reads everything once, concurrently, and builds each flag's chain.
fn round(settings: &Settings, rt: &Runtime, s: &Sources) -> Result<Vec<FlagStatus>> {
    let (commits, unpushed) = journal_commits(&s.config)?;
    let mut envs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for o in &s.declared {
        let env = (o.id.project.clone(), o.id.environment.clone());
        envs.entry(env).or_default().push(o.id.flag.clone());
    }
    let (listings, relays, ld) = rt.block_on(async {
        futures::join!(
            read_stores(&s.stores, &envs),
            read_relays(settings, &s.relays, &s.config.relays, &envs),
            read_ld(s.ld.as_ref(), &s.declared)
        )
    });
    let now = SystemTime::now();
    let no_commits = Vec::new();
    let all = s
        .declared
        .iter()
        .zip(ld)
        .map(|(o, ld)| {
            let env = (o.id.project.clone(), o.id.environment.clone());
            let stores = listings[&env]
                .iter()
                .map(|(target, listing)| {
                    let lookup = match listing {
                        Ok(l) => Ok(l.flags.get(&o.id.flag).cloned().unwrap_or_else(|| {
                            crate::flag::Lookup::Missing {
                                place: l.place.clone(),
                            }
                        })),
                        Err(e) => Err(e.clone()),
                    };
                    (target.clone(), lookup)
                })
                .collect();
            let relays = relays
                .iter()
                .filter_map(|(relay, reads)| reads.get(&env).map(|read| (*relay, read)))
                .collect();
            let facts = Facts {
                declared: o,
                stores,
                relays,
                launchdarkly: &ld,
                commits: commits.get(&o.id).unwrap_or(&no_commits).iter().collect(),
                unpushed: unpushed.as_ref(),
                now,
            };
            status::build(&facts)
        })
        .collect();
    Ok(all)
}

/// The journal's commits per flag, oldest first.
type ByFlag = BTreeMap<FlagId, Vec<Recorded>>;

/// The journal's commits per flag (none without a journal), and with a remote the commits it
/// does not have yet.
fn journal_commits(config: &Config) -> Result<(ByFlag, Option<HashSet<String>>)> {
    let mut by_flag: BTreeMap<FlagId, Vec<Recorded>> = BTreeMap::new();
    let mut unpushed = config.remote.as_ref().map(|_| HashSet::new());
    if let Some(journal) = Journal::open_existing(&config.journal)? {
        for r in journal.entries()?.into_iter().rev() {
            by_flag.entry(r.id.clone()).or_default().push(r);
        }
        if let Some(unpushed) = unpushed.as_mut() {
            unpushed.extend(journal.unpushed()?.commits);
        }
    }
    Ok((by_flag, unpushed))
}

type Listings =
    BTreeMap<(String, String), Vec<(crate::kind::StoreTarget, Result<crate::store::Listing, String>)>>;

/// Every store target's copy of each environment's declared flags.
async fn read_stores(stores: &Stores, envs: &BTreeMap<(String, String), Vec<String>>) -> Listings {
    let reads = envs.iter().map(|((p, e), flags)| async move {
        let listed = stores.list(p, e, Some(flags)).await;
        let listed = listed
            .into_iter()
            .map(|(t, r)| (t, r.map_err(|e| format!("{e:#}"))))
            .collect();
        ((p.clone(), e.clone()), listed)
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// What each Relay serves for each declared environment it lists an SDK key variable for.
async fn read_relays<'a>(
    settings: &Settings,
    client: &relay::Client,
    relays: &'a [RelayConfig],
    envs: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<(&'a RelayConfig, BTreeMap<(String, String), RelayRead>)> {
    let reads = relays.iter().map(|r| async move {
        let wanted = r.sdk_keys.iter().filter(|(env, _)| envs.contains_key(*env));
        let asks = wanted.map(|(env, variable)| async move {
            let read = match settings.var(variable) {
                None => RelayRead::NoKey {
                    variable: variable.clone(),
                },
                Some(key) => RelayRead::Read(client.flags(r, &key).await),
            };
            (env.clone(), read)
        });
        (r, futures::future::join_all(asks).await.into_iter().collect())
    });
    futures::future::join_all(reads).await
}

/// LaunchDarkly's state of each declared flag, in order; all of them within [`LD_LIMIT`].
async fn read_ld(client: Option<&crate::launchdarkly::Client>, declared: &[Override]) -> Vec<LdRead> {
    let Some(client) = client else {
        return declared.iter().map(|_| LdRead::NoToken).collect();
    };
    let deadline = Instant::now() + LD_LIMIT;
    client.begin(Some(deadline));
    // One attempt first: a LaunchDarkly that is down is said once, not retried per flag.
    if let Some(first) = declared.first() {
        let probe = tokio::time::timeout(LD_LIMIT, client.probe(Some(&first.id))).await;
        let down = match probe {
            Ok(Err(e @ (ApiError::Unavailable(_) | ApiError::Auth { .. } | ApiError::Redirect { .. }))) => {
                Some(e)
            }
            Ok(Err(ApiError::Interrupted)) => Some(ApiError::Interrupted),
            Err(_) => Some(ApiError::Unavailable(format!(
                "no answer within {} s",
                LD_LIMIT.as_secs()
            ))),
            Ok(_) => None,
        };
        if let Some(e) = down {
            return declared.iter().map(|_| LdRead::Read(Err(e.clone()))).collect();
        }
    }
    let gets = futures::stream::iter(declared.iter().enumerate().map(|(i, o)| async move {
        let limit = deadline.saturating_duration_since(Instant::now());
        let got = match tokio::time::timeout(limit, client.get_flag(&o.id)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Unavailable(format!(
                "no answer within {} s",
                LD_LIMIT.as_secs()
            ))),
        };
        (i, LdRead::Read(got))
    }))
    .buffer_unordered(LD_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    let mut gets = gets;
    gets.sort_by_key(|(i, _)| *i);
    gets.into_iter().map(|(_, r)| r).collect()
}
