//! Plain Redis keys (`type = "redis-keys"`, SPEC §1): the only file that knows how relayctl reads
//! and writes them. It reuses the `redis` store's connection handling ([`RedisEndpoint`]: URL
//! rules, TLS, passwords, timeouts, a server that stopped answering remembered for the run).
//!
//! Each key is `<prefix><key>`, a Redis string. Every read and write is one small Lua script per
//! key (`EVAL` with that one key, so it works wherever a key lives, cluster slots included),
//! pipelined per batch: a read returns the key's type with its value, so a key holding a hash
//! or a list is reported as such instead of failing the whole read; a write is a compare-and-set
//! that checks, atomically in the server, that the key still holds exactly the bytes read at
//! plan time (or is still absent), and only then SETs or DELs it. Nothing else is touched.
//!
//! A pipeline that got no complete answer (timeout, connection lost, an error reply) leaves its
//! keys' outcome unknown ([`WriteError::Unknown`]): the apply engine reads them back on a new
//! connection (`read` with `fresh`).

use super::redis::{Config, RedisEndpoint};
use super::{Endpoint, WriteError, Written};
use crate::key::{show_stored, Held, Key, KeyChange, KeyId};
use crate::kind::StoreTarget;
use anyhow::{anyhow, Result};
use std::time::Duration;

/// How many keys go into one pipeline.
const BATCH: usize = 256;

/// A `redis-keys` store: its servers (every one receives every change) and the key prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStoreConfig {
    pub name: String,
    pub redis: Config,
    /// Put before every key; empty for none.
    pub prefix: String,
}

impl KeyStoreConfig {
    /// What two `redis-keys` stores must not share: the same keys of the same server.
    pub fn identities(&self) -> Vec<String> {
        self.redis
            .urls
            .iter()
            .map(|u| format!("{} (keys prefixed {:?})", crate::redact::url(u), self.prefix))
            .collect()
    }
}

/// Reads a key's type and, for a string, its value.
const READ: &str = "local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'string' then return {t, redis.call('GET', KEYS[1])} end
return {t}";

/// Compare-and-set. ARGV: [1] '1' when a value is expected ([2]), '0' for an absent key;
/// [3] '1' to SET [4], '0' to DEL. Returns {'ok'}, or {type} / {'string', value} when stale.
const CAS: &str = "local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then return {t} end
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then
    if cur then return {'string', cur} end
    return {'none'}
  end
elseif cur then return {'string', cur} end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[4]) else redis.call('DEL', KEYS[1]) end
return {'ok'}";

/// One server of a `redis-keys` store.
pub struct KeyEndpoint {
    store: String,
    prefix: String,
    redis: RedisEndpoint,
}

impl KeyEndpoint {
    /// Where this endpoint's server holds a team lease.
    pub(super) fn lease_at(&self) -> super::redis::lease::At {
        self.redis.lease_at()
    }

    /// How messages name this endpoint's server.
    pub(super) fn shown(&self) -> String {
        self.redis.describe()
    }

    /// The endpoints of `stores`, in order; connections are opened on first use.
    pub(super) fn open(stores: &[KeyStoreConfig], redis_timeout: Duration) -> Result<Vec<KeyEndpoint>> {
        let mut endpoints = Vec::new();
        for s in stores {
            for redis in s.redis.endpoints(redis_timeout)? {
                endpoints.push(KeyEndpoint {
                    store: s.name.clone(),
                    prefix: s.prefix.clone(),
                    redis,
                });
            }
        }
        Ok(endpoints)
    }

    /// The Redis key of a declared key.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Sends `pipe` on this endpoint's connection, or (`fresh`) on a new one: the endpoint's own
    /// may still wait for the answer to a write.
    async fn query(&self, pipe: &redis::Pipeline, fresh: bool) -> Result<Vec<Vec<Vec<u8>>>> {
        if fresh {
            let mut conn = self
                .redis
                .connect()
                .await
                .map_err(|refusal| self.redis.cannot_connect(&refusal))?;
            return pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| anyhow!("reading keys back from {}: {e}", self.redis.describe()));
        }
        let mut guard = self.redis.connection().await?;
        let conn = guard.as_mut().expect("connected");
        pipe.query_async(conn).await.map_err(|e| {
            let why = self
                .redis
                .unanswered(&mut guard, &e)
                .unwrap_or_else(|| e.to_string());
            anyhow!("reading keys from {}: {why}", self.redis.describe())
        })
    }

    /// Sends a compare-and-set of every change of `changes` in one pipeline: one outcome each;
    /// `Err` for all when nothing could be sent, or (unknown) when no complete answer came.
    async fn compare_and_set(
        &self,
        changes: &[&KeyChange],
    ) -> Result<Vec<Result<(), WriteError>>, WriteError> {
        let mut guard = self
            .redis
            .connection()
            .await
            .map_err(|e| WriteError::Failed(anyhow!("{e:#}; nothing was written")))?;
        let conn = guard.as_mut().expect("connected");
        let mut pipe = redis::pipe();
        for c in changes {
            let cmd = pipe.cmd("EVAL").arg(CAS).arg(1).arg(self.full_key(&c.key));
            let cmd = match &c.from {
                Some(from) => cmd.arg("1").arg(&from.0),
                None => cmd.arg("0").arg(""),
            };
            match &c.to {
                Some(to) => cmd.arg("1").arg(to),
                None => cmd.arg("0").arg(""),
            };
        }
        let replies = match pipe.query_async::<Vec<Vec<Vec<u8>>>>(conn).await {
            Ok(replies) if replies.len() == changes.len() => replies,
            Ok(_) => {
                return Err(WriteError::Unknown(anyhow!(
                    "the server answered a different number of writes than were sent"
                )))
            }
            Err(e) => {
                let why = self
                    .redis
                    .unanswered(&mut guard, &e)
                    .unwrap_or_else(|| e.to_string());
                return Err(WriteError::Unknown(anyhow!("{why} after the writes were sent")));
            }
        };
        replies
            .into_iter()
            .zip(changes)
            .map(|(reply, c)| match reply.first().map(Vec::as_slice) {
                Some(b"ok") => Ok(Ok(())),
                _ => parse(reply)
                    .map(|held| Err(stale(c, &held)))
                    .map_err(WriteError::Unknown),
            })
            .collect()
    }
}

impl Endpoint<Key> for KeyEndpoint {
    fn store(&self) -> &str {
        &self.store
    }

    fn target(&self, _: &KeyId) -> StoreTarget {
        StoreTarget {
            store: self.store.clone(),
            target: self.redis.describe(),
        }
    }

    fn keeps(&self, id: &KeyId) -> bool {
        id.store == self.store
    }

    /// What each key holds, one pipeline per [`BATCH`] keys.
    async fn read(&self, ids: &[&KeyId], fresh: bool) -> Result<Vec<Held>> {
        let mut held = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("EVAL").arg(READ).arg(1).arg(self.full_key(&id.key));
            }
            for reply in self.query(&pipe, fresh).await? {
                held.push(parse(reply)?);
            }
        }
        Ok(held)
    }

    /// One pipeline per [`BATCH`] keys; after one that wrote, the primary written to and how
    /// many replicas acknowledged (Redis `WAIT`, bounded), as a note, and a warning when some lag.
    async fn write(&self, changes: &[&KeyChange]) -> Vec<Result<Written, WriteError>> {
        let mut results = Vec::with_capacity(changes.len());
        for batch in changes.chunks(BATCH) {
            match self.compare_and_set(batch).await {
                Ok(outcomes) => {
                    results.extend(Written::replicated(outcomes, || self.redis.replicated()).await)
                }
                Err(e) => results.extend(batch.iter().map(|_| Err(e.again()))),
            }
        }
        results
    }

    fn read_back_limit(&self) -> Duration {
        self.redis.read_back_limit()
    }
}

/// The stale-plan refusal of `c`, whose key now holds `held`.
fn stale(c: &KeyChange, held: &Held) -> WriteError {
    WriteError::Stale(format!(
        "the key holds {held} but the plan was made against {}",
        show_stored(c.from.as_ref())
    ))
}

/// A script's `{type}` or `{'string', value}` reply.
fn parse(reply: Vec<Vec<u8>>) -> Result<Held> {
    let mut parts = reply.into_iter();
    match (parts.next().as_deref(), parts.next()) {
        (Some(b"none"), None) => Ok(Held::Absent),
        (Some(b"string"), Some(value)) => Ok(Held::Value(value)),
        (Some(kind), None) if kind != b"string" => {
            Ok(Held::Other(String::from_utf8_lossy(kind).into_owned()))
        }
        _ => Err(anyhow!(
            "the server's answer to a key read is not what relayctl sent for"
        )),
    }
}
