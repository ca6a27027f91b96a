//! The stores relayctl reads and writes, behind one narrow interface.
//!
//! A `[[store]]` expands into one or more [`Target`]s (each Redis URL is a target; a file store
//! is one target whose path depends on the project/environment). Each backend module is the only
//! place that knows its storage layout; this module owns what they share: turning raw JSON into
//! [`Lookup`]s, and the read-modify-write rule of SPEC §2 "apply" (check the planned version,
//! rewrite via [`StoredFlag::rewrite`], write atomically against concurrent writers).

mod dynamodb;
mod file;
mod redis;

use crate::desired::{FlagId, StoreConfig, StoreKind};
use crate::flag::{StoredFlag, Targeting};
use crate::plan::{Lookup, Observed, TargetRef};
use anyhow::{anyhow, Result};
use futures::future::join_all;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long connecting to a store may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to a store may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a write to one target did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store no longer holds the version the plan observed: someone else wrote the flag.
    #[error("stale plan: the store holds {found} but the plan was made against v{expected}; run `relayctl plan` again and review the new plan")]
    Stale { expected: u64, found: String },
    /// Anything else: unreachable, timed out, refused.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The flags of one project/environment, which share a key prefix or a file.
pub(crate) type Groups<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a str>>;

/// What a backend found for each flag of each group, in the groups' order: the raw JSON, or
/// where the flag was looked for when it is absent.
pub(crate) type Found = Vec<Vec<Result<String, String>>>;

enum Backend {
    Redis(Box<redis::RedisTarget>),
    DynamoDb(Box<dynamodb::DynamoTarget>),
    File(file::FileTarget),
}

/// One place a store keeps flags: a Redis server, a DynamoDB table, a file path template.
pub struct Target {
    store: String,
    backend: Backend,
}

impl Target {
    /// The store's name.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// What this target is called in plans, the journal and messages for a project/environment:
    /// the redacted URL, the table, or the file path.
    pub fn describe(&self, project: &str, environment: &str) -> String {
        match &self.backend {
            Backend::Redis(r) => r.describe(),
            Backend::DynamoDb(d) => d.describe(),
            Backend::File(f) => f.describe(project, environment),
        }
    }

    fn target_ref(&self, id: &FlagId) -> TargetRef {
        TargetRef {
            store: self.store.clone(),
            target: self.describe(&id.project, &id.environment),
        }
    }

    /// Reads every flag of `flags` from this target, in as few round trips as the backend allows.
    async fn read(&self, flags: &[FlagId]) -> Result<Vec<Lookup>> {
        let mut groups: Groups = BTreeMap::new();
        let mut positions: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, id) in flags.iter().enumerate() {
            let group = (id.project.as_str(), id.environment.as_str());
            groups.entry(group).or_default().push(id.flag.as_str());
            positions.entry(group).or_default().push(i);
        }
        let found = match &self.backend {
            Backend::Redis(r) => r.read(&groups).await?,
            Backend::DynamoDb(d) => d.read(&groups).await?,
            Backend::File(f) => f.read(&groups).await?,
        };
        let mut out: Vec<Option<Lookup>> = vec![None; flags.len()];
        for (positions, values) in positions.values().zip(found) {
            for (&i, value) in positions.iter().zip(values) {
                out[i] = Some(match value {
                    Ok(json) => StoredFlag::parse(&json).map_or_else(Lookup::Invalid, Lookup::Found),
                    Err(place) => Lookup::Missing { place },
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|l| {
                l.unwrap_or_else(|| Lookup::Missing {
                    place: "not returned by the store".into(),
                })
            })
            .collect())
    }

    /// Writes `to` over the flag `id`, provided the store still holds version `expected`.
    /// Returns the version written (`expected + 1`).
    ///
    /// The backend performs the compare-and-swap; a re-run after a crash either finds the new
    /// version (the write happened: the next plan shows no change) or the old one (it did not).
    pub async fn write(&self, id: &FlagId, expected: u64, to: &Targeting) -> Result<u64, WriteError> {
        let rewrite = |raw: Option<&str>| -> Result<String, WriteError> {
            let found = match raw.map(StoredFlag::parse) {
                None => "no such flag".to_owned(),
                Some(Err(e)) => format!("a value that is not a flag ({e})"),
                Some(Ok(f)) if f.deleted => format!("a deleted tombstone at v{}", f.version),
                Some(Ok(f)) if f.version != expected => format!("v{}", f.version),
                Some(Ok(f)) => return Ok(f.rewrite(to)),
            };
            Err(WriteError::Stale { expected, found })
        };
        match &self.backend {
            Backend::Redis(r) => r.compare_and_swap(id, &rewrite).await?,
            Backend::DynamoDb(d) => d.compare_and_swap(id, &rewrite).await?,
            Backend::File(f) => f.compare_and_swap(id, &rewrite).await?,
        }
        Ok(expected + 1)
    }
}

/// The rewrite a backend applies inside its compare-and-swap: current raw JSON (None when
/// absent) to the new JSON, or a refusal.
pub(crate) type Rewrite<'a> = &'a (dyn Fn(Option<&str>) -> Result<String, WriteError> + Sync);

/// Every target of every configured store.
pub struct Stores {
    targets: Vec<Target>,
}

impl Stores {
    /// Prepares the targets of `stores`; connections are opened on first use, so a plan file
    /// that touches one store does not need the others to be up.
    pub fn open(stores: &[StoreConfig]) -> Result<Stores> {
        let mut targets = Vec::new();
        for s in stores {
            match &s.kind {
                StoreKind::Redis { urls } => {
                    for url in urls {
                        targets.push(Target {
                            store: s.name.clone(),
                            backend: Backend::Redis(Box::new(redis::RedisTarget::new(
                                url,
                                s.prefix.clone(),
                            )?)),
                        });
                    }
                }
                StoreKind::File { path, base_dir } => targets.push(Target {
                    store: s.name.clone(),
                    backend: Backend::File(file::FileTarget::new(path.clone(), base_dir.clone())),
                }),
                StoreKind::DynamoDb {
                    table,
                    endpoint_url,
                    region,
                } => targets.push(Target {
                    store: s.name.clone(),
                    backend: Backend::DynamoDb(Box::new(dynamodb::DynamoTarget::new(
                        table,
                        endpoint_url.as_deref(),
                        region.as_deref(),
                        s.prefix.clone(),
                    ))),
                }),
            }
        }
        Ok(Stores { targets })
    }

    /// All targets, in the order of the overrides file.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The target a plan change names, if the overrides file still declares it.
    pub fn find(&self, id: &FlagId, target: &TargetRef) -> Option<&Target> {
        self.targets
            .iter()
            .find(|t| t.store == target.store && t.describe(&id.project, &id.environment) == target.target)
    }

    /// Reads `flags` from every target concurrently. Any unreachable target is an error naming
    /// it (all of them, if several are down).
    pub async fn read(&self, flags: &[FlagId]) -> Result<Observed> {
        let results = join_all(self.targets.iter().map(|t| t.read(flags))).await;
        let mut observed: Observed = BTreeMap::new();
        let mut failures = Vec::new();
        for (target, result) in self.targets.iter().zip(results) {
            match result {
                Ok(lookups) => {
                    for (id, lookup) in flags.iter().zip(lookups) {
                        observed
                            .entry(id.clone())
                            .or_default()
                            .push((target.target_ref(id), lookup));
                    }
                }
                Err(e) => failures.push(format!("{}: {e:#}", target.store)),
            }
        }
        match failures.len() {
            0 => Ok(observed),
            1 => Err(anyhow!("cannot read store {}", failures[0])),
            n => Err(anyhow!(
                "cannot read {n} store targets:\n  {}",
                failures.join("\n  ")
            )),
        }
    }
}
