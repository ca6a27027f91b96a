//! sync's decisions, pure functions of the journal's commits and of what LaunchDarkly holds: the
//! unsynced commits of each flag as one group and its final state, what LaunchDarkly lacks of it,
//! and whether LaunchDarkly was changed by anyone but relayctl since the journal's changes began
//! (then a conflict: nothing is sent unless `--force`).
//!
//! "Not changed since" is read from LaunchDarkly's environment version, which moves with every
//! change there. It may be the version the journal's earliest unsynced commit was based on (the
//! store held LaunchDarkly's data, at that version, when the outage began), or a version relayctl
//! itself left LaunchDarkly at: the one its last `synced` note of the flag records, or the one its
//! own PATCH made when a sync was killed after LaunchDarkly took it and before the note was
//! written. That PATCH is known from the sent log (journal/sending.rs), and recognised as
//! relayctl's only when LaunchDarkly holds exactly the state of the commits it covered at exactly
//! the version after the one it tested: a PATCH changes an environment's version by one (what the
//! fake does; UNCONFIRMED for LaunchDarkly itself, where a larger step would only make such a flag
//! a conflict, as before). Any other version means someone else changed the flag.

use crate::flag::{FlagId, Serve, Targeting, Variation};
use crate::journal::{Recorded, Sent};
use crate::launchdarkly::{FlagPatch, LdFlag};
use serde_json::Value;
use std::collections::BTreeMap;

/// The unsynced commits of one flag, oldest first: they become one request.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: FlagId,
    pub commits: Vec<Recorded>,
    /// What relayctl itself recorded about the flag's versions in LaunchDarkly.
    pub known: Known,
}

/// The LaunchDarkly versions relayctl itself left a flag at, besides the commits' `Base-Version`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    /// The version the newest `synced` note of the flag before the group's first commit records.
    pub recorded: Option<u64>,
    /// PATCHes a killed sync sent whose outcome no note records: how many of the group's first
    /// commits each covered, and the version it tested.
    pub sent: Vec<(usize, u64)>,
}

impl Group {
    /// The final state: `on` of the newest commit; each variation slot from the newest commit
    /// that set it.
    pub fn target(&self) -> Targeting {
        self.target_of(self.commits.len())
    }

    /// The state after the group's first `n` commits (at least one).
    fn target_of(&self, n: usize) -> Targeting {
        let (first, rest) = self.commits[..n].split_first().expect("a group has commits");
        rest.iter().fold(first.to.clone(), |state, c| state.then(&c.to))
    }

    /// The abbreviated ids covered, oldest first: `abc1234, def5678`.
    pub fn shorts(&self) -> String {
        self.commits
            .iter()
            .map(|c| c.short.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The LD comment: `relayctl <short-sha>[, ...]: <reason> (<author>)`.
    pub fn comment(&self) -> String {
        let mut reasons: Vec<&str> = Vec::new();
        let mut authors: Vec<&str> = Vec::new();
        for c in &self.commits {
            if let Some(r) = c.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
            if !authors.contains(&c.author.as_str()) {
                authors.push(&c.author);
            }
        }
        let reason = if reasons.is_empty() {
            let subject = &self.commits.last().expect("a group has commits").subject;
            subject
                .split_once(": ")
                .map_or(subject.as_str(), |(_, s)| s)
                .to_owned()
        } else {
            reasons.join("; ")
        };
        let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("relayctl {}: {reason} ({})", self.shorts(), authors.join(", "))
    }
}

/// Groups `entries` (newest first, as `Journal::entries` returns them) per flag, keeping the
/// commits `keep` accepts; groups are ordered by their oldest commit. Within a flag, commits are
/// ordered by the store version each recorded (`Base-Version`), not by the walk's order or the
/// clock: with two machines' histories combined, commits interleave by time, while the stores'
/// compare-and-set ordered the writes themselves (ties, such as a flag written to stores of
/// different versions, keep the history's order). Each group knows the version the flag's newest
/// `synced` note before its first commit records.
pub fn group(entries: &[Recorded], keep: impl Fn(&Recorded) -> bool) -> Vec<Group> {
    let mut by_flag: BTreeMap<&FlagId, Vec<(usize, &Recorded)>> = BTreeMap::new();
    for (at, r) in entries.iter().rev().enumerate() {
        by_flag.entry(&r.id).or_default().push((at, r));
    }
    let mut groups: Vec<(usize, Group)> = Vec::new();
    for (id, mut commits) in by_flag {
        commits.sort_by_key(|(at, r)| (r.base_version, *at));
        // Pending commits older (by version) than a synced one are superseded, not replayed.
        let synced = commits.iter().rposition(|(_, r)| r.is_synced());
        let commits = commits.split_off(synced.unwrap_or(0));
        let mut recorded = None;
        let mut group: Option<(usize, Group)> = None;
        for (at, r) in commits {
            if keep(r) {
                let (first, g) = group.get_or_insert_with(|| {
                    let known = Known {
                        recorded,
                        sent: Vec::new(),
                    };
                    let g = Group {
                        id: id.clone(),
                        commits: Vec::new(),
                        known,
                    };
                    (at, g)
                });
                g.commits.push(r.clone());
                *first = (*first).min(at);
            } else if let Some(v) = r.note.as_ref().and_then(|n| n.ld_version()) {
                if group.is_none() {
                    recorded = Some(v);
                }
            }
        }
        groups.extend(group);
    }
    groups.sort_by_key(|(at, _)| *at);
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Pending commits that a later write of the same flag (by store version) superseded, and that
/// is synced already: another machine's older change, combined into this history after that
/// machine's newer one was synced. Replaying it would put LaunchDarkly back to an older state,
/// so it is noted synced at the version the newer one's note records, never sent.
pub fn superseded(entries: &[Recorded]) -> Vec<(git2::Oid, u64)> {
    let mut by_flag: BTreeMap<&FlagId, Vec<(usize, &Recorded)>> = BTreeMap::new();
    for (at, r) in entries.iter().rev().enumerate() {
        by_flag.entry(&r.id).or_default().push((at, r));
    }
    let mut out = Vec::new();
    for (_, mut commits) in by_flag {
        commits.sort_by_key(|(at, r)| (r.base_version, *at));
        let Some(last) = commits.iter().rposition(|(_, r)| r.is_synced()) else {
            continue;
        };
        let version = commits[last]
            .1
            .note
            .as_ref()
            .and_then(|n| n.ld_version())
            .unwrap_or(0);
        for (_, r) in &commits[..last] {
            if r.note.as_ref().is_none_or(|n| !n.is_synced()) {
                out.push((r.oid, version));
            }
        }
    }
    out
}

/// Tells each group about the PATCHes in `sent` that covered its first commits.
pub fn attach_sent(groups: &mut [Group], sent: &[Sent]) {
    for s in sent {
        let covers = |g: &&mut Group| {
            g.commits.len() >= s.commits.len()
                && g.commits.iter().zip(&s.commits).all(|(c, oid)| c.oid == *oid)
        };
        if let Some(g) = groups.iter_mut().find(covers) {
            g.known.sent.push((s.commits.len(), s.from));
        }
    }
}

/// What LaunchDarkly must change to serve a target state: the managed properties that differ,
/// each variation located among LaunchDarkly's current variations.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Gap {
    on: Option<bool>,
    off_variation: Option<Variation>,
    fallthrough: Option<Variation>,
}

impl Gap {
    pub(super) fn is_empty(&self) -> bool {
        *self == Gap::default()
    }
}

/// The slot `want` sets, located in `ld`'s variations; `None` when LaunchDarkly already serves it.
fn slot_gap(what: &str, want: &Option<Serve>, has: &Serve, ld: &LdFlag) -> Result<Option<Variation>, String> {
    let Some(v) = want.as_ref().and_then(Serve::variation) else {
        return Ok(None);
    };
    let located = v.locate(&ld.variations).map_err(|_| {
        format!(
            "{what} variation {} was {} when applied, but LD's variations are now {}",
            v.index,
            v.value,
            Value::from(ld.variations.clone())
        )
    })?;
    Ok((has.variation().map(|h| h.index) != Some(located.index)).then_some(located))
}

/// How `ld` differs from `target`, or why the journal's variations cannot be found in it.
pub(super) fn gap(target: &Targeting, ld: &LdFlag) -> Result<Gap, String> {
    Ok(Gap {
        on: (ld.on != target.on).then_some(target.on),
        off_variation: slot_gap("off", &target.off_variation, &ld.off_variation, ld)?,
        fallthrough: slot_gap("fallthrough", &target.fallthrough, &ld.fallthrough, ld)?,
    })
}

/// What to do with one flag, given what LaunchDarkly has.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// LaunchDarkly already serves the target state.
    InState,
    /// Send `patch`; `forced` says which conflict `--force` overrode.
    Patch {
        patch: FlagPatch,
        forced: Option<String>,
    },
    /// Leave the flag alone: LaunchDarkly changed it during the outage (or no longer has it).
    Conflict(String),
}

/// Decides what to do for `group` given LaunchDarkly's state `ld` (a pure function).
pub fn decide(group: &Group, ld: &LdFlag, force: bool) -> Decision {
    let gap = match gap(&group.target(), ld) {
        Ok(gap) if gap.is_empty() => return Decision::InState,
        Ok(gap) => gap,
        Err(why) => return Decision::Conflict(why),
    };
    let changed = (!unchanged_since(group, ld)).then(|| changed(group, ld));
    if changed.is_some() && !force {
        return Decision::Conflict(changed.unwrap_or_default());
    }
    Decision::Patch {
        patch: FlagPatch {
            comment: group.comment(),
            expect_version: ld.version,
            on: gap.on,
            off_variation: gap.off_variation.map(|v| v.index),
            fallthrough: gap.fallthrough.map(|v| v.index),
            replace_fallthrough_rule: !matches!(ld.fallthrough, Serve::Variation(_)),
        },
        forced: changed,
    }
}

/// Whether LaunchDarkly's version shows that no one but relayctl changed the flag since the
/// journal's changes began (see the module's doc).
fn unchanged_since(group: &Group, ld: &LdFlag) -> bool {
    let own_patch = |&(covers, from): &(usize, u64)| {
        from.checked_add(1) == Some(ld.version)
            && covers <= group.commits.len()
            && gap(&group.target_of(covers), ld).is_ok_and(|g| g.is_empty())
    };
    ld.version == group.commits[0].base_version
        || group.known.recorded == Some(ld.version)
        || group.known.sent.iter().any(own_patch)
}

/// Why `ld` counts as changed in LaunchDarkly: `LD version X, base Y`, and the version relayctl
/// last left it at, when it did.
fn changed(group: &Group, ld: &LdFlag) -> String {
    let base = group.commits[0].base_version;
    match group.known.recorded {
        Some(v) => format!(
            "LD version {}, base {base} (relayctl's last sync of this flag left LD at version {v})",
            ld.version
        ),
        None => format!("LD version {}, base {base}", ld.version),
    }
}

/// What differs between the journal's `target` and LaunchDarkly, in words.
pub(super) fn differences(target: &Targeting, ld: &LdFlag) -> Vec<String> {
    let mut out = Vec::new();
    if ld.on != target.on {
        out.push(format!("on: LD {}, journal {}", ld.on, target.on));
    }
    let show = |s: &Serve| match s {
        Serve::Variation(v) => format!("{} ({})", v.index, v.value),
        other => other.to_string(),
    };
    for (name, want, has) in [
        ("off_variation", &target.off_variation, &ld.off_variation),
        ("fallthrough", &target.fallthrough, &ld.fallthrough),
    ] {
        let Some(want) = want.as_ref().and_then(Serve::variation) else {
            continue;
        };
        let located = want.locate(&ld.variations).ok();
        let serves = |v: &Variation| has.variation().is_some_and(|h| h.index == v.index);
        if !located.as_ref().is_some_and(serves) {
            let index = located.map_or(want.index, |v| v.index);
            out.push(format!(
                "{name}: LD {}, journal {index} ({})",
                show(has),
                want.value
            ));
        }
    }
    out
}
