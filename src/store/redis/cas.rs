//! Writing a batch of flags to one Redis server in two round trips, whatever its size: one
//! pipelined HMGET of every flag, the rewrite of each computed here, then one compare-and-set
//! script (EVAL, one key per call, so it works on a cluster too) per flag, all in flight at once.
//!
//! The script sets the field only if it still holds exactly the bytes read (or is still absent),
//! so a concurrent writer (Relay, LaunchDarkly's own update) is never overwritten: a flag whose
//! bytes moved in between is read again and rewritten, at most [`MAX_ATTEMPTS`] times, and a
//! version that moved is a stale plan, exactly as for a single write. Unlike WATCH on the shared
//! hash, a write to another flag of the hash does not disturb this one, so concurrent writers do
//! not make each other retry.
//!
//! Each flag's script is its own request on the multiplexed connection (they leave together): a
//! reply that came is known whatever happens to the others. One that did not (timeout, connection
//! lost) is [`WriteError::Unknown`], for apply to read back; a read that goes unanswered wrote
//! nothing.

use super::{RedisEndpoint, MAX_ATTEMPTS};
use crate::flag::FlagId;
use crate::store::redis_topology::Conn;
use crate::store::{Rewrite, WriteError};
use anyhow::anyhow;
use futures::future::join_all;
use std::collections::BTreeMap;

/// Sets field `ARGV[1]` of hash `KEYS[1]` to `ARGV[4]` only if it still holds exactly `ARGV[3]`
/// (`ARGV[2]` = "1"), or is still absent (`ARGV[2]` = "0"). Returns 1 when it set the field, 0
/// when the field had moved.
const CAS: &str = "\
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
elseif current then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
";

/// One flag ready to be set: its position in the batch, the bytes read, the new JSON.
struct Set {
    at: usize,
    hash: String,
    read: Option<Vec<u8>>,
    json: String,
}

impl RedisEndpoint {
    /// Writes every flag of `swaps` (each with its rewrite), returning one outcome per flag, in
    /// order. A flag's outcome is that of a single compare-and-swap: written, refused by its
    /// rewrite (a stale plan), failed, or unknown.
    pub(in crate::store) async fn compare_and_swap_batch(
        &self,
        swaps: &[(&FlagId, Rewrite<'_>)],
    ) -> Vec<Result<(), WriteError>> {
        let mut guard = match self.connection().await {
            Ok(guard) => guard,
            Err(e) => return swaps.iter().map(|_| Err(anyhow!("{e:#}").into())).collect(),
        };
        let mut results: Vec<Option<Result<(), WriteError>>> = swaps.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..swaps.len()).collect();
        for _ in 0..MAX_ATTEMPTS {
            let Some(conn) = guard.as_ref().filter(|_| !pending.is_empty()).cloned() else {
                break;
            };
            let read = match self.read_fields(conn.clone(), &pending, swaps).await {
                Ok(read) => read,
                Err(e) => {
                    let why = self.unanswered(&mut guard, &e).unwrap_or_else(|| e.to_string());
                    for i in pending.drain(..) {
                        let failed = anyhow!("{}: {why}; nothing was written", self.context(swaps[i].0));
                        results[i] = Some(Err(failed.into()));
                    }
                    break;
                }
            };
            let mut sets = Vec::new();
            for (at, (hash, read)) in pending.drain(..).zip(read) {
                match self.rewritten(swaps[at], read.as_deref()) {
                    Ok(json) => sets.push(Set { at, hash, read, json }),
                    Err(refused) => results[at] = Some(Err(refused)),
                }
            }
            let replies = join_all(sets.iter().map(|s| {
                let mut conn = conn.clone();
                async move { cas(s, &swaps[s.at].0.flag).query_async::<i64>(&mut conn).await }
            }))
            .await;
            for (set, reply) in sets.iter().zip(replies) {
                let id = swaps[set.at].0;
                results[set.at] = match reply {
                    Ok(1) => Some(Ok(())),
                    // The field moved since it was read: read it again.
                    Ok(_) => {
                        pending.push(set.at);
                        None
                    }
                    Err(e) => Some(Err(match self.unanswered(&mut guard, &e) {
                        Some(why) => WriteError::Unknown(anyhow!("{why} after the write (EVAL) was sent")),
                        None => anyhow!(e).context(self.context(id)).into(),
                    })),
                };
            }
        }
        for i in pending {
            let why = match guard.is_some() {
                true => format!(
                    "the flag changed during each of {MAX_ATTEMPTS} attempts (another writer, probably Relay, is busy)"
                ),
                false => format!("{} stopped answering before it could be retried", self.shown),
            };
            let failed = anyhow!(
                "{}: {why}; nothing was written, run apply again",
                self.context(swaps[i].0)
            );
            results[i] = Some(Err(failed.into()));
        }
        results
            .into_iter()
            .map(|r| r.expect("every flag has an outcome"))
            .collect()
    }

    /// How an error about writing `id` starts.
    fn context(&self, id: &FlagId) -> String {
        let hash = self.hash(&id.project, &id.environment);
        format!("writing {id} to {} (hash {hash})", self.shown)
    }

    /// The hash and current bytes of each flag at `positions` of `swaps`: one HMGET per hash,
    /// all in one round trip.
    async fn read_fields(
        &self,
        mut conn: Conn,
        positions: &[usize],
        swaps: &[(&FlagId, Rewrite<'_>)],
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, redis::RedisError> {
        let mut by_hash: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (n, &i) in positions.iter().enumerate() {
            let id = swaps[i].0;
            by_hash
                .entry(self.hash(&id.project, &id.environment))
                .or_default()
                .push(n);
        }
        let mut pipe = redis::pipe();
        for (hash, ns) in &by_hash {
            let fields: Vec<&str> = ns.iter().map(|&n| swaps[positions[n]].0.flag.as_str()).collect();
            pipe.cmd("HMGET").arg(hash).arg(fields);
        }
        let replies: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut conn).await?;
        let mut out: Vec<(String, Option<Vec<u8>>)> = vec![(String::new(), None); positions.len()];
        for ((hash, ns), values) in by_hash.into_iter().zip(replies) {
            for (n, value) in ns.into_iter().zip(values) {
                out[n] = (hash.clone(), value);
            }
        }
        Ok(out)
    }

    /// The new JSON of a flag whose stored bytes are `read`, or why it must not be written.
    fn rewritten(
        &self,
        (id, rewrite): (&FlagId, Rewrite<'_>),
        read: Option<&[u8]>,
    ) -> Result<String, WriteError> {
        match read.map(|bytes| String::from_utf8(bytes.to_vec())).transpose() {
            Ok(current) => rewrite(current.as_deref()),
            Err(e) => Err(anyhow!(
                "{}: the stored value is not a flag relayctl can rewrite safely: {}; nothing was written",
                self.context(id),
                crate::flag::NotAFlag::from(e)
            )
            .into()),
        }
    }
}

/// The EVAL of [`CAS`] that sets `set` over the bytes it read.
fn cas(set: &Set, flag: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(CAS).arg(1).arg(&set.hash).arg(flag);
    match &set.read {
        Some(bytes) => cmd.arg("1").arg(bytes.as_slice()),
        None => cmd.arg("0").arg(""),
    };
    cmd.arg(&set.json);
    cmd
}
