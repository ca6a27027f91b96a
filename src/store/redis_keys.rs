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
//! keys' outcome unknown ([`Batch::Unknown`]): the caller reads them back on a new connection
//! ([`KeyEndpoint::read_back`]).

use super::redis::{Config, RedisEndpoint};
use crate::flag::StoreTarget;
use anyhow::{anyhow, Result};
use std::time::Duration;

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

/// What a key holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    Absent,
    /// A string, as bytes.
    Value(Vec<u8>),
    /// Another Redis type (`hash`, `list`...), which relayctl does not manage.
    Other(String),
}

/// One compare-and-set: the key (without prefix), what it held at plan time (`None`: absent),
/// and what it must hold (`None`: deleted).
#[derive(Debug, Clone, Copy)]
pub struct Set<'a> {
    pub key: &'a str,
    pub from: Option<&'a [u8]>,
    pub to: Option<&'a str>,
}

/// What the server did with one [`Set`].
#[derive(Debug, Clone, PartialEq)]
pub enum SetOutcome {
    Written,
    /// The key no longer holds what the plan read: nothing was written.
    Stale(Held),
}

/// What became of a batch of sets sent together.
#[derive(Debug)]
pub enum Batch {
    /// Every set was answered, in order.
    Answered(Vec<SetOutcome>),
    /// Nothing was sent (the server cannot be reached, or did not answer earlier in the run).
    Failed(anyhow::Error),
    /// Sent, and not (fully) answered: read the keys back to learn what happened.
    Unknown(anyhow::Error),
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
    /// How plans, the journal and messages name this endpoint.
    pub fn target(&self) -> StoreTarget {
        StoreTarget {
            store: self.store.clone(),
            target: self.redis.describe(),
        }
    }

    /// The store this endpoint belongs to.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The Redis key of a declared key.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// What each of `keys` holds, in one pipelined round trip.
    pub async fn read(&self, keys: &[&str]) -> Result<Vec<Held>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut guard = self.redis.connection().await?;
        let conn = guard.as_mut().expect("connected");
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("EVAL").arg(READ).arg(1).arg(self.full_key(key));
        }
        match pipe.query_async::<Vec<Vec<Vec<u8>>>>(conn).await {
            Ok(replies) => replies.into_iter().map(held).collect(),
            Err(e) => {
                let why = self
                    .redis
                    .unanswered(&mut guard, &e)
                    .unwrap_or_else(|| e.to_string());
                Err(anyhow!("reading keys from {}: {why}", self.redis.describe()))
            }
        }
    }

    /// Sends every set of `sets` in one pipeline; see [`Batch`].
    pub async fn compare_and_set(&self, sets: &[Set<'_>]) -> Batch {
        let mut guard = match self.redis.connection().await {
            Ok(guard) => guard,
            Err(e) => return Batch::Failed(e),
        };
        let conn = guard.as_mut().expect("connected");
        let mut pipe = redis::pipe();
        for set in sets {
            let cmd = pipe.cmd("EVAL").arg(CAS).arg(1).arg(self.full_key(set.key));
            let cmd = match set.from {
                Some(from) => cmd.arg("1").arg(from),
                None => cmd.arg("0").arg(""),
            };
            match set.to {
                Some(to) => cmd.arg("1").arg(to),
                None => cmd.arg("0").arg(""),
            };
        }
        let replies = match pipe.query_async::<Vec<Vec<Vec<u8>>>>(conn).await {
            Ok(replies) => replies,
            Err(e) => {
                let why = self
                    .redis
                    .unanswered(&mut guard, &e)
                    .unwrap_or_else(|| e.to_string());
                return Batch::Unknown(anyhow!("{why} after the writes were sent"));
            }
        };
        let outcomes: Result<Vec<SetOutcome>> = replies
            .into_iter()
            .map(|reply| match reply.first().map(Vec::as_slice) {
                Some(b"ok") => Ok(SetOutcome::Written),
                _ => held(reply).map(SetOutcome::Stale),
            })
            .collect();
        match outcomes {
            Ok(outcomes) if outcomes.len() == sets.len() => Batch::Answered(outcomes),
            Ok(_) => Batch::Unknown(anyhow!(
                "the server answered a different number of writes than were sent"
            )),
            Err(e) => Batch::Unknown(e),
        }
    }

    /// After writes: the primary written to and how many replicas acknowledged (Redis `WAIT`,
    /// bounded), as a note for apply's output and the journal, and a warning when some lag.
    pub async fn replicated(&self) -> (Option<String>, Option<String>) {
        let written = self.redis.replicated().await;
        (written.note, written.warning)
    }

    /// How long [`KeyEndpoint::read_back`] may take at most.
    pub fn read_back_limit(&self) -> Duration {
        self.redis.read_back_limit()
    }

    /// What each of `keys` holds, on a new connection (the endpoint's own may still wait for
    /// the answer to a write), within [`KeyEndpoint::read_back_limit`].
    pub async fn read_back(&self, keys: &[&str]) -> Result<Vec<Held>> {
        let limit = self.read_back_limit();
        let read = async {
            let mut conn = self
                .redis
                .connect()
                .await
                .map_err(|refusal| self.redis.cannot_connect(&refusal))?;
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("EVAL").arg(READ).arg(1).arg(self.full_key(key));
            }
            let replies: Vec<Vec<Vec<u8>>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| anyhow!("reading keys back from {}: {e}", self.redis.describe()))?;
            replies.into_iter().map(held).collect()
        };
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| anyhow!("no answer within {}s", limit.as_secs()))?
    }
}

/// A script's `{type}` or `{'string', value}` reply.
fn held(reply: Vec<Vec<u8>>) -> Result<Held> {
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

/// Every endpoint of every `redis-keys` store.
pub struct KeyStores {
    endpoints: Vec<KeyEndpoint>,
}

impl KeyStores {
    /// Prepares the endpoints of `stores`; connections are opened on first use.
    pub fn open(stores: &[KeyStoreConfig], redis_timeout: Duration) -> Result<KeyStores> {
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
        Ok(KeyStores { endpoints })
    }

    /// Every endpoint, in the overrides file's order.
    pub fn endpoints(&self) -> &[KeyEndpoint] {
        &self.endpoints
    }

    /// The endpoint a plan's key change names, if the overrides file still declares it.
    pub fn find(&self, target: &StoreTarget) -> Option<&KeyEndpoint> {
        self.endpoints.iter().find(|e| e.target() == *target)
    }
}
