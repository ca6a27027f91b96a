//! `relayctl status`'s model and rendering: for each declared flag and environment, whether each
//! store target holds the declared state, whether each listed Relay serves it, and where
//! LaunchDarkly stands; each "not yet" with why and what to do next.
//!
//! Pure, like `show`: no I/O; the command reads the stores, the Relays (relay.rs), LaunchDarkly
//! (launchdarkly/) and the journal, and hands what it found here, with the clock. Whether a store
//! target, a Relay or LaunchDarkly holds the declared state is decided by the planner itself
//! (`plan::plan` on that one flag, as `show` does), so status, show and plan never disagree; where
//! LaunchDarkly stands against the journal is decided by sync's own [`crate::sync::decide`].

use crate::desired::Override;
use crate::flag::{Flag, FlagId, Lookup, StoredFlag};
use crate::journal::Recorded;
use crate::kind::{Observed, StoreTarget};
use crate::launchdarkly::{ApiError, LdFlag};
use crate::relay::{RelayConfig, RelayError};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The version of the `status --json` document.
pub const FORMAT_VERSION: u32 = 1;

/// A store target's state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreState {
    Declared,
    Differs,
    Missing,
    Unreachable,
}

/// A Relay's state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayState {
    Serving,
    Stale,
    Unreachable,
    NoKey,
}

/// LaunchDarkly's state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LdState {
    Synced,
    Pending,
    Conflict,
    Unreachable,
    NoToken,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreRow {
    pub store: String,
    pub target: String,
    pub state: StoreState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayRow {
    pub relay: String,
    pub state: RelayState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LdRow {
    pub state: LdState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The flag's latest journal commit: by whom, and whether the team's remote has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalRow {
    pub commit: String,
    pub author: String,
    /// `None` without a `[journal] remote`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<bool>,
}

/// The whole chain for one declared flag in one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagStatus {
    #[serde(flatten)]
    pub id: FlagId,
    pub stores: Vec<StoreRow>,
    pub relays: Vec<RelayRow>,
    pub launchdarkly: LdRow,
    /// `None` when the journal has no commit of the flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalRow>,
}

impl FlagStatus {
    /// Whether every store target and every Relay serves the declared state.
    pub fn in_place(&self) -> bool {
        self.stores.iter().all(|s| s.state == StoreState::Declared)
            && self.relays.iter().all(|r| r.state == RelayState::Serving)
    }
}

/// What a Relay gave for a flag's environment.
#[derive(Debug, Clone)]
pub enum RelayRead {
    /// The environment variable the `[[relay]]` names for this environment is unset or empty.
    NoKey { variable: String },
    /// The environment's flags, or why Relay did not give them.
    Read(Result<std::collections::BTreeMap<String, Lookup>, RelayError>),
}

/// What LaunchDarkly gave for a flag.
#[derive(Debug, Clone)]
pub enum LdRead {
    NoToken,
    Read(Result<LdFlag, ApiError>),
}

/// Everything known about one declared flag, for [`build`].
pub struct Facts<'a> {
    pub declared: &'a Override,
    /// Each store target and what it holds (or why it could not be read).
    pub stores: Vec<(StoreTarget, Result<Lookup, String>)>,
    /// Each Relay listed for the flag's environment, and what it gave.
    pub relays: Vec<(&'a RelayConfig, &'a RelayRead)>,
    pub launchdarkly: &'a LdRead,
    /// The journal's commits of this flag, oldest first.
    pub commits: Vec<&'a Recorded>,
    /// With a `[journal] remote`: the commits (abbreviated) it does not have yet.
    pub unpushed: Option<&'a std::collections::HashSet<String>>,
    pub now: SystemTime,
}

/// How a lookup compares with a declaration, judged by the planner.
#[derive(Debug, Clone, PartialEq)]
enum Judged {
    Matches,
    Differs(Vec<String>),
    Problem(String),
}

fn judge(o: &Override, lookup: Lookup) -> Judged {
    let target = StoreTarget {
        store: String::new(),
        target: String::new(),
    };
    let observed: Observed<Flag> = Observed::<Flag>::from([(o.id.clone(), vec![(target, lookup)])]);
    let plan = crate::plan::plan::<Flag>(std::slice::from_ref(o), &observed);
    if let Some(p) = plan.flags.problems.first() {
        return Judged::Problem(p.message.clone());
    }
    match plan.flags.changes.first() {
        Some(c) => Judged::Differs(c.from.differences(&c.to)),
        None => Judged::Matches,
    }
}

/// The whole chain of one declared flag.
pub fn build(facts: &Facts) -> FlagStatus {
    let stores: Vec<StoreRow> = facts
        .stores
        .iter()
        .map(|(t, r)| store_row(facts.declared, t, r))
        .collect();
    let stores_hold = stores.iter().all(|s| s.state == StoreState::Declared);
    let launchdarkly = ld_row(facts);
    let relays = facts
        .relays
        .iter()
        .map(|(relay, read)| relay_row(facts, relay, read, stores_hold, launchdarkly.state))
        .collect();
    let journal = facts.commits.last().map(|c| JournalRow {
        commit: c.short.clone(),
        author: c.author.clone(),
        pushed: facts.unpushed.map(|u| !u.contains(&c.short)),
    });
    FlagStatus {
        id: facts.declared.id.clone(),
        stores,
        relays,
        launchdarkly,
        journal,
    }
}

fn store_row(o: &Override, target: &StoreTarget, read: &Result<Lookup, String>) -> StoreRow {
    let (state, why) = match read {
        Err(e) => (
            StoreState::Unreachable,
            Some(format!("{e}: check the store, then run status again")),
        ),
        Ok(lookup) => match (judge(o, lookup.clone()), lookup) {
            (Judged::Matches, _) => (StoreState::Declared, None),
            (Judged::Differs(changes), _) => (
                StoreState::Differs,
                Some(format!("{}: run `relayctl plan`, then apply", changes.join(", "))),
            ),
            (Judged::Problem(p), Lookup::Missing { .. }) => (StoreState::Missing, Some(p)),
            (Judged::Problem(p), Lookup::Found(f)) if f.deleted => (StoreState::Missing, Some(p)),
            (Judged::Problem(p), _) => (StoreState::Differs, Some(p)),
        },
    };
    StoreRow {
        store: target.store.clone(),
        target: target.target.clone(),
        state,
        why,
    }
}

/// `HH:MM:SS UTC` of `t`.
fn clock(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", text.get(11..19).unwrap_or(&text))
}

fn relay_row(
    facts: &Facts,
    relay: &RelayConfig,
    read: &RelayRead,
    stores_hold: bool,
    ld: LdState,
) -> RelayRow {
    let row = |state, why: String| RelayRow {
        relay: relay.name.clone(),
        state,
        why: Some(why),
    };
    let flags = match read {
        RelayRead::NoKey { variable } => {
            return row(
                RelayState::NoKey,
                format!("{variable} is not set: set it to this environment's SDK key to ask Relay"),
            )
        }
        RelayRead::Read(Err(e @ RelayError::KeyRefused(_))) => {
            return row(
                RelayState::NoKey,
                format!("{e}: check that the variable holds this environment's SDK key"),
            )
        }
        RelayRead::Read(Err(e)) => {
            return row(
                RelayState::Unreachable,
                format!("{e}: check Relay at {}", relay.shown_url()),
            )
        }
        RelayRead::Read(Ok(flags)) => flags,
    };
    let id = &facts.declared.id;
    let lookup = flags.get(&id.flag).cloned().unwrap_or_else(|| Lookup::Missing {
        place: format!("Relay {} serves no flag {:?} there", relay.name, id.flag),
    });
    if judge(facts.declared, lookup) == Judged::Matches {
        // Written to the store only: Relay tells connected SDKs nothing of it.
        let why = (ld != LdState::Synced && !facts.commits.is_empty()).then(|| {
            "new connections get it; SDKs connected before the change keep the old state until they reconnect: \
             restart Relay"
                .to_owned()
        });
        return RelayRow {
            relay: relay.name.clone(),
            state: RelayState::Serving,
            why,
        };
    }
    row(RelayState::Stale, stale_why(facts, relay, stores_hold))
}

/// Why a Relay does not serve the declared state yet, and when it will or what to do.
fn stale_why(facts: &Facts, relay: &RelayConfig, stores_hold: bool) -> String {
    if !stores_hold {
        return "the stores do not all hold the declared state yet, and Relay serves what they hold: see the store \
                states"
            .into();
    }
    let ttl = humantime::format_duration(relay.cache_ttl);
    let written = facts
        .commits
        .last()
        .map(|c| UNIX_EPOCH + Duration::from_secs(c.time.max(0) as u64));
    match written.map(|w| w + relay.cache_ttl) {
        Some(by) if by > facts.now => format!("Relay caches the store for {ttl}: served by {}", clock(by)),
        Some(_) => format!(
            "still the old state more than {ttl} (its cache_ttl) after relayctl wrote the store: check Relay's \
             CACHE_TTL and that it reads these stores, or restart Relay"
        ),
        None => format!("Relay caches the store for up to {ttl}: check again then, or restart Relay"),
    }
}

/// Where LaunchDarkly stands for the flag.
fn ld_row(facts: &Facts) -> LdRow {
    let pending: Vec<&Recorded> = facts.commits.iter().copied().filter(|c| !c.is_synced()).collect();
    let row = |state, why: String| LdRow {
        state,
        why: Some(why),
    };
    let replay = match pending.len() {
        0 => "nothing to replay".to_owned(),
        n => format!("`relayctl sync --wait` will replay {n} journal commit(s) once it answers"),
    };
    let ld = match facts.launchdarkly {
        LdRead::NoToken => {
            let said = match pending.len() {
                0 if facts.commits.is_empty() => "the journal has no change of it".to_owned(),
                0 => "the journal says synced".to_owned(),
                n => format!("{n} journal commit(s) not synced yet"),
            };
            return row(
                LdState::NoToken,
                format!("{said}; set LD_API_KEY to ask LaunchDarkly"),
            );
        }
        LdRead::Read(Err(ApiError::NotFound)) => {
            return row(
                LdState::Conflict,
                "not found in LaunchDarkly: check the project, environment and flag keys".into(),
            )
        }
        LdRead::Read(Err(e @ ApiError::Auth { .. })) => return row(LdState::Unreachable, e.to_string()),
        LdRead::Read(Err(ApiError::Unavailable(why))) => {
            return row(
                LdState::Unreachable,
                format!("LaunchDarkly unreachable ({why}): {replay}"),
            )
        }
        LdRead::Read(Err(e)) => return row(LdState::Unreachable, format!("{e}: {replay}")),
        LdRead::Read(Ok(ld)) => ld,
    };
    if judge(facts.declared, ld_lookup(ld)) == Judged::Matches {
        return LdRow {
            state: LdState::Synced,
            why: None,
        };
    }
    // sync's own grouping (newest first in, the unsynced commits out) and decision.
    let newest_first: Vec<Recorded> = facts.commits.iter().rev().map(|c| (*c).clone()).collect();
    if let Some(group) = crate::sync::group(&newest_first, |c| !c.is_synced()).first() {
        return match crate::sync::decide(group, ld, false) {
            crate::sync::Decision::Conflict(why) => row(
                LdState::Conflict,
                format!("{why}: decide in LaunchDarkly, or replay over it with `relayctl sync --force`"),
            ),
            _ => row(
                LdState::Pending,
                format!(
                    "{} journal commit(s) not synced: run `relayctl sync` (or leave `sync --wait` running)",
                    pending.len()
                ),
            ),
        };
    }
    match facts.commits.is_empty() {
        true => row(
            LdState::Pending,
            "LaunchDarkly does not hold the declared state and the journal has no change to replay: apply it first".into(),
        ),
        false => row(
            LdState::Conflict,
            format!("LaunchDarkly changed after the last sync (now version {}): run `relayctl verify`", ld.version),
        ),
    }
}

/// LaunchDarkly's state of a flag as a stored flag, for the planner to judge.
fn ld_lookup(ld: &LdFlag) -> Lookup {
    let index = |s: &crate::flag::Serve| s.variation().map_or(Value::Null, |v| json!(v.index));
    let fallthrough = match &ld.fallthrough {
        crate::flag::Serve::Variation(v) => json!({"variation": v.index}),
        crate::flag::Serve::Rollout => json!({"rollout": {"variations": []}}),
        crate::flag::Serve::Unset => json!({}),
    };
    let flag = json!({
        "key": "launchdarkly", "version": ld.version, "on": ld.on, "offVariation": index(&ld.off_variation),
        "fallthrough": fallthrough, "variations": ld.variations,
    });
    StoredFlag::parse(&flag.to_string()).map_or_else(Lookup::Invalid, Lookup::Found)
}

/// One line: a `!` mark unless in place, the flag, each store target, each Relay, LaunchDarkly.
pub fn render_line(s: &FlagStatus) -> String {
    let mut out = format!("{} {}", if s.in_place() { " " } else { "!" }, s.id);
    let why = |w: &Option<String>| w.as_ref().map_or(String::new(), |w| format!(" ({w})"));
    for st in &s.stores {
        let _ = write!(
            out,
            "  store {} {}: {}{}",
            st.store,
            st.target,
            name(&st.state),
            why(&st.why)
        );
    }
    for r in &s.relays {
        let _ = write!(out, "  relay {}: {}{}", r.relay, name(&r.state), why(&r.why));
    }
    let _ = write!(
        out,
        "  LaunchDarkly: {}{}",
        name(&s.launchdarkly.state),
        why(&s.launchdarkly.why)
    );
    if let Some(j) = &s.journal {
        let pushed = match j.pushed {
            Some(true) => ", pushed",
            Some(false) => ", not pushed",
            None => "",
        };
        let _ = write!(out, "  journal {} by {}{pushed}", j.commit, j.author);
    }
    out.push('\n');
    out
}

/// A state's name as JSON has it.
fn name(state: &impl Serialize) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The closing line.
pub fn render_summary(all: &[FlagStatus]) -> String {
    let in_place = all.iter().filter(|s| s.in_place()).count();
    let count = |st: LdState| all.iter().filter(|s| s.launchdarkly.state == st).count();
    let mut ld = Vec::new();
    for st in [
        LdState::Synced,
        LdState::Pending,
        LdState::Conflict,
        LdState::Unreachable,
        LdState::NoToken,
    ] {
        let n = count(st);
        if n > 0 {
            ld.push(format!("{n} {}", name(&st)));
        }
    }
    let rest = all.len() - in_place;
    let next = if rest > 0 { " (marked !)" } else { "" };
    format!(
        "Status: {} flag(s): {in_place} served as declared by every store and Relay, {rest} not yet{next}; \
         LaunchDarkly: {}.",
        all.len(),
        if ld.is_empty() {
            "nothing".to_owned()
        } else {
            ld.join(", ")
        }
    )
}

/// The `--json` document.
pub fn to_json(all: &[FlagStatus]) -> String {
    let flags: Vec<String> = all
        .iter()
        .map(|s| serde_json::to_string(s).expect("a status serializes"))
        .collect();
    format!(
        "{{\"format_version\": {FORMAT_VERSION}, \"flags\": [\n{}\n]}}\n",
        flags.join(",\n")
    )
}

#[cfg(test)]
mod tests;
