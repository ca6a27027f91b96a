//! The stores relayctl reads and writes, behind one narrow interface.
//!
//! A `[[store]]` expands into one or more [`Endpoint`]s (each Redis URL is one; a file store is
//! one whose path depends on the project/environment). Each backend module is the only place
//! that knows its storage layout: where a flag lives, how a target is named, its URL rules and
//! defaults ([`StoreKind`] asks them). This module owns what they share: turning raw JSON into
//! [`Lookup`]s, the read-modify-write rule of SPEC §2 "apply" (check the planned version,
//! rewrite via [`StoredFlag::rewrite`], write atomically against concurrent writers), and how a
//! write whose outcome is unknown is told apart ([`WriteError::Unknown`]) and resolved by reading
//! the target back ([`Endpoint::read_back`]).

pub(crate) mod dynamodb;
pub(crate) mod file;
mod listing;
pub(crate) mod redis;
pub(crate) mod redis_keys;
mod redis_topology;

pub use listing::Listing;

use crate::flag::NotAFlag;
use crate::flag::{FlagId, StoreTarget, StoredFlag, Targeting};
use anyhow::{anyhow, Result};
use futures::future::join_all;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long connecting to a store may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to a store may take (for Redis, the default of `RELAYCTL_REDIS_TIMEOUT`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[store]]` of the overrides file: every store receives every change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub name: String,
    pub kind: StoreKind,
}

/// What kind of store a `[[store]]` is, with the settings its backend reads.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    Redis(redis::Config),
    DynamoDb(dynamodb::Config),
    File(file::Config),
}

impl StoreKind {
    /// Where this store keeps the flags of `project`/`environment`, in words: two environments
    /// kept in the same place would overwrite each other's flags.
    pub fn place(&self, project: &str, environment: &str) -> String {
        match self {
            StoreKind::Redis(c) => c.place(project, environment),
            StoreKind::DynamoDb(c) => c.place(project, environment),
            StoreKind::File(c) => c.place(project, environment),
        }
    }

    /// How to give each environment a place of its own in this kind of store.
    pub fn place_fix(&self) -> &'static str {
        match self {
            StoreKind::File(_) => file::PLACE_FIX,
            StoreKind::Redis(_) | StoreKind::DynamoDb(_) => {
                "give it a prefix with {environment} (and {project}), or a [store.prefixes] entry per environment"
            }
        }
    }

    /// What two stores must not share (a Redis server, a table, a file).
    pub fn identities(&self) -> Vec<String> {
        match self {
            StoreKind::Redis(c) => c.identities(),
            StoreKind::DynamoDb(c) => c.identities(),
            StoreKind::File(c) => c.identities(),
        }
    }
}

/// A `{project}` / `{environment}` template (store prefixes and file paths).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(String);

impl Template {
    /// Validates the placeholders of `raw`.
    pub fn parse(raw: &str) -> Result<Template, String> {
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unbalanced '}}' in template {raw:?}"));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("unbalanced '{{' in template {raw:?}"));
            };
            let name = &rest[open + 1..open + close];
            if name != "project" && name != "environment" {
                return Err(format!(
                    "unknown placeholder {{{name}}} in template {raw:?}; only {{project}} and {{environment}} are replaced"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(Template(raw.to_owned()))
    }

    /// The template with its placeholders replaced.
    pub fn render(&self, project: &str, environment: &str) -> String {
        self.0
            .replace("{project}", project)
            .replace("{environment}", environment)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a store derives the key prefix of a project/environment: an exact `[store.prefixes]`
/// entry, else the `prefix` template, else the backend's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefix {
    pub template: Option<Template>,
    pub exact: BTreeMap<(String, String), String>,
}

impl Prefix {
    /// The configured prefix for a project/environment, if any (empty counts as none).
    pub fn resolve(&self, project: &str, environment: &str) -> Option<String> {
        self.exact
            .get(&(project.to_owned(), environment.to_owned()))
            .cloned()
            .or_else(|| self.template.as_ref().map(|t| t.render(project, environment)))
            .filter(|p| !p.is_empty())
    }
}

/// What a store target holds for one flag.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(StoredFlag),
    /// Not in the store; `place` says where it was looked for (hash and field, file).
    Missing {
        place: String,
    },
    Invalid(NotAFlag),
}

/// What every store target holds for every declared flag.
pub type Observed = BTreeMap<FlagId, Vec<(StoreTarget, Lookup)>>;

/// Why a write to one target did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store no longer holds the version the plan observed: someone else wrote the flag.
    #[error("stale plan: the store holds {found} but the plan was made against v{expected}; run `relayctl plan` again and review the new plan")]
    Stale { expected: u64, found: String },
    /// The write was sent and no answer came (timed out, connection lost): the target may or
    /// may not hold it. Only reading the target again can tell ([`Endpoint::read_back`]).
    #[error("outcome unknown: {0:#}")]
    Unknown(anyhow::Error),
    /// Anything else, where the store did not take the write: unreachable, refused.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// A write a target took: the version it now holds, and what the store adds about it (Redis: the
/// primary written to, how many replicas acknowledged; a warning when some lag).
#[derive(Debug, Default)]
pub struct Written {
    pub version: u64,
    pub note: Option<String>,
    pub warning: Option<String>,
}

/// The flags of one project/environment, which share a key prefix or a file.
pub(crate) type Groups<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a str>>;

/// What a backend holds for one flag.
#[derive(Debug)]
pub(crate) enum Raw {
    /// The stored flag JSON.
    Json(String),
    /// No such flag; where it was looked for.
    Missing(String),
    /// Something relayctl must not rewrite, for a reason only the backend can see (bytes that
    /// are not UTF-8, a record that contradicts its own JSON, the flag stored twice).
    Invalid(NotAFlag),
}

impl From<Result<Vec<u8>, String>> for Raw {
    /// A value read as bytes (Redis), or where it was looked for: a value that is not UTF-8 is
    /// a problem of its flag, not of the whole read.
    fn from(found: Result<Vec<u8>, String>) -> Raw {
        match found.map(String::from_utf8) {
            Ok(Ok(json)) => Raw::Json(json),
            Ok(Err(e)) => Raw::Invalid(e.into()),
            Err(place) => Raw::Missing(place),
        }
    }
}

impl From<Raw> for Lookup {
    fn from(raw: Raw) -> Lookup {
        match raw {
            Raw::Json(json) => StoredFlag::parse(&json).map_or_else(Lookup::Invalid, Lookup::Found),
            Raw::Missing(place) => Lookup::Missing { place },
            Raw::Invalid(why) => Lookup::Invalid(why),
        }
    }
}

/// What a backend found for each flag of each group, in the groups' order.
pub(crate) type Held = Vec<Vec<Raw>>;

/// The rewrite a backend applies inside its compare-and-swap: current raw JSON (None when
/// absent) to the new JSON, or a refusal.
pub(crate) type Rewrite<'a> = &'a (dyn Fn(Option<&str>) -> Result<String, WriteError> + Sync);

enum Backend {
    Redis(Box<redis::RedisEndpoint>),
    DynamoDb(Box<dynamodb::DynamoEndpoint>),
    File(file::FileEndpoint),
}

/// One live place a store keeps flags: a Redis server, a DynamoDB table, a file path template.
pub struct Endpoint {
    store: String,
    backend: Backend,
}

impl Endpoint {
    /// How plans, the journal and messages name this endpoint for a project/environment.
    pub fn target(&self, project: &str, environment: &str) -> StoreTarget {
        let target = match &self.backend {
            Backend::Redis(r) => r.describe(),
            Backend::DynamoDb(d) => d.describe(),
            Backend::File(f) => f.describe(project, environment),
        };
        StoreTarget {
            store: self.store.clone(),
            target,
        }
    }

    /// Reads every flag of `flags` from this endpoint, in as few round trips as the backend allows.
    async fn read(&self, flags: &[FlagId]) -> Result<Vec<Lookup>> {
        self.read_on(flags, false).await
    }

    /// [`Endpoint::read`], on a new connection when `fresh` and the backend keeps one.
    async fn read_on(&self, flags: &[FlagId], fresh: bool) -> Result<Vec<Lookup>> {
        let mut groups: Groups = BTreeMap::new();
        let mut positions: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, id) in flags.iter().enumerate() {
            let group = (id.project.as_str(), id.environment.as_str());
            groups.entry(group).or_default().push(id.flag.as_str());
            positions.entry(group).or_default().push(i);
        }
        let found: Held = match &self.backend {
            Backend::Redis(r) if fresh => r.read_back(&groups).await?,
            Backend::Redis(r) => r.read(&groups).await?,
            Backend::DynamoDb(d) => d.read(&groups).await?,
            Backend::File(f) => f.read(&groups).await?,
        };
        let mut out: Vec<Option<Lookup>> = vec![None; flags.len()];
        for (positions, values) in positions.values().zip(found) {
            for (&i, value) in positions.iter().zip(values) {
                out[i] = Some(value.into());
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
    /// Returns the version written (`expected + 1`), with what the store says about the write.
    ///
    /// The backend performs the compare-and-swap; a re-run after a crash either finds the new
    /// version (the write happened: the next plan shows no change) or the old one (it did not).
    #[cfg(test)]
    pub async fn write(&self, id: &FlagId, expected: u64, to: &Targeting) -> Result<Written, WriteError> {
        self.write_batch(&[(id, expected, to)]).await.remove(0)
    }

    /// [`Endpoint::write`] of each `(flag, expected version, state)`, in as few round trips as the
    /// backend allows; one outcome per write, in order. Each write is checked and swapped on its
    /// own: one that is stale or fails leaves the others as they go.
    pub async fn write_batch(
        &self,
        writes: &[(&FlagId, u64, &Targeting)],
    ) -> Vec<Result<Written, WriteError>> {
        let rewrites: Vec<_> = writes
            .iter()
            .map(|&(_, expected, to)| move |raw: Option<&str>| rewrite(raw, expected, to))
            .collect();
        let swaps: Vec<(&FlagId, Rewrite)> = writes
            .iter()
            .zip(&rewrites)
            .map(|(&(id, _, _), r)| (id, r as Rewrite))
            .collect();
        // What the store adds about the batch's writes (Redis: replicas acknowledging, one WAIT
        // for the whole batch): a note for each write, a warning once.
        let mut added = Written::default();
        let results = match &self.backend {
            Backend::Redis(r) => {
                let results = r.compare_and_swap_batch(&swaps).await;
                if results.iter().any(Result::is_ok) {
                    added = r.replicated().await;
                }
                results
            }
            Backend::DynamoDb(d) => {
                let swaps =
                    futures::stream::iter(&swaps).map(|(id, rewrite)| d.compare_and_swap(id, *rewrite));
                swaps.buffered(dynamodb::WRITES_IN_FLIGHT).collect().await
            }
            Backend::File(f) => {
                let mut results = Vec::new();
                for (id, rewrite) in &swaps {
                    results.push(f.compare_and_swap(id, *rewrite).await);
                }
                results
            }
        };
        results
            .into_iter()
            .zip(writes)
            .map(|(result, &(_, expected, _))| {
                result.map(|()| Written {
                    version: expected + 1,
                    note: added.note.clone(),
                    warning: added.warning.take(),
                })
            })
            .collect()
    }

    /// How long [`Endpoint::read_back`] may take at most.
    pub fn read_back_limit(&self) -> Duration {
        match &self.backend {
            Backend::Redis(r) => r.read_back_limit(),
            Backend::DynamoDb(_) | Backend::File(_) => CONNECT_TIMEOUT + REQUEST_TIMEOUT,
        }
    }

    /// Reads the flags of `flags` again, all in one bounded read ([`Endpoint::read_back_limit`]):
    /// for Redis one pipeline on a new connection (the writes' may still wait for replies), for
    /// DynamoDB batched gets: how apply resolves the writes of a batch whose outcome is unknown.
    pub async fn read_back(&self, flags: &[FlagId]) -> Result<Vec<Lookup>> {
        let limit = self.read_back_limit();
        tokio::time::timeout(limit, self.read_on(flags, true))
            .await
            .map_err(|_| anyhow!("no answer within {}s", limit.as_secs()))?
    }
}

/// The rewrite of a flag stored as `raw` (None when absent) to `to`, provided it is at version
/// `expected`: the new JSON, or why not (a stale plan, a flag that cannot be rewritten safely).
fn rewrite(raw: Option<&str>, expected: u64, to: &Targeting) -> Result<String, WriteError> {
    let found = match raw.map(StoredFlag::parse) {
        None => "no such flag".to_owned(),
        Some(Err(e)) => format!("a value that is not a flag ({e})"),
        Some(Ok(f)) if f.deleted => format!("a deleted tombstone at v{}", f.version),
        Some(Ok(f)) if f.version != expected => format!("v{}", f.version),
        Some(Ok(f)) => {
            unserved(&f, to).map_err(|e| WriteError::Failed(anyhow!(e)))?;
            return f.rewrite(to).map_err(|e| {
                anyhow!("the stored flag cannot be rewritten safely, so it was not written: {e}").into()
            });
        }
    };
    Err(WriteError::Stale { expected, found })
}

/// Refuses a state that serves a variation the flag does not have at that index: whatever a plan
/// file says, no SDK ever gets a flag pointing at a variation that is not there.
fn unserved(flag: &StoredFlag, to: &Targeting) -> Result<(), String> {
    for (slot, serve) in [
        ("off_variation", &to.off_variation),
        ("fallthrough", &to.fallthrough),
    ] {
        let Some(v) = serve.as_ref().and_then(crate::flag::Serve::variation) else {
            continue;
        };
        if !matches!(v.locate(flag.variations()), Ok(found) if found.index == v.index) {
            return Err(format!(
                "the plan's {slot} is variation {} ({}), which this flag does not serve there: make a \
                 new plan",
                v.index, v.value
            ));
        }
    }
    Ok(())
}

/// Every endpoint of every configured store.
pub struct Stores {
    endpoints: Vec<Endpoint>,
}

impl Stores {
    /// Prepares the endpoints of `stores`; connections are opened on first use, so a plan file
    /// that touches one store does not need the others to be up. `redis_timeout` is how long a
    /// Redis server may take to answer one request.
    pub fn open(stores: &[StoreConfig], redis_timeout: Duration) -> Result<Stores> {
        let mut endpoints = Vec::new();
        for s in stores {
            let mut add = |backend| {
                endpoints.push(Endpoint {
                    store: s.name.clone(),
                    backend,
                })
            };
            match &s.kind {
                StoreKind::Redis(c) => {
                    for endpoint in c.endpoints(redis_timeout)? {
                        add(Backend::Redis(Box::new(endpoint)));
                    }
                }
                StoreKind::DynamoDb(c) => add(Backend::DynamoDb(Box::new(dynamodb::DynamoEndpoint::new(c)))),
                StoreKind::File(c) => add(Backend::File(file::FileEndpoint::new(c.clone()))),
            }
        }
        Ok(Stores { endpoints })
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// The endpoint a plan change names, if the overrides file still declares it.
    pub fn find(&self, id: &FlagId, target: &StoreTarget) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.target(&id.project, &id.environment) == *target)
    }

    /// Reads each `(flag, target)` pair from the endpoint of its target, concurrently, leaving out
    /// the pairs of an endpoint that cannot be read (returned apart: `<store> <target>: <why>`):
    /// for checking a saved plan, which must not need the stores it does not touch, or one that
    /// is down (its writes then fail at once, as after any failure to answer in a run).
    pub async fn read_named(&self, pairs: &[(FlagId, StoreTarget)]) -> (Observed, Vec<String>) {
        let wanted = |e: &Endpoint| -> Vec<FlagId> {
            let named = pairs
                .iter()
                .filter(|(id, t)| e.target(&id.project, &id.environment) == *t);
            let ids: std::collections::BTreeSet<FlagId> = named.map(|(id, _)| id.clone()).collect();
            ids.into_iter().collect()
        };
        let reads = self.endpoints.iter().map(|e| async move {
            let ids = wanted(e);
            let lookups = match ids.is_empty() {
                true => Ok(Vec::new()),
                false => e.read(&ids).await,
            };
            (e, ids, lookups)
        });
        let mut observed: Observed = BTreeMap::new();
        let mut failures = Vec::new();
        for (endpoint, ids, lookups) in join_all(reads).await {
            let lookups = match lookups {
                Ok(lookups) => lookups,
                Err(e) => {
                    let target = endpoint.target(&ids[0].project, &ids[0].environment);
                    failures.push(format!("{target}: {e:#}"));
                    continue;
                }
            };
            for (id, lookup) in ids.into_iter().zip(lookups) {
                let target = endpoint.target(&id.project, &id.environment);
                observed.entry(id).or_default().push((target, lookup));
            }
        }
        (observed, failures)
    }

    /// Reads `flags` from every endpoint concurrently. Any unreachable endpoint is an error
    /// naming it (all of them, if several are down).
    pub async fn read(&self, flags: &[FlagId]) -> Result<Observed> {
        let results = join_all(self.endpoints.iter().map(|e| e.read(flags))).await;
        let mut observed: Observed = BTreeMap::new();
        let mut failures = Vec::new();
        for (endpoint, result) in self.endpoints.iter().zip(results) {
            match result {
                Ok(lookups) => {
                    for (id, lookup) in flags.iter().zip(lookups) {
                        observed
                            .entry(id.clone())
                            .or_default()
                            .push((endpoint.target(&id.project, &id.environment), lookup));
                    }
                }
                Err(e) => failures.push(format!("{}: {e:#}", endpoint.store)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flag::{Serve, Variation};

    #[test]
    fn a_write_never_points_at_a_variation_the_flag_does_not_serve() {
        let dir = tempfile::tempdir().unwrap();
        let flags = r#"{"flags": {"f": {"key": "f", "on": true, "variations": ["a", "b", "c"], "offVariation": 1, "version": 4}}}"#;
        std::fs::write(dir.path().join("flags.json"), flags).unwrap();
        let stores = Stores::open(
            &[StoreConfig {
                name: "file".into(),
                kind: StoreKind::File(file::Config {
                    path: Template::parse("flags.json").unwrap(),
                    base_dir: dir.path().to_owned(),
                }),
            }],
            REQUEST_TIMEOUT,
        )
        .unwrap();
        let id = FlagId {
            project: "p".into(),
            environment: "e".into(),
            flag: "f".into(),
        };
        let serving = |index: usize, value: &str| Targeting {
            on: false,
            off_variation: Some(Serve::Variation(Variation {
                index,
                value: value.into(),
            })),
            fallthrough: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for (index, value) in [(99, "b"), (0, "b")] {
            let e = rt
                .block_on(stores.endpoints[0].write(&id, 4, &serving(index, value)))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("off_variation is variation {index} (\"b\")")),
                "{e}"
            );
            assert_eq!(
                std::fs::read_to_string(dir.path().join("flags.json")).unwrap(),
                flags
            );
        }
        assert_eq!(
            rt.block_on(stores.endpoints[0].write(&id, 4, &serving(1, "b")))
                .unwrap()
                .version,
            5
        );
    }
}
