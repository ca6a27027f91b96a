//! The Redis layout of the LaunchDarkly SDKs and Relay (facts §1): the only file that knows it.
//!
//! Flags live in the hash `<prefix>:features`, one field per flag key holding the flag JSON.
//! relayctl reads with one HMGET per hash, all pipelined in one round trip, and writes one flag
//! at a time with the SDKs' own optimistic protocol: WATCH the hash, HGET, MULTI/HSET/EXEC, and
//! retry when EXEC returns nil because another writer (Relay) touched the hash. It never deletes
//! anything and never touches segments or `$inited`.

use super::{Found, Groups, Rewrite, WriteError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::desired::{FlagId, Prefix, DEFAULT_REDIS_PREFIX};
use anyhow::{anyhow, Context, Result};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Mutex;

/// How often a write is retried when other writers keep changing the hash under it (the Python
/// SDK uses the same bound).
const MAX_ATTEMPTS: usize = 10;

pub(super) struct RedisTarget {
    client: redis::Client,
    shown: String,
    prefix: Prefix,
    /// One connection, used by one transaction at a time: WATCH state is per connection.
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisTarget {
    pub(super) fn new(url: &str, prefix: Prefix) -> Result<Self> {
        let shown = crate::redact::url(url);
        let client = redis::Client::open(url).map_err(|e| {
            anyhow!(
                "invalid Redis URL {shown}: {}",
                e.detail().unwrap_or("cannot parse")
            )
        })?;
        Ok(RedisTarget {
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
        let prefix = self
            .prefix
            .resolve(project, environment)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
        format!("{prefix}:features")
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
