//! The DynamoDB layout of the LaunchDarkly SDKs and Relay (facts §3): the only file that knows it.
//!
//! A table with partition key `namespace` (S) and sort key `key` (S). Each flag is one item:
//! `namespace` = `<prefix>:features` (bare `features` without a prefix, Relay's DynamoDB default),
//! `key` = the flag key, `version` (N) = the flag's version, `item` (S) = the flag JSON. The Go SDK
//! prefers the `version` attribute over the JSON's, so the two are always written equal.
//!
//! Reads are consistent BatchGetItems of 100 keys, a few in flight, retrying unprocessed keys with
//! backoff. A write is a consistent GetItem, the rewrite, and a PutItem conditioned on the
//! `version` attribute just read: a writer racing in between (Relay, another relayctl) makes the
//! put fail, the flag is read again and reported as a stale plan instead of being overwritten.
//! The writes of a batch run a bounded number at a time, each with its own outcome.
//! Nothing else is ever written: no other item, no segment, never the `$inited` marker. Segments
//! (namespace `<prefix>:segments`) are only read, for `relayctl eval`.
//!
//! Region, credentials and endpoint come from the standard AWS configuration (environment,
//! profiles including SSO and credential_process, web identity, ECS, EC2 metadata); `region` and
//! `endpoint_url` in the overrides file override them. The client is built, the credentials
//! resolved and the key schema checked (DescribeTable) once, on first use, so a plan file that
//! does not touch this store never needs it. Timeouts and retries are bounded so an unreachable
//! endpoint fails within seconds, and once it has, the rest of the run fails at once.

use super::{Groups, ItemKind, Prefix, Raw, Reads, Rewrite, WriteError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::flag::{FlagId, NotAFlag, StoredFlag};
use crate::json_text::excerpt;
use anyhow::{anyhow, Result};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, KeysAndAttributes, ScalarAttributeType};
use aws_sdk_dynamodb::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::OnceCell;

mod client;

/// Keys per BatchGetItem: the API's maximum.
const BATCH_KEYS: usize = 100;
/// BatchGetItem requests in flight at once, per table.
const BATCHES_IN_FLIGHT: usize = 4;
/// Rounds of retrying the keys a BatchGetItem left unprocessed (throttling, 16 MB limit).
const UNPROCESSED_ROUNDS: u32 = 8;
/// Attempts per request, including the first, for throttling and transient network errors.
const MAX_ATTEMPTS: u32 = 4;
/// Conditional puts per flag before giving up while other writers keep changing it.
const MAX_WRITE_ATTEMPTS: usize = 10;
/// Flag writes (each a GetItem and a conditional PutItem) in flight at once, per table: the
/// round trips of a batch overlap instead of adding up.
pub(super) const WRITES_IN_FLIGHT: usize = 32;

pub(super) mod lease;

type Item = HashMap<String, AttributeValue>;

/// A `dynamodb` store: the table, where it is, and the prefix of its namespaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub table: String,
    /// `endpoint_url` from the overrides file, which overrides the AWS configuration's.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub prefix: Prefix,
}

impl Config {
    /// `<prefix>:features`, or bare `features` without a prefix (Relay's DynamoDB default).
    fn namespace(&self, project: &str, environment: &str) -> String {
        self.namespace_of(project, environment, ItemKind::Flag)
    }

    /// The namespace of the items of `kind`: `<prefix>:<kind>`, or the bare kind name.
    fn namespace_of(&self, project: &str, environment: &str, kind: ItemKind) -> String {
        match self.prefix.resolve(project, environment) {
            Some(p) => format!("{p}:{}", kind.store_name()),
            None => kind.store_name().to_owned(),
        }
    }

    pub(super) fn place(&self, project: &str, environment: &str) -> String {
        format!(
            "prefix {:?}",
            self.prefix.resolve(project, environment).unwrap_or_default()
        )
    }

    /// The same table name in two regions is two tables (one store per region is common).
    pub(super) fn identities(&self) -> Vec<String> {
        vec![format!(
            "dynamodb table {} {} {}",
            self.table,
            self.endpoint_url.as_deref().unwrap_or(""),
            self.region.as_deref().unwrap_or("")
        )]
    }
}

pub(super) struct DynamoEndpoint {
    config: Config,
    /// The endpoint in use when one is configured (file or environment), redacted, for messages.
    endpoint_shown: Option<String>,
    /// How the target is shown: no secret, stable between `plan --out` and `apply`.
    shown: String,
    /// The client once the table is known to be usable, or why it is not (kept, so a target
    /// that is down fails every flag at once instead of waiting out its retries again).
    ready: OnceCell<Result<Client, String>>,
    /// Set once the endpoint proved unreachable: later requests in this run fail at once instead
    /// of each waiting out the timeouts and retries again (1,000 flags would take hours).
    unreachable: std::sync::OnceLock<String>,
    /// Credentials to use instead of the AWS configuration's (tests against moto).
    credentials: Option<aws_sdk_dynamodb::config::Credentials>,
}

impl DynamoEndpoint {
    pub(super) fn new(config: &Config) -> Self {
        let table = &config.table;
        // The endpoint that will be used, for display: the file's, else the environment's.
        let endpoint = config.endpoint_url.clone().or_else(|| {
            let ignore = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_ok_and(|v| v == "true");
            (!ignore)
                .then(|| {
                    std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
                        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                        .ok()
                })
                .flatten()
        });
        let host = endpoint.as_deref().and_then(|e| {
            let u = url::Url::parse(e).ok()?;
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        });
        let shown = match host {
            Some(h) => format!("dynamodb://{table}@{h}"),
            None => format!("dynamodb://{table}"),
        };
        DynamoEndpoint {
            config: config.clone(),
            endpoint_shown: endpoint.as_deref().map(crate::redact::url),
            shown,
            ready: OnceCell::new(),
            unreachable: std::sync::OnceLock::new(),
            credentials: None,
        }
    }

    pub(super) fn describe(&self) -> String {
        self.shown.clone()
    }

    /// The table's settings, for its team lease (`store/lease.rs`).
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    fn namespace(&self, project: &str, environment: &str) -> String {
        self.config.namespace(project, environment)
    }

    fn key(namespace: &str, flag: &str) -> Item {
        HashMap::from([
            ("namespace".to_owned(), AttributeValue::S(namespace.to_owned())),
            ("key".to_owned(), AttributeValue::S(flag.to_owned())),
        ])
    }

    /// Raw JSON per flag of each group, in the groups' order; a missing item maps to where it
    /// was looked for, an item relayctl must not rewrite to why.
    pub(super) async fn read(&self, groups: &Groups<'_>) -> Result<Reads> {
        let client = self.client().await?;
        let namespaces: Vec<String> = groups.keys().map(|(p, e)| self.namespace(p, e)).collect();
        // Several project/environments may share a namespace (no prefix): ask for each key once.
        let wanted: BTreeSet<(&str, &str)> = namespaces
            .iter()
            .zip(groups.values())
            .flat_map(|(ns, flags)| flags.iter().map(move |f| (ns.as_str(), *f)))
            .collect();
        let keys: Vec<Item> = wanted.iter().map(|(ns, flag)| Self::key(ns, flag)).collect();
        let batches: Vec<Vec<Item>> = stream::iter(
            keys.chunks(BATCH_KEYS)
                .map(|c| self.batch_get(client, c.to_vec())),
        )
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .try_collect()
        .await?;
        let mut by_key: HashMap<(String, String), Item> = HashMap::new();
        for item in batches.into_iter().flatten() {
            let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            if let (Some(ns), Some(key)) = (s("namespace"), s("key")) {
                by_key.insert((ns, key), item);
            }
        }
        Ok(namespaces
            .iter()
            .zip(groups.values())
            .map(|(ns, flags)| {
                flags
                    .iter()
                    .map(|flag| match by_key.get(&(ns.clone(), (*flag).to_owned())) {
                        Some(item) => match self.item_json(item, ns, flag) {
                            Ok(json) => match version_conflict(item, &json) {
                                Some(why) => Raw::Invalid(NotAFlag::new(why)),
                                None => Raw::Json(json),
                            },
                            Err(why) => Raw::Invalid(NotAFlag::new(why)),
                        },
                        None => Raw::Missing(format!(
                            "no item with namespace {ns:?} and key {flag:?} in table {:?}",
                            self.config.table
                        )),
                    })
                    .collect()
            })
            .collect())
    }

    /// The items `keys` of `kind` (flags or segments), for evaluation: consistent batched gets of
    /// their namespace. Each item's JSON as stored (the SDKs evaluate the JSON whatever its
    /// `version` attribute says), where it was looked for, or why it has none.
    pub(super) async fn read_items(
        &self,
        project: &str,
        environment: &str,
        kind: ItemKind,
        keys: &[String],
    ) -> Result<Vec<Raw>> {
        let client = self.client().await?;
        let namespace = self.config.namespace_of(project, environment, kind);
        let wanted: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        let requests: Vec<Item> = wanted.iter().map(|k| Self::key(&namespace, k)).collect();
        let batches: Vec<Vec<Item>> = stream::iter(
            requests
                .chunks(BATCH_KEYS)
                .map(|c| self.batch_get(client, c.to_vec())),
        )
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .try_collect()
        .await?;
        let mut by_key: HashMap<String, Item> = HashMap::new();
        for item in batches.into_iter().flatten() {
            if let Some(key) = item.get("key").and_then(|v| v.as_s().ok()) {
                by_key.insert(key.clone(), item);
            }
        }
        Ok(keys
            .iter()
            .map(|key| match by_key.get(key) {
                Some(item) => match self.item_json(item, &namespace, key) {
                    Ok(json) => Raw::Json(json),
                    Err(why) => Raw::Invalid(NotAFlag::new(why)),
                },
                None => Raw::Missing(format!(
                    "no item with namespace {namespace:?} and key {key:?} in table {:?}",
                    self.config.table
                )),
            })
            .collect())
    }

    /// The flag JSON of an item, or why there is none.
    fn item_json(&self, item: &Item, namespace: &str, flag: &str) -> Result<String, String> {
        item.get("item")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the item with namespace {namespace:?} and key {flag:?} in table {:?} has no string attribute \"item\" (the JSON of the flag or segment)",
                    self.config.table
                )
            })
    }

    /// One consistent BatchGetItem, retrying unprocessed keys with backoff (bounded).
    async fn batch_get(&self, client: &Client, keys: Vec<Item>) -> Result<Vec<Item>> {
        let table = &self.config.table;
        let mut pending = keys;
        let mut found = Vec::new();
        for round in 0..UNPROCESSED_ROUNDS {
            if round > 0 {
                let backoff = Duration::from_millis(50 << round.min(5));
                tokio::time::sleep(backoff).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(|e| anyhow!("building a BatchGetItem for table {table:?}: {e}"))?;
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| self.explain(&format!("reading flags from table {table:?}"), e))?;
            if let Some(items) = out.responses.and_then(|mut r| r.remove(table)) {
                found.extend(items);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
        }
        Err(anyhow!(
            "reading flags from table {table:?}: DynamoDB left {} key(s) unprocessed after {UNPROCESSED_ROUNDS} rounds (throttled); raise the table's read capacity or wait, then run again",
            pending.len()
        ))
    }

    /// Consistent GetItem of one flag's item, if there is one.
    async fn get(&self, client: &Client, id: &FlagId, namespace: &str) -> Result<Option<Item>> {
        let out = client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::key(namespace, &id.flag)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.explain(&format!("reading {id} from table {:?}", self.config.table), e))?;
        Ok(out.item)
    }

    /// GetItem, rewrite, PutItem conditioned on the `version` attribute read; on a failed
    /// condition, read again (the rewrite then reports the new version as stale).
    pub(super) async fn compare_and_swap(&self, id: &FlagId, rewrite: Rewrite<'_>) -> Result<(), WriteError> {
        let client = self.client().await?;
        let table = &self.config.table;
        let namespace = self.namespace(&id.project, &id.environment);
        // What the previous put tried to write: the SDK retries a put that timed out, and when
        // the first attempt landed, the retry fails its condition against our own write.
        let mut sent: Option<String> = None;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = self.get(client, id, &namespace).await?;
            let raw = match &current {
                Some(item) => Some(
                    self.item_json(item, &namespace, &id.flag)
                        .map_err(|e| anyhow!("{e}"))?,
                ),
                None => None,
            };
            if sent.is_some() && raw == sent {
                return Ok(());
            }
            if let (Some(item), Some(json)) = (&current, &raw) {
                if let Some(why) = version_conflict(item, json) {
                    return Err(anyhow!("{why}; nothing was written").into());
                }
            }
            let json = rewrite(raw.as_deref())?;
            let version = StoredFlag::parse(&json).map(|f| f.version).map_err(|e| {
                anyhow!("the rewritten flag {id} is not one relayctl can write ({e}); nothing was written")
            })?;
            let mut put = client
                .put_item()
                .table_name(table)
                .set_item(Some(Self::key(&namespace, &id.flag)))
                .item("version", AttributeValue::N(version.to_string()))
                .item("item", AttributeValue::S(json.clone()))
                .expression_attribute_names("#k", "key");
            sent = Some(json);
            // The condition pins exactly what was read: its version attribute (or its absence).
            put = match current.as_ref().and_then(|i| i.get("version")) {
                Some(observed) => put
                    .condition_expression("attribute_exists(#k) AND #v = :observed")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":observed", observed.clone()),
                None => put
                    .condition_expression("attribute_exists(#k) AND attribute_not_exists(#v)")
                    .expression_attribute_names("#v", "version"),
            };
            match put.send().await {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    continue
                }
                Err(e) => {
                    // A put that was sent and never answered may have landed: only reading the
                    // item again can tell (apply does, at once).
                    let unanswered = matches!(&e, SdkError::TimeoutError(_) | SdkError::ResponseError(_))
                        || matches!(&e, SdkError::DispatchFailure(d) if d.is_timeout());
                    let doing = format!("writing {id} to table {table:?} (namespace {namespace:?})");
                    let error = self.explain(&doing, e);
                    return Err(if unanswered {
                        WriteError::Unknown(error)
                    } else {
                        error.into()
                    });
                }
            }
        }
        Err(anyhow!(
            "writing {id} to table {table:?}: the item changed during each of {MAX_WRITE_ATTEMPTS} attempts (another writer, probably Relay, is busy); nothing was written, run apply again"
        )
        .into())
    }
}

impl DynamoEndpoint {
    /// Every item of a project/environment's namespace: a consistent Query, page by page. Each
    /// item is judged as a read of that flag judges it.
    pub(super) async fn list(&self, project: &str, environment: &str) -> Result<super::listing::Listed> {
        let client = self.client().await?;
        let table = &self.config.table;
        let namespace = self.namespace(project, environment);
        let mut flags = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = client
                .query()
                .table_name(table)
                .key_condition_expression("#ns = :ns")
                .expression_attribute_names("#ns", "namespace")
                .expression_attribute_values(":ns", AttributeValue::S(namespace.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    self.explain(&format!("listing namespace {namespace:?} of table {table:?}"), e)
                })?;
            for item in out.items() {
                let Some(key) = item.get("key").and_then(|v| v.as_s().ok()) else {
                    continue;
                };
                let raw = match self.item_json(item, &namespace, key) {
                    Ok(json) => match version_conflict(item, &json) {
                        Some(why) => Raw::Invalid(NotAFlag::new(why)),
                        None => Raw::Json(json),
                    },
                    Err(why) => Raw::Invalid(NotAFlag::new(why)),
                };
                flags.push((key.clone(), raw));
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(super::listing::Listed {
            place: format!("namespace {namespace:?} of table {table:?}"),
            flags,
        })
    }
}

/// Why an item's `version` attribute and its flag JSON's `version` disagree, if they do. The Go
/// SDK takes the attribute, the other SDKs the JSON: writing JSON version + 1 under either could
/// take the flag backwards for some of them, so such an item is never rewritten.
fn version_conflict(item: &Item, json: &str) -> Option<String> {
    let attribute = item.get("version")?;
    // A flag JSON without a usable version is refused by name when it is parsed.
    let inside = StoredFlag::parse(json).ok()?.version;
    let shown = match attribute.as_n() {
        Ok(n) if n.parse::<u64>() == Ok(inside) => return None,
        Ok(n) => excerpt(n),
        Err(_) => "not a number (N)".to_owned(),
    };
    Some(format!(
        "the item's \"version\" attribute is {shown} but its flag JSON has \"version\": {inside}; the Go SDK reads the attribute and the other SDKs the JSON, so relayctl cannot tell which version it would replace: make the two equal (LaunchDarkly's next full update rewrites the item) or leave this flag out of the overrides file"
    ))
}

/// The messages of `err` and its sources, each once, without the SDK's debug dumps (which
/// repeat raw responses).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    //! The CLI tests (tests/cli/dynamodb.rs) cover this store end to end against moto; these
    //! need to get inside a write: between its GetItem and its PutItem, or after a first failure.

    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Moto(Child);

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// moto_server on a free port; returns the endpoint.
    async fn moto() -> (Moto, String) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let moto = Moto(
            Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect(
                    "moto_server is needed by this test: pip install 'moto[server]' (or run scripts/test.sh)",
                ),
        );
        for _ in 0..300 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (moto, format!("http://127.0.0.1:{port}"))
    }

    fn target(endpoint: &str) -> DynamoEndpoint {
        let mut target = DynamoEndpoint::new(&Config {
            table: "t".into(),
            endpoint_url: Some(endpoint.into()),
            region: Some("us-east-1".into()),
            prefix: Prefix::default(),
        });
        // Explicit credentials: no test changes the process environment.
        target.credentials = Some(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ));
        target
    }

    fn id() -> FlagId {
        FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: "f".into(),
        }
    }

    fn flag_item(version: u64, on: bool) -> Item {
        let json = serde_json::json!({"key": "f", "on": on, "variations": [true, false], "offVariation": 1,
            "fallthrough": {"variation": 0}, "salt": "s", "version": version, "deleted": false});
        let mut item = DynamoEndpoint::key("features", "f");
        item.insert("version".into(), AttributeValue::N(version.to_string()));
        item.insert("item".into(), AttributeValue::S(json.to_string()));
        item
    }

    async fn put(client: &Client, item: Item) {
        client
            .put_item()
            .table_name("t")
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    /// Creates table `t` with the SDKs' key schema, holding flag `f` at v41.
    async fn create_table(client: &Client) {
        let attr = |n: &str| {
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |n: &str, t| {
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .unwrap()
        };
        client
            .create_table()
            .table_name("t")
            .attribute_definitions(attr("namespace"))
            .attribute_definitions(attr("key"))
            .key_schema(key("namespace", KeyType::Hash))
            .key_schema(key("key", KeyType::Range))
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        put(client, flag_item(41, true)).await;
    }

    /// Writes `item` from another client (another runtime, on a thread of its own), as a
    /// concurrent writer would, while `compare_and_swap` is between its read and its put.
    fn put_meanwhile(endpoint: &str, item: Item) {
        let racer = target(endpoint);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let (c, _) = racer.sdk_client().await.unwrap();
                    put(&c, item).await;
                });
            });
        });
    }

    /// Runs one compare-and-swap of v41 -> v42 (off) with `meanwhile` landing between the first
    /// read and the first put; returns its result and how often it read the flag.
    async fn swap_with(meanwhile: Item) -> (Result<(), WriteError>, usize, Item) {
        let (_moto, endpoint) = moto().await;
        let ours = target(&endpoint);
        let (client, _) = ours.sdk_client().await.unwrap();
        create_table(&client).await;
        let calls = AtomicUsize::new(0);
        let rewrite = |raw: Option<&str>| -> Result<String, WriteError> {
            let seen: serde_json::Value = serde_json::from_str(raw.unwrap()).unwrap();
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                put_meanwhile(&endpoint, meanwhile.clone());
            }
            match seen["version"].as_u64() {
                Some(41) => Ok(flag_item(42, false)["item"].as_s().unwrap().clone()),
                other => Err(WriteError::Stale(format!(
                    "the store holds {other:?} but the plan was made against v41"
                ))),
            }
        };
        let result = ours.compare_and_swap(&id(), &rewrite).await;
        let stored = ours.get(&client, &id(), "features").await.unwrap().unwrap();
        (result, calls.load(Ordering::SeqCst), stored)
    }

    #[tokio::test]
    async fn a_write_racing_between_read_and_put_is_refused_as_stale() {
        // Another writer (Relay, a colleague) writes v42 after our read, before our put.
        let (result, reads, stored) = swap_with(flag_item(42, true)).await;
        assert!(
            matches!(&result, Err(WriteError::Stale(why)) if why.ends_with("against v41")),
            "{result:?}"
        );
        assert_eq!(reads, 2, "the failed condition made it read again");
        assert_eq!(stored, flag_item(42, true), "the racing write is kept");
    }

    #[tokio::test]
    async fn a_put_that_landed_before_its_retry_failed_counts_as_written() {
        // What the SDK's retry of a timed-out put sees: the item already holds exactly what this
        // write sends (its first attempt landed), so the retry fails its condition.
        let (result, reads, stored) = swap_with(flag_item(42, false)).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(reads, 1, "the write is recognised without a second rewrite");
        assert_eq!(stored, flag_item(42, false));
    }

    #[tokio::test]
    async fn once_unreachable_later_writes_fail_at_once() {
        let (mut moto, endpoint) = moto().await;
        let target = target(&endpoint);
        let (client, _) = target.sdk_client().await.unwrap();
        create_table(&client).await;
        let rewrite = |raw: Option<&str>| -> Result<String, WriteError> { Ok(raw.unwrap().to_owned()) };
        target.compare_and_swap(&id(), &rewrite).await.unwrap();

        // The endpoint goes away in the middle of an apply.
        let _ = moto.0.kill();
        let _ = moto.0.wait();
        let first = target.compare_and_swap(&id(), &rewrite).await.unwrap_err();
        assert!(
            format!("{first:#}").contains("cannot reach DynamoDB"),
            "{first:#}"
        );
        let started = std::time::Instant::now();
        let second = target.compare_and_swap(&id(), &rewrite).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        assert!(
            format!("{second:#}").contains("unreachable earlier in this run"),
            "{second:#}"
        );
    }
}
