//! The kinds of thing relayctl manages, a LaunchDarkly flag ([`crate::flag::Flag`]) and a plain
//! Redis key ([`crate::key::Key`]), and what the one engine needs to know about each.
//!
//! Plan, apply (intents, compare-and-set writes, read-back, recovery, one commit per item) and
//! the journal's writer are written once, generic over [`Kind`], the way kube-rs's `Controller`
//! is generic over `K: Resource` and cargo's sources implement one trait. This trait is the
//! vocabulary every layer shares (an item's identity, a planned change, what a commit records,
//! the version a compare-and-set expects); each layer adds what it alone needs in a trait of its
//! own, implemented for both kinds beside the code that knows the format: the planner's
//! `Plannable` (how an item is declared and compared), the stores' `Storable` (how a store holds
//! it), the journal's `Journaled` (how its commit reads). One trait per layer keeps the module
//! graph acyclic, and an associated type per role keeps a flag from ever reaching a `redis-keys`
//! store or a key a flag store: each kind's changes only fit its own endpoints.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One place a store keeps items, as plans, the journal and messages name it: the store's name
/// and its redacted URL, table or path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoreTarget {
    pub store: String,
    pub target: String,
}

impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.store, self.target)
    }
}

/// A kind of thing relayctl manages: its types, and the pure rules every layer agrees on.
pub trait Kind: Sized + Copy + fmt::Debug + PartialEq + 'static {
    /// How messages name one: `flag`, `key` (counted as `3 flag(s)`).
    const NOUN: &'static str;
    /// Names one item: a flag in an environment, a key of a store. Its `Display` is how every
    /// message names it.
    type Id: Clone + Ord + fmt::Debug + fmt::Display;
    /// One item's change on one store target, as a plan holds it (and `plan --json` shows it).
    type Change: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// What a journal commit records about an item's change: the state after (and before), and
    /// the reason.
    type Record: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// What a compare-and-set expects a target to hold, and what it holds after: a flag's version;
    /// nothing for a key, whose compare-and-set is on its bytes, carried by its change.
    type Version: Copy + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// What one store target holds for one item.
    type Held: fmt::Debug;

    fn id(change: &Self::Change) -> Self::Id;
    fn target(change: &Self::Change) -> &StoreTarget;
    fn reason(change: &Self::Change) -> Option<&str>;
    /// The version the write of `change` expects to replace.
    fn expected(change: &Self::Change) -> Self::Version;
    /// The version a target holds once it took a write over `expected`.
    fn next(expected: Self::Version) -> Self::Version;
    /// What one commit records of an item changed by `changes` (one per target), before any write.
    fn record(changes: &[&Self::Change]) -> Self::Record;
    fn record_id(record: &Self::Record) -> Self::Id;
    /// Whether a target that holds `held` took the write of `record` over `expected`.
    fn landed(record: &Self::Record, expected: Self::Version, held: &Self::Held) -> bool;
    /// What a target holds, in words, when a write over `expected` did not land there.
    fn holds(expected: Self::Version, held: &Self::Held) -> String;
    /// A version as it follows its target in output and trailers (`v42`), if the kind has one.
    fn show_version(version: Self::Version) -> Option<String>;

    /// The writes of `ids` that a target did not answer, in words (`the writes of 3 key(s)`), and
    /// whether that names a single write.
    fn writes_of(ids: &[&Self::Id]) -> (String, bool) {
        (format!("the writes of {} {}(s)", ids.len(), Self::NOUN), false)
    }
}

/// What every store target holds for each item read: its id to the readings of its targets.
pub type Observed<K> = BTreeMap<<K as Kind>::Id, Vec<(StoreTarget, <K as Kind>::Held)>>;

/// `target`, followed by its `version` where the kind has one (`relay-redis redis://... v42`).
pub fn with_version<K: Kind>(target: &StoreTarget, version: K::Version) -> String {
    match K::show_version(version) {
        Some(v) => format!("{target} {v}"),
        None => target.to_string(),
    }
}
