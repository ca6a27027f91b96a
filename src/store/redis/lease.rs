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
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

/// The key of the team lease.
pub const KEY: &str = "relayctl-team-lease";

/// A Redis server to hold a lease on, with what a connection of its own needs.
#[derive(Clone)]
pub struct At {
    pub(in crate::store) server: Server,
    pub(in crate::store) shown: String,
    pub(in crate::store) timeout: Duration,
    /// The lease's one connection, kept from take to release (renewals do not connect again,
    /// and what watches the server sees one connection per lease); made again after a failure,
    /// and for each use behind Sentinels.
    pub(in crate::store) cached: Arc<Mutex<Option<Conn>>>,
}

impl At {
    /// The lease's connection, made if there is none.
    async fn conn(&self) -> Result<MappedMutexGuard<'_, Conn>> {
        let mut cached = self.cached.lock().await;
        // Behind Sentinels every use asks them for the primary again: after a failover the lease
        // is where the data is, and a demoted primary would answer for a lease it no longer has.
        if cached.is_none() || matches!(self.server, Server::Sentinel { .. }) {
            let wait = crate::store::CONNECT_TIMEOUT.min(self.timeout);
            let conn = self
                .server
                .connect(wait, self.timeout)
                .await
                .map_err(|r| match r {
                    Refusal::Unreachable(why) => anyhow!("cannot connect to {}: {why}", self.shown),
                    Refusal::Wrong(why) => anyhow!("{}: {why}", self.shown),
                })?;
            *cached = Some(conn);
        }
        Ok(MutexGuard::map(cached, |c| c.as_mut().expect("made above")))
    }

    /// `result`, its error naming the lease; a failed connection is dropped, not used again.
    fn checked<T>(&self, result: redis::RedisResult<T>) -> Result<T> {
        result.map_err(|e| {
            if let Ok(mut cached) = self.cached.try_lock() {
                *cached = None;
            }
            anyhow!("the lease on {}: {e}", self.shown)
        })
    }

    pub async fn take(&self, text: &str, ttl: Duration) -> Result<Taken> {
        let mut conn = self.conn().await?;
        let taken = async {
            let set: Option<String> = redis::cmd("SET")
                .arg(KEY)
                .arg(text)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut *conn)
                .await?;
            if set.is_some() {
                return Ok(Taken::Ours);
            }
            let (held, left): (Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(KEY)
                .cmd("PTTL")
                .arg(KEY)
                .query_async(&mut *conn)
                .await?;
            Ok(Taken::Held(
                held,
                u64::try_from(left).ok().map(Duration::from_millis),
            ))
        }
        .await;
        drop(conn);
        self.checked(taken)
    }

    /// Extends the lease to `ttl` if it still holds exactly `text`; whether it did.
    pub async fn renew(&self, text: &str, ttl: Duration) -> Result<bool> {
        let mut extend = redis::pipe();
        extend.cmd("PEXPIRE").arg(KEY).arg(ttl.as_millis().max(1) as u64);
        self.if_holding(text, extend).await
    }

    /// Deletes the lease if it holds exactly `text`; whether it did.
    pub async fn release(&self, text: &str) -> Result<bool> {
        let mut delete = redis::pipe();
        delete.cmd("DEL").arg(KEY);
        self.if_holding(text, delete).await
    }

    /// Runs `then` (one command answering 1 when it acted) as a transaction only while the
    /// lease holds exactly `text`: `WATCH`, `GET`, then `MULTI`/`EXEC`, which Redis aborts if
    /// the lease changed in between. Not a script: the apply's writes are the only scripts
    /// relayctl runs, so what watches them (a proxy, `MONITOR`) sees just those.
    async fn if_holding(&self, text: &str, mut then: redis::Pipeline) -> Result<bool> {
        let mut conn = self.conn().await?;
        let done = async {
            let () = redis::cmd("WATCH").arg(KEY).query_async(&mut *conn).await?;
            let held: Option<String> = redis::cmd("GET").arg(KEY).query_async(&mut *conn).await?;
            if held.as_deref() != Some(text) {
                let () = redis::cmd("UNWATCH").query_async(&mut *conn).await?;
                return Ok(false);
            }
            // `None` when the transaction was aborted: the lease changed after the GET.
            let done: Option<(i64,)> = then.atomic().query_async(&mut *conn).await?;
            Ok(done.is_some_and(|(n,)| n == 1))
        }
        .await;
        drop(conn);
        self.checked(done)
    }

    pub async fn read(&self) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        let read = redis::cmd("GET").arg(KEY).query_async(&mut *conn).await;
        drop(conn);
        self.checked(read)
    }
}
