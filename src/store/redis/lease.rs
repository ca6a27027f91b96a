//! The team lease on a Redis server (see `store/lease.rs`): one key per server and database,
//! [`KEY`], holding the lease's JSON, expired by the server itself.
//!
//! [`KEY`] never meets LaunchDarkly's data: every key the SDKs and Relay use is
//! `<prefix>:<kind>` (`:features`, `:segments`, `:$inited`, big segments' `:big_segment...`),
//! always with a colon, and [`KEY`] has none; Relay's full re-initialisation deletes only its
//! own hashes. A `redis-keys` store may not declare it (the overrides file is refused).

use super::super::redis_topology::{Conn, Refusal, Server};
use super::super::LeaseTaken as Taken;
use anyhow::{anyhow, Result};
use std::time::Duration;

/// The key of the team lease.
pub const KEY: &str = "relayctl-team-lease";

/// Renews the lease only while it still holds this run's text.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Deletes the lease only while it still holds the given text.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// A Redis server to hold a lease on, with what a connection of its own needs.
#[derive(Clone)]
pub struct At {
    pub(in crate::store) server: Server,
    pub(in crate::store) shown: String,
    pub(in crate::store) timeout: Duration,
}

impl At {
    async fn conn(&self) -> Result<Conn> {
        let wait = crate::store::CONNECT_TIMEOUT.min(self.timeout);
        self.server
            .connect(wait, self.timeout)
            .await
            .map_err(|r| match r {
                Refusal::Unreachable(why) => anyhow!("cannot connect to {}: {why}", self.shown),
                Refusal::Wrong(why) => anyhow!("{}: {why}", self.shown),
            })
    }

    fn failed(&self, e: redis::RedisError) -> anyhow::Error {
        anyhow!("the lease on {}: {e}", self.shown)
    }

    pub async fn take(&self, text: &str, ttl: Duration) -> Result<Taken> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(KEY)
            .arg(text)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        if set.is_some() {
            return Ok(Taken::Ours);
        }
        let (held, left): (Option<String>, i64) = redis::pipe()
            .cmd("GET")
            .arg(KEY)
            .cmd("PTTL")
            .arg(KEY)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let left = u64::try_from(left).ok().map(Duration::from_millis);
        Ok(Taken::Held(held, left))
    }

    pub async fn renew(&self, text: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn().await?;
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(KEY)
            .arg(text)
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(renewed == 1)
    }

    /// Deletes the lease if it holds exactly `text`; whether it did.
    pub async fn release(&self, text: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        let deleted: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(KEY)
            .arg(text)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(deleted == 1)
    }

    pub async fn read(&self) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        redis::cmd("GET")
            .arg(KEY)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }
}
