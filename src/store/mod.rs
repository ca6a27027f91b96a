//! The stores relayctl reads and writes, behind one narrow interface per kind of item.
//!
//! A `[[store]]` expands into one or more endpoints (each Redis URL is one; a file store is one
//! whose path depends on the project/environment): [`FlagEndpoint`]s for flag stores,
//! [`redis_keys::KeyEndpoint`]s for `redis-keys` stores, both in [`Stores`]. Each backend module
//! is the only place that knows its storage layout: where an item lives, how a target is named,
//! its URL rules and defaults ([`StoreKind`] asks them). This module owns what they share: the
//! [`Endpoint`] interface the apply engine writes through ([`Storable`] picks a kind's
//! endpoints, so a flag can only reach a flag store and a key a `redis-keys` store), reading
//! items from every endpoint that keeps them ([`Stores::read`]), the read-modify-write rule of
//! SPEC §2 "apply" for flags (check the planned version, rewrite via [`StoredFlag::rewrite`],
//! write atomically against concurrent writers), and how a write whose outcome is unknown is
//! told apart ([`WriteError::Unknown`]) and resolved by reading the target back ([`read_back`]).

pub(crate) mod dynamodb;
pub(crate) mod file;
mod items;
pub(crate) mod lease;
mod listing;
pub(crate) mod redis;
mod redis_auth;
pub(crate) mod redis_keys;
mod redis_topology;

pub use items::ItemKind;
pub use listing::Listing;

use crate::flag::{Flag, FlagChange, FlagId, Lookup, NotAFlag, StoredFlag, Targeting};
use crate::key::Key;
use crate::kind::{Kind, Observed, StoreTarget};
use anyhow::{anyhow, Result};
use futures::future::join_all;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long connecting to a store may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to a store may take (for Redis, the default of `RELAYCTL_REDIS_TIMEOUT`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a try to take a team lease found (`lease.rs`).
#[derive(Debug)]
pub enum LeaseTaken {
    /// The lease is this run's now.
    Ours,
    /// Another lease is there: its text (if readable) and how long it has left (if known).
    Held(Option<String>, Option<Duration>),
}

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

/// Why a write to one target did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target no longer holds what the plan observed (`the store holds v5 but the plan was
    /// made against v4`): someone else wrote the item.
    #[error("stale plan: {0}; run `relayctl plan` again and review the new plan")]
    Stale(String),
    /// The write was sent and no answer came (timed out, connection lost): the target may or
    /// may not hold it. Only reading the target again can tell ([`read_back`]).
    #[error("outcome unknown: {0:#}")]
    Unknown(anyhow::Error),
    /// The target answered the write, and it may still not stand: the primary written to
    /// stopped being the primary before its replicas had it. Read back like [`WriteError::Unknown`].
    #[error("in doubt: {0:#}")]
    InDoubt(anyhow::Error),
    /// Anything else, where the store did not take the write: unreachable, refused.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl WriteError {
    /// The same error again, for each write of a batch it stopped.
    pub(crate) fn again(&self) -> WriteError {
        match self {
            WriteError::Stale(why) => WriteError::Stale(why.clone()),
            WriteError::Unknown(e) => WriteError::Unknown(anyhow!("{e:#}")),
            WriteError::InDoubt(e) => WriteError::InDoubt(anyhow!("{e:#}")),
            WriteError::Failed(e) => WriteError::Failed(anyhow!("{e:#}")),
        }
    }
}

/// A write a target took, with what the store adds about it (Redis: the primary written to, how
/// many replicas acknowledged; a warning when some lag, on the first write of a batch only).
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub note: Option<String>,
    pub warning: Option<String>,
}

impl Written {
    /// The outcomes of a batch a Redis server answered, with what its replicas say (one `WAIT`
    /// for the whole batch: a note for each write, a warning once); every write of the batch is
    /// unknown when the primary written to stopped being the primary before they were
    /// replicated (see `RedisEndpoint::replicated`): apply reads them back.
    pub(crate) async fn replicated<T, F>(
        results: Vec<Result<T, WriteError>>,
        replicated: impl FnOnce() -> F,
    ) -> Vec<Result<Written, WriteError>>
    where
        F: std::future::Future<Output = Result<Written, String>>,
    {
        if !results.iter().any(Result::is_ok) {
            return Written::spread(results, Written::default());
        }
        match replicated().await {
            Ok(added) => Written::spread(results, added),
            Err(why) => results
                .into_iter()
                .map(|r| r.and_then(|_| Err(WriteError::InDoubt(anyhow!("{why}")))))
                .collect(),
        }
    }

    /// What the store said about a batch, for each of its `results`: the note on every write, the
    /// warning on the first one written.
    pub(crate) fn spread<T>(
        results: Vec<Result<T, WriteError>>,
        mut added: Written,
    ) -> Vec<Result<Written, WriteError>> {
        results
            .into_iter()
            .map(|r| {
                r.map(|_| Written {
                    note: added.note.clone(),
                    warning: added.warning.take(),
                })
            })
            .collect()
    }
}

/// One place a store keeps items of kind `K`: what the apply engine and the readers need of it.
#[allow(async_fn_in_trait)] // crate-private, and awaited on relayctl's one thread: no Send bound wanted
pub trait Endpoint<K: Kind> {
    /// The store (`[[store]] name`) it belongs to.
    fn store(&self) -> &str;
    /// How plans, the journal and messages name this endpoint for `id`.
    fn target(&self, id: &K::Id) -> StoreTarget;
    /// Whether `id` lives here: a flag store keeps every flag, a `redis-keys` store its own keys.
    fn keeps(&self, id: &K::Id) -> bool;
    /// What it holds for each of `ids`, in as few round trips as the backend allows; `fresh`: on
    /// a new connection (where the endpoint's own may still wait for the answer to a write).
    async fn read(&self, ids: &[&K::Id], fresh: bool) -> Result<Vec<K::Held>>;
    /// Each change of `changes`, a compare-and-set on what its plan observed, in as few round
    /// trips as the backend allows; one outcome per change, in order. One that is stale or
    /// fails leaves the others as they go.
    async fn write(&self, changes: &[&K::Change]) -> Vec<Result<Written, WriteError>>;
    /// How long [`read_back`] may take at most.
    fn read_back_limit(&self) -> Duration;
}

/// A kind of item the stores keep, and the endpoints that take it.
pub trait Storable: Kind {
    type Endpoint: Endpoint<Self>;
    /// Every endpoint of this kind, in the overrides file's order.
    fn endpoints(stores: &Stores) -> &[Self::Endpoint];
}

impl Storable for Flag {
    type Endpoint = FlagEndpoint;
    fn endpoints(stores: &Stores) -> &[FlagEndpoint] {
        &stores.flags
    }
}

impl Storable for Key {
    type Endpoint = redis_keys::KeyEndpoint;
    fn endpoints(stores: &Stores) -> &[redis_keys::KeyEndpoint] {
        &stores.keys
    }
}

/// Reads `ids` from `endpoint` again, all in one bounded read ([`Endpoint::read_back_limit`]):
/// for Redis one pipeline on a new connection, for DynamoDB batched gets. How apply resolves the
/// writes of a batch whose outcome is unknown.
pub async fn read_back<K: Storable>(endpoint: &K::Endpoint, ids: &[&K::Id]) -> Result<Vec<K::Held>> {
    let limit = endpoint.read_back_limit();
    tokio::time::timeout(limit, endpoint.read(ids, true))
        .await
        .map_err(|_| anyhow!("no answer within {}s", limit.as_secs()))?
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
pub(crate) type Reads = Vec<Vec<Raw>>;

/// The rewrite a backend applies inside its compare-and-swap: current raw JSON (None when
/// absent) to the new JSON, or a refusal.
pub(crate) type Rewrite<'a> = &'a (dyn Fn(Option<&str>) -> Result<String, WriteError> + Sync);

enum Backend {
    Redis(Box<redis::RedisEndpoint>),
    DynamoDb(Box<dynamodb::DynamoEndpoint>),
    File(file::FileEndpoint),
}

/// One live place a store keeps flags: a Redis server, a DynamoDB table, a file path template.
pub struct FlagEndpoint {
    store: String,
    backend: Backend,
}

impl FlagEndpoint {
    /// How plans, the journal and messages name this endpoint for a project/environment.
    pub fn target_in(&self, project: &str, environment: &str) -> StoreTarget {
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

    /// Writes `to` over the flag `id`, provided the store still holds version `expected`.
    #[cfg(test)]
    pub async fn write_one(&self, id: &FlagId, expected: u64, to: &Targeting) -> Result<Written, WriteError> {
        let change = FlagChange {
            id: id.clone(),
            target: self.target(id),
            version: expected,
            from: to.clone(),
            to: to.clone(),
            reason: None,
        };
        self.write(&[&change]).await.remove(0)
    }
}

impl Endpoint<Flag> for FlagEndpoint {
    fn store(&self) -> &str {
        &self.store
    }

    fn target(&self, id: &FlagId) -> StoreTarget {
        self.target_in(&id.project, &id.environment)
    }

    fn keeps(&self, _: &FlagId) -> bool {
        true
    }

    async fn read(&self, flags: &[&FlagId], fresh: bool) -> Result<Vec<Lookup>> {
        let mut groups: Groups = BTreeMap::new();
        let mut positions: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, id) in flags.iter().enumerate() {
            let group = (id.project.as_str(), id.environment.as_str());
            groups.entry(group).or_default().push(id.flag.as_str());
            positions.entry(group).or_default().push(i);
        }
        let found: Reads = match &self.backend {
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
        let missing = || Lookup::Missing {
            place: "not returned by the store".into(),
        };
        Ok(out.into_iter().map(|l| l.unwrap_or_else(missing)).collect())
    }

    /// The backend performs each compare-and-swap; a re-run after a crash either finds the new
    /// version (the write happened: the next plan shows no change) or the old one (it did not).
    async fn write(&self, changes: &[&FlagChange]) -> Vec<Result<Written, WriteError>> {
        let rewrites: Vec<_> = changes
            .iter()
            .map(|c| move |raw: Option<&str>| rewrite(raw, c.version, &c.to))
            .collect();
        let swaps: Vec<(&FlagId, Rewrite)> = changes
            .iter()
            .zip(&rewrites)
            .map(|(c, r)| (&c.id, r as Rewrite))
            .collect();
        match &self.backend {
            Backend::Redis(r) => {
                let results = r.compare_and_swap_batch(&swaps).await;
                Written::replicated(results, || r.replicated()).await
            }
            Backend::DynamoDb(d) => {
                let swaps =
                    futures::stream::iter(&swaps).map(|(id, rewrite)| d.compare_and_swap(id, *rewrite));
                let results: Vec<_> = swaps.buffered(dynamodb::WRITES_IN_FLIGHT).collect().await;
                Written::spread(results, Written::default())
            }
            Backend::File(f) => {
                let mut results = Vec::new();
                for (id, rewrite) in &swaps {
                    results.push(f.compare_and_swap(id, *rewrite).await);
                }
                Written::spread(results, Written::default())
            }
        }
    }

    fn read_back_limit(&self) -> Duration {
        match &self.backend {
            Backend::Redis(r) => r.read_back_limit(),
            Backend::DynamoDb(_) | Backend::File(_) => CONNECT_TIMEOUT + REQUEST_TIMEOUT,
        }
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
    Err(WriteError::Stale(format!(
        "the store holds {found} but the plan was made against v{expected}"
    )))
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

/// Every endpoint of every configured store: flag stores and `redis-keys` stores apart.
pub struct Stores {
    flags: Vec<FlagEndpoint>,
    keys: Vec<redis_keys::KeyEndpoint>,
}

impl Stores {
    /// Prepares the endpoints of `stores` and `key_stores`; connections are opened on first use,
    /// so a plan file that touches one store does not need the others to be up. `redis_timeout`
    /// is how long a Redis server may take to answer one request.
    pub fn open(
        stores: &[StoreConfig],
        key_stores: &[redis_keys::KeyStoreConfig],
        redis_timeout: Duration,
    ) -> Result<Stores> {
        let mut flags = Vec::new();
        for s in stores {
            let mut add = |backend| {
                flags.push(FlagEndpoint {
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
        let keys = redis_keys::KeyEndpoint::open(key_stores, redis_timeout)?;
        Ok(Stores { flags, keys })
    }

    /// How many endpoints of kind `K` there are.
    pub fn len<K: Storable>(&self) -> usize {
        K::endpoints(self).len()
    }

    /// The endpoint a plan change names, if the overrides file still declares it.
    pub fn find<K: Storable>(&self, id: &K::Id, target: &StoreTarget) -> Option<&K::Endpoint> {
        K::endpoints(self)
            .iter()
            .find(|e| e.keeps(id) && e.target(id) == *target)
    }

    /// Reads each `(item, target)` pair from the endpoint of its target, concurrently, leaving out
    /// the pairs of an endpoint that cannot be read (returned apart: `<store> <target>: <why>`):
    /// for checking a saved plan, which must not need the stores it does not touch, or one that
    /// is down (its writes then fail at once, as after any failure to answer in a run), and for
    /// recovering what a killed apply left. A pair whose target is not declared is left out.
    pub async fn read_named<K: Storable>(
        &self,
        pairs: &[(K::Id, StoreTarget)],
    ) -> (Observed<K>, Vec<String>) {
        let reads = K::endpoints(self).iter().map(|e| async move {
            let named = pairs.iter().filter(|(id, t)| e.keeps(id) && e.target(id) == *t);
            let ids: std::collections::BTreeSet<&K::Id> = named.map(|(id, _)| id).collect();
            let ids: Vec<&K::Id> = ids.into_iter().collect();
            let held = match ids.is_empty() {
                true => Ok(Vec::new()),
                false => e.read(&ids, false).await,
            };
            (e, ids, held)
        });
        let mut observed = Observed::<K>::new();
        let mut failures = Vec::new();
        for (endpoint, ids, held) in join_all(reads).await {
            match held {
                Ok(held) => add(&mut observed, endpoint, &ids, held),
                Err(e) => failures.push(format!("{}: {e:#}", endpoint.target(ids[0]))),
            }
        }
        (observed, failures)
    }

    /// Reads `ids` from every endpoint that keeps them, concurrently; what the endpoints that
    /// answered hold, and for each that did not, `<store> <target>: <why>`: for `show`, where one
    /// unreachable endpoint must not hide what the others hold.
    pub async fn read_each<K: Storable>(&self, ids: &[K::Id]) -> (Observed<K>, Vec<String>) {
        let (observed, failures) = self.read_from::<K>(ids).await;
        let failures = failures
            .into_iter()
            .map(|(e, why)| format!("{}: {why}", e.target(&ids[0])));
        (observed, failures.collect())
    }

    /// [`Stores::read_each`], and any endpoint that does not answer is an error naming its store
    /// (all of them, if several are down): for planning, which needs every target.
    pub async fn read<K: Storable>(&self, ids: &[K::Id]) -> Result<Observed<K>> {
        let (observed, failures) = self.read_from::<K>(ids).await;
        let failures: Vec<String> = failures
            .into_iter()
            .map(|(e, why)| format!("{}: {why}", e.store()))
            .collect();
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

impl Stores {
    /// Where the endpoint that `target` names for the flag `id` holds a team lease.
    pub fn flag_lease(&self, id: &FlagId, target: &StoreTarget) -> Option<lease::Spot> {
        let e = self.find::<Flag>(id, target)?;
        Some(match &e.backend {
            Backend::Redis(r) => lease::Spot::redis(r.lease_at(), r.describe()),
            Backend::DynamoDb(d) => lease::Spot::dynamo(d.config().clone(), d.describe()),
            // A file store is on this machine: the journal's own lock keeps its applies apart.
            Backend::File(_) => return None,
        })
    }

    /// Where the endpoint that `target` names for the plain key `id` holds a team lease.
    pub fn key_lease(&self, id: &<Key as Kind>::Id, target: &StoreTarget) -> Option<lease::Spot> {
        self.find::<Key>(id, target)
            .map(|e| lease::Spot::redis(e.lease_at(), e.shown()))
    }

    /// Every place a lease that `relayctl unlock` can break may live: each Redis server and
    /// DynamoDB table of the overrides file (a file store's lease ends with its process).
    pub fn lease_spots(&self) -> Vec<lease::Spot> {
        let flags = self.flags.iter().filter_map(|e| match &e.backend {
            Backend::Redis(r) => Some(lease::Spot::redis(r.lease_at(), r.describe())),
            Backend::DynamoDb(d) => Some(lease::Spot::dynamo(d.config().clone(), d.describe())),
            Backend::File(_) => None,
        });
        let keys = self
            .keys
            .iter()
            .map(|e| lease::Spot::redis(e.lease_at(), e.shown()));
        flags.chain(keys).collect()
    }

    /// What each endpoint that keeps some of `ids` holds for them, read concurrently; the
    /// endpoints that did not answer apart, with why.
    async fn read_from<K: Storable>(&self, ids: &[K::Id]) -> (Observed<K>, Vec<(&K::Endpoint, String)>) {
        let endpoints = K::endpoints(self);
        let reads = endpoints.iter().map(|e| async move {
            let kept: Vec<&K::Id> = ids.iter().filter(|id| e.keeps(id)).collect();
            let held = match kept.is_empty() {
                true => Ok(Vec::new()),
                false => e.read(&kept, false).await,
            };
            (kept, held)
        });
        let mut observed = Observed::<K>::new();
        let mut failures = Vec::new();
        for (endpoint, (kept, held)) in endpoints.iter().zip(join_all(reads).await) {
            match held {
                Ok(held) => add(&mut observed, endpoint, &kept, held),
                Err(e) => failures.push((endpoint, format!("{e:#}"))),
            }
        }
        (observed, failures)
    }
}

/// Adds what `endpoint` holds for `ids` to `observed`.
fn add<K: Kind>(observed: &mut Observed<K>, endpoint: &impl Endpoint<K>, ids: &[&K::Id], held: Vec<K::Held>) {
    for (id, held) in ids.iter().zip(held) {
        observed
            .entry((*id).clone())
            .or_default()
            .push((endpoint.target(id), held));
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
            &[],
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
                .block_on(stores.flags[0].write_one(&id, 4, &serving(index, value)))
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
        rt.block_on(stores.flags[0].write_one(&id, 4, &serving(1, "b")))
            .unwrap();
        let written = std::fs::read_to_string(dir.path().join("flags.json")).unwrap();
        assert!(written.contains("\"version\": 5"), "{written}");
    }
}
