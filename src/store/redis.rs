//! The Redis layout of the LaunchDarkly SDKs and Relay (facts §1): the only file that knows it.
//!
//! Flags live in the hash `<prefix>:features`, one field per flag key holding the flag JSON.
//! relayctl reads with one HMGET per hash, all pipelined in one round trip, and writes one flag
//! at a time with the SDKs' own optimistic protocol: WATCH the hash, HGET, MULTI/HSET/EXEC, and
//! retry when EXEC returns nil because another writer (Relay) touched the hash. It never deletes
//! anything and never touches segments or `$inited`.

use super::{Found, Groups, Prefix, Rewrite, WriteError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::flag::FlagId;
use anyhow::{anyhow, Context, Result};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Mutex;

/// How often a write is retried when other writers keep changing the hash under it (the Python
/// SDK uses the same bound).
const MAX_ATTEMPTS: usize = 10;

/// The prefix the SDKs and Relay use when none is configured (facts §1).
const DEFAULT_PREFIX: &str = "launchdarkly";

/// A `redis` store: its servers (each one an endpoint that receives every change) and prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub urls: Vec<String>,
    pub prefix: Prefix,
}

impl Config {
    /// The prefix of a project/environment, with the SDKs' default.
    fn prefix_of(prefix: &Prefix, project: &str, environment: &str) -> String {
        prefix
            .resolve(project, environment)
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned())
    }

    pub(super) fn place(&self, project: &str, environment: &str) -> String {
        format!("prefix {:?}", Self::prefix_of(&self.prefix, project, environment))
    }

    pub(super) fn identities(&self) -> Vec<String> {
        self.urls.iter().map(|u| crate::redact::url(u)).collect()
    }
}

/// Checks that `raw` is a URL relayctl can connect to: `redis://` or `rediss://`, a host, and at
/// most a database number as its path.
pub fn check_url(raw: &str) -> Result<(), String> {
    let shown = crate::redact::url(raw);
    let after_scheme = raw.split_once("://").map_or("", |(_, rest)| rest);
    if crate::redact::userinfo(after_scheme).is_some_and(|info| info.contains(['/', '?', '#', '@'])) {
        return Err(format!(
            "{shown:?}: the user name or password holds '@', '/', '?' or '#', which end that part of a URL; \
             percent-encode them (%40, %2F, %3F, %23)"
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!("{shown:?} is not a redis:// or rediss:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("{shown:?}: the path must be a database number, like /0"));
    }
    Ok(())
}

/// The URLs of relayCommander's `REDIS_HOSTS`: `host[:port],host[:port]` (port 6379 by default).
pub fn urls_from_hosts(hosts: &str) -> Result<Vec<String>, String> {
    hosts
        .split(',')
        .map(str::trim)
        .map(|h| {
            // An entry is never echoed whole: it may carry a password (`:secret@host`).
            let shown = match h.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => h.to_owned(),
            };
            if h.contains('@') {
                return Err(format!(
                    "REDIS_HOSTS entry {shown:?} holds credentials; REDIS_HOSTS takes host[:port] only: \
                     put a password in a store's url = \"redis://:password@host:port\" instead"
                ));
            }
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| format!("REDIS_HOSTS entry {shown:?}: the port must be a number"))?,
                ),
                None => (h, 6379),
            };
            if host.is_empty() || host.contains(['/', ' ']) {
                return Err(format!("REDIS_HOSTS entry {shown:?} is not host[:port]"));
            }
            Ok(format!("redis://{host}:{port}"))
        })
        .collect()
}

pub(super) struct RedisEndpoint {
    client: redis::Client,
    shown: String,
    prefix: Prefix,
    /// One connection, used by one transaction at a time: WATCH state is per connection.
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisEndpoint {
    pub(super) fn new(url: &str, prefix: Prefix) -> Result<Self> {
        let shown = crate::redact::url(url);
        let client = redis::Client::open(url).map_err(|e| {
            anyhow!(
                "invalid Redis URL {shown}: {}",
                e.detail().unwrap_or("cannot parse")
            )
        })?;
        Ok(RedisEndpoint {
            client,
            shown,
            prefix,
            conn: Mutex::new(None),
        })
    }

    pub(super) fn describe(&self) -> String {
        self.shown.clone()
    }

    fn hash(&self, project: &str, environment: &str) -> String {
        format!(
            "{}:features",
            Config::prefix_of(&self.prefix, project, environment)
        )
    }

    async fn connection(&self) -> Result<tokio::sync::MutexGuard<'_, Option<MultiplexedConnection>>> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(REQUEST_TIMEOUT);
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| {
                    anyhow!(
                        "cannot connect to {} within {}s: {e}; check that it is up and reachable from here",
                        self.shown,
                        CONNECT_TIMEOUT.as_secs()
                    )
                })?;
            *guard = Some(conn);
        }
        Ok(guard)
    }

    /// Raw JSON per flag of each group: one HMGET per hash, all in one round trip.
    pub(super) async fn read(&self, groups: &Groups<'_>) -> Result<Found> {
        let mut guard = self.connection().await?;
        let conn = guard.as_mut().expect("connected");
        let mut pipe = redis::pipe();
        let hashes: Vec<String> = groups.keys().map(|(p, e)| self.hash(p, e)).collect();
        for (hash, flags) in hashes.iter().zip(groups.values()) {
            pipe.cmd("HMGET").arg(hash).arg(flags);
        }
        let replies: Vec<Vec<Option<String>>> = pipe
            .query_async(conn)
            .await
            .map_err(|e| anyhow!("reading {}: {e}", self.shown))?;
        Ok(groups
            .values()
            .zip(hashes.iter().zip(replies))
            .map(|(flags, (hash, values))| {
                flags
                    .iter()
                    .zip(values)
                    .map(|(flag, value)| value.ok_or_else(|| format!("no field {flag:?} in hash {hash}")))
                    .collect()
            })
            .collect())
    }

    /// WATCH / HGET / MULTI HSET EXEC, retried while other writers change the hash.
    pub(super) async fn compare_and_swap(&self, id: &FlagId, rewrite: Rewrite<'_>) -> Result<(), WriteError> {
        let hash = self.hash(&id.project, &id.environment);
        let mut guard = self.connection().await?;
        let conn = guard.as_mut().expect("connected");
        let context = || format!("writing {id} to {} (hash {hash})", self.shown);
        for _ in 0..MAX_ATTEMPTS {
            redis::cmd("WATCH")
                .arg(&hash)
                .exec_async(conn)
                .await
                .with_context(context)?;
            let current: Option<String> = redis::cmd("HGET")
                .arg(&hash)
                .arg(&id.flag)
                .query_async(conn)
                .await
                .with_context(context)?;
            let json = match rewrite(current.as_deref()) {
                Ok(json) => json,
                Err(e) => {
                    redis::cmd("UNWATCH")
                        .exec_async(conn)
                        .await
                        .with_context(context)?;
                    return Err(e);
                }
            };
            let done: Option<(i64,)> = redis::pipe()
                .atomic()
                .hset(&hash, &id.flag, json)
                .query_async(conn)
                .await
                .with_context(context)?;
            if done.is_some() {
                return Ok(());
            }
        }
        Err(anyhow!(
            "{}: the hash changed during each of {MAX_ATTEMPTS} attempts (another writer, probably Relay, is busy); nothing was written, run apply again",
            context()
        )
        .into())
    }
}

impl RedisEndpoint {
    /// Every field of a project/environment's hash: one HGETALL. Keys and values that are not
    /// UTF-8 are shown lossily (such a value is then no flag, and reads as one that is not).
    pub(super) async fn list(&self, project: &str, environment: &str) -> Result<super::listing::Listed> {
        let hash = self.hash(project, environment);
        let mut guard = self.connection().await?;
        let conn = guard.as_mut().expect("connected");
        let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&hash)
            .query_async(conn)
            .await
            .map_err(|e| anyhow!("reading hash {hash} from {}: {e}", self.shown))?;
        let text = |b: Vec<u8>| {
            String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        Ok(super::listing::Listed {
            place: format!("hash {hash}"),
            flags: fields.into_iter().map(|(k, v)| (text(k), Ok(text(v)))).collect(),
        })
    }
}
