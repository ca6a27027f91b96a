//! The Redis layout of the LaunchDarkly SDKs and Relay (facts §1): the only file that knows it.
//!
//! Flags live in the hash `<prefix>:features`, one field per flag key holding the flag JSON.
//! relayctl reads with one HMGET per hash, all pipelined in one round trip, and writes a batch of
//! flags in two round trips (see [`cas`]): one HMGET, then per flag a compare-and-set script that
//! sets the field only if it still holds exactly the bytes read, retried when another writer
//! (Relay) changed that flag in between. It never deletes anything and never writes segments
//! (`<prefix>:segments`, read for `relayctl eval` only) or `$inited`. Values are read as bytes:
//! one that is not text is a problem of its flag, not of the read.
//!
//! Every request is bounded by the endpoint's timeout. A server that does not answer (timeout,
//! connection lost) is remembered for the rest of the run: later requests fail at once instead
//! of each waiting the timeout out again. A write whose script went out unanswered is
//! [`WriteError::Unknown`], for the caller to resolve with [`RedisEndpoint::read_back`], which
//! uses a connection of its own.

mod cas;
pub(crate) mod lease;

pub use super::redis_topology::{Auth, Secret, Topology};
use super::redis_topology::{Conn, Refusal, Server, REPLICA_WAIT};
use super::{Groups, ItemKind, Prefix, Raw, Reads, CONNECT_TIMEOUT};
use crate::redact::{self, Parsed};
use anyhow::{anyhow, Result};
use redis::{ErrorKind, RedisError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::Mutex;

/// How often a write is retried when other writers keep changing the flag under it (the Python
/// SDK uses the same bound).
const MAX_ATTEMPTS: usize = 10;

/// The prefix the SDKs and Relay use when none is configured (facts §1).
const DEFAULT_PREFIX: &str = "launchdarkly";

/// A `redis` store: its servers (each one an endpoint that receives every change; or the
/// Sentinels, or a cluster's seed nodes, as `topology` says) and prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub urls: Vec<String>,
    pub prefix: Prefix,
    pub topology: Topology,
    /// Passwords given apart from the URLs.
    pub auth: Auth,
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
        match self.topology {
            Topology::Nodes => self.urls.iter().map(|u| redact::url(u)).collect(),
            _ => self.endpoints(super::REQUEST_TIMEOUT).map_or_else(
                |_| self.urls.iter().map(|u| redact::url(u)).collect(),
                |e| e.iter().map(RedisEndpoint::describe).collect(),
            ),
        }
    }

    /// The endpoints of this store: one per URL, or one for the Sentinels' primary or the cluster.
    pub(super) fn endpoints(&self, timeout: Duration) -> Result<Vec<RedisEndpoint>> {
        match self.topology {
            Topology::Nodes => self
                .urls
                .iter()
                .map(|url| {
                    RedisEndpoint::with(
                        std::slice::from_ref(url),
                        (&self.topology, &self.auth),
                        self.prefix.clone(),
                        timeout,
                    )
                })
                .collect(),
            _ => Ok(vec![RedisEndpoint::with(
                &self.urls,
                (&self.topology, &self.auth),
                self.prefix.clone(),
                timeout,
            )?]),
        }
    }
}

/// Checks that `raw` is a URL relayctl can connect to: `redis://` or `rediss://`, a host, and at
/// most a database number as its path, and that it reads one way only ([`redact::parse`]): a
/// password that would be cut short or changed by the URL parser is refused, saying how to write
/// it.
pub fn check_url(raw: &str) -> Result<(), String> {
    let shown = redact::url(raw);
    if raw.contains(char::is_control) {
        return Err(format!(
            "{shown:?} holds a tab, a line break or another control character, which the URL parser drops \
             (a password would not be the one written): percent-encode it (%09 for a tab, %0A for a line break)"
        ));
    }
    let url = match redact::parse(raw) {
        Parsed::Clear(url) => url,
        Parsed::Ambiguous { .. } => {
            return Err(format!(
            "{shown:?}: the user name or password holds '/', '?', '#' or '@' where it ends that part of a \
                 URL; percent-encode them (%2F, %3F, %23, %40)"
        ))
        }
        Parsed::Invalid => {
            let why = url::Url::parse(raw)
                .err()
                .map_or_else(String::new, |e| format!(": {e}"));
            return Err(format!("{shown:?} is not a URL{why}"));
        }
    };
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
/// An entry that is not that is named by its position, never shown: what follows its `:` may be
/// a password put in the wrong place.
pub fn urls_from_hosts(hosts: &str) -> Result<Vec<String>, String> {
    let entries: Vec<&str> = hosts.split(',').map(str::trim).collect();
    let count = entries.len();
    let which = |i: usize| format!("REDIS_HOSTS entry {} of {count}", i + 1);
    entries
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let url = format!("redis://{h}");
            if h.contains('@') {
                return Err(format!(
                    "{} ({}) holds credentials; REDIS_HOSTS takes host[:port] only: put the password in a \
                     store's password_env (or its url = \"redis://:password@host:port\") instead",
                    which(i),
                    redact::url(&url)
                ));
            }
            let plain = url::Url::parse(&url).ok().filter(|u| {
                u.host_str().is_some_and(|h| !h.is_empty())
                    && u.path().is_empty()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            match plain {
                Some(u) => Ok(format!(
                    "redis://{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port().unwrap_or(6379)
                )),
                None => Err(format!(
                    "{} is not host[:port] with a port from 1 to 65535 (the entry is not shown: it may hold a \
                     password); REDIS_HOSTS takes host[:port],host[:port]",
                    which(i)
                )),
            }
        })
        .collect()
}

pub(super) struct RedisEndpoint {
    server: Server,
    shown: String,
    prefix: Prefix,
    /// How long the server may take to answer one request.
    timeout: Duration,
    /// One connection, shared by every request (they are pipelined on it).
    conn: Mutex<Option<Conn>>,
    /// Why the server did not answer (or could not be reached), once that happened: later requests in this run fail at once
    /// instead of each waiting the timeout out (1,000 flags would take hours).
    unreachable: OnceLock<String>,
    /// Set once a write's replicas did not all acknowledge it in time: later writes of the run
    /// do not wait for them again (each wait would take the whole bound), until a new primary.
    lagging: AtomicBool,
}

impl RedisEndpoint {
    /// The endpoint of `urls` read as `topology` says (one URL for [`Topology::Nodes`]), with
    /// the passwords `auth` gives.
    pub(super) fn with(
        urls: &[String],
        (topology, auth): (&Topology, &Auth),
        prefix: Prefix,
        timeout: Duration,
    ) -> Result<Self> {
        let (server, shown) = Server::new(urls, topology, auth)?;
        Ok(RedisEndpoint {
            server,
            shown,
            prefix,
            timeout,
            conn: Mutex::new(None),
            unreachable: OnceLock::new(),
            lagging: AtomicBool::new(false),
        })
    }

    pub(super) fn describe(&self) -> String {
        self.shown.clone()
    }

    /// Where this server holds a team lease, connecting by itself (`store/lease.rs`).
    pub(super) fn lease_at(&self) -> lease::At {
        lease::At {
            server: self.server.clone(),
            shown: self.shown.clone(),
            timeout: self.timeout,
            cached: Default::default(),
        }
    }

    fn hash(&self, project: &str, environment: &str) -> String {
        self.hash_of(project, environment, ItemKind::Flag)
    }

    /// The hash holding the items of `kind` (`<prefix>:features`, `<prefix>:segments`).
    fn hash_of(&self, project: &str, environment: &str, kind: ItemKind) -> String {
        format!(
            "{}:{}",
            Config::prefix_of(&self.prefix, project, environment),
            kind.store_name()
        )
    }

    /// Connecting may take this long: the connect timeout, or the request timeout if shorter.
    fn connect_timeout(&self) -> Duration {
        CONNECT_TIMEOUT.min(self.timeout)
    }

    /// How long [`RedisEndpoint::read_back`] may take: a connection and one request.
    pub(super) fn read_back_limit(&self) -> Duration {
        self.connect_timeout() + self.timeout
    }

    /// Fails at once when the server did not answer earlier in this run.
    fn answering(&self) -> Result<()> {
        match self.unreachable.get() {
            Some(why) => Err(anyhow!(
                "not attempted: {} did not answer earlier in this run ({why}); run apply again once it answers",
                self.shown
            )),
            None => Ok(()),
        }
    }

    /// A new connection to the primary, bounded by the timeouts; else why not.
    pub(super) async fn connect(&self) -> Result<Conn, Refusal> {
        self.server.connect(self.connect_timeout(), self.timeout).await
    }

    /// Why [`RedisEndpoint::connect`] failed, as an error naming the server.
    pub(super) fn cannot_connect(&self, refusal: &Refusal) -> anyhow::Error {
        match refusal {
            Refusal::Unreachable(why) => anyhow!(
                "cannot connect to {}: {why}; check that it is up and reachable from here",
                self.shown
            ),
            Refusal::Wrong(why) => anyhow!("{}: {why}", self.shown),
        }
    }

    /// The endpoint's connection, opened on first use. A server that cannot be reached is
    /// remembered as not answering.
    pub(super) async fn connection(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Conn>>> {
        self.answering()?;
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let conn = self.connect().await.map_err(|refusal| {
                if let Refusal::Unreachable(why) = &refusal {
                    let _ = self.unreachable.set(format!("cannot connect: {why}"));
                }
                self.cannot_connect(&refusal)
            })?;
            *guard = Some(conn);
        }
        Ok(guard)
    }

    /// When `e` says the server did not answer (a timeout or a lost connection, not an error
    /// reply): remembers it for the rest of the run, drops the connection, and returns why.
    pub(super) fn unanswered(&self, conn: &mut Option<Conn>, e: &RedisError) -> Option<String> {
        // A reply that cannot be parsed leaves as little known as none at all.
        if !(e.is_io_error() || e.kind() == ErrorKind::ParseError) {
            return None;
        }
        let why = match e.is_timeout() {
            true => format!("no reply within {}s", self.timeout.as_secs()),
            false => format!("connection lost: {e}"),
        };
        let _ = self.unreachable.set(why.clone());
        *conn = None;
        Some(why)
    }

    /// Raw value per flag of each group: one HMGET per hash, all in one round trip.
    pub(super) async fn read(&self, groups: &Groups<'_>) -> Result<Reads> {
        let mut guard = self.connection().await?;
        let (pipe, hashes) = self.hmget(groups);
        let conn = guard.as_mut().expect("connected");
        match pipe.query_async(conn).await {
            Ok(replies) => Ok(held(groups, &hashes, replies)),
            Err(e) => {
                let why = self.unanswered(&mut guard, &e).unwrap_or_else(|| e.to_string());
                Err(anyhow!("reading {}: {why}", self.shown))
            }
        }
    }

    /// [`RedisEndpoint::read`] on a new connection, the same one round trip: the endpoint's own
    /// connection may still be waiting for the replies to writes.
    pub(super) async fn read_back(&self, groups: &Groups<'_>) -> Result<Reads> {
        let mut conn = self
            .connect()
            .await
            .map_err(|refusal| self.cannot_connect(&refusal))?;
        let (pipe, hashes) = self.hmget(groups);
        let replies = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| match e.is_timeout() {
                true => anyhow!(
                    "reading {}: no reply within {}s",
                    self.shown,
                    self.timeout.as_secs()
                ),
                false => anyhow!("reading {}: {e}", self.shown),
            })?;
        Ok(held(groups, &hashes, replies))
    }

    /// One HMGET per group's hash, in one pipeline; with the hashes, in the groups' order.
    fn hmget(&self, groups: &Groups<'_>) -> (redis::Pipeline, Vec<String>) {
        let mut pipe = redis::pipe();
        let hashes: Vec<String> = groups.keys().map(|(p, e)| self.hash(p, e)).collect();
        for (hash, flags) in hashes.iter().zip(groups.values()) {
            pipe.cmd("HMGET").arg(hash).arg(flags);
        }
        (pipe, hashes)
    }
}

/// The raw value per flag of each group, from the replies to [`RedisEndpoint::hmget`].
fn held(groups: &Groups<'_>, hashes: &[String], replies: Vec<Vec<Option<Vec<u8>>>>) -> Reads {
    groups
        .values()
        .zip(hashes.iter().zip(replies))
        .map(|(flags, (hash, values))| {
            flags
                .iter()
                .zip(values)
                .map(|(flag, value)| {
                    Raw::from(value.ok_or_else(|| format!("no field {flag:?} in hash {hash}")))
                })
                .collect()
        })
        .collect()
}

impl RedisEndpoint {
    /// Every field of a project/environment's hash: one HGETALL. A key that is not UTF-8 is
    /// shown lossily; a value that is not is no flag, and reads as such.
    pub(super) async fn list(&self, project: &str, environment: &str) -> Result<super::listing::Listed> {
        let hash = self.hash(project, environment);
        let mut guard = self.connection().await?;
        let conn = guard.as_mut().expect("connected");
        let fields: Vec<(Vec<u8>, Vec<u8>)> = match redis::cmd("HGETALL").arg(&hash).query_async(conn).await {
            Ok(fields) => fields,
            Err(e) => {
                let why = self.unanswered(&mut guard, &e).unwrap_or_else(|| e.to_string());
                return Err(anyhow!("reading hash {hash} from {}: {why}", self.shown));
            }
        };
        Ok(super::listing::Listed {
            place: format!("hash {hash}"),
            flags: fields
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), Raw::from(Ok(v))))
                .collect(),
        })
    }
}

impl RedisEndpoint {
    /// The fields `keys` of the hash of `kind` (flags or segments): one HMGET, for evaluation.
    pub(super) async fn read_items(
        &self,
        project: &str,
        environment: &str,
        kind: ItemKind,
        keys: &[String],
    ) -> Result<Vec<Raw>> {
        let hash = self.hash_of(project, environment, kind);
        let mut guard = self.connection().await?;
        let conn = guard.as_mut().expect("connected");
        let values: Vec<Option<Vec<u8>>> =
            match redis::cmd("HMGET").arg(&hash).arg(keys).query_async(conn).await {
                Ok(values) => values,
                Err(e) => {
                    let why = self.unanswered(&mut guard, &e).unwrap_or_else(|| e.to_string());
                    return Err(anyhow!("reading hash {hash} from {}: {why}", self.shown));
                }
            };
        Ok(keys
            .iter()
            .zip(values)
            .map(|(key, value)| Raw::from(value.ok_or_else(|| format!("no field {key:?} in hash {hash}"))))
            .collect())
    }
}

impl RedisEndpoint {
    /// After a batch of writes the server answered: the primary written to (when Sentinels named
    /// it) and how many of its replicas acknowledged the writes within [`REPLICA_WAIT`] (Redis
    /// `WAIT`), as a note for apply's output and the journal, and a warning when some lag.
    ///
    /// A write that not every replica acknowledged is only the primary's: it is lost if that
    /// primary stops being the primary (a failover promotes a replica that lacks it). So then the
    /// primary is asked again (the Sentinels, or the node's `ROLE`), and when it is no longer the
    /// same primary, or cannot be told, the batch's writes are in doubt: `Err` says why, for
    /// apply to read them back from whoever is primary now (the next request connects anew).
    pub(super) async fn replicated(&self) -> Result<super::Written, String> {
        let mut guard = self.conn.lock().await;
        let Some(conn) = guard.as_mut() else {
            return Ok(super::Written::default());
        };
        let (primary, replicas) = (conn.primary.clone(), conn.replicas);
        let mut notes: Vec<String> = primary.iter().map(|p| format!("primary {p}")).collect();
        let plural = |n: usize| if n == 1 { "replica" } else { "replicas" };
        // Within the request timeout, which bounds every reply.
        let bound = REPLICA_WAIT.min(self.timeout / 2);
        let acked = match self.lagging.load(Ordering::Relaxed) {
            _ if replicas == 0 => return Ok(written(notes, None)),
            true => None,
            false => conn.wait_for_replicas(bound).await,
        };
        let warning = match acked {
            Some(Ok(acked)) if acked >= replicas => {
                notes.push(format!("{acked} of {replicas} {} acknowledged", plural(replicas)));
                return Ok(written(notes, None));
            }
            Some(Ok(acked)) => {
                notes.push(format!("{acked} of {replicas} {} acknowledged", plural(replicas)));
                format!(
                    "only {acked} of the {replicas} {} of {} acknowledged within {}s: they lag behind the \
                     primary, which holds the write (later writes of this run do not wait for them)",
                    plural(replicas),
                    self.shown,
                    bound.as_secs_f32()
                )
            }
            Some(Err(why)) => {
                notes.push(format!("{replicas} {} not confirmed", plural(replicas)));
                format!(
                    "waiting for the replicas of {} failed ({why}); the primary holds the write",
                    self.shown
                )
            }
            None => {
                notes.push(format!(
                    "{replicas} {} not waited for (they lagged earlier in this run)",
                    plural(replicas)
                ));
                return self
                    .still_primary(&mut guard, primary)
                    .await
                    .map(|()| written(notes, None));
            }
        };
        self.lagging.store(true, Ordering::Relaxed);
        self.still_primary(&mut guard, primary).await?;
        Ok(written(notes, Some(warning)))
    }

    /// Whether the node written to (`primary`, as the Sentinels named it; the URL's node when
    /// none did) is still the primary; else why the writes it alone holds are in doubt. Drops
    /// the connection when it is not, so the next request finds the primary anew.
    async fn still_primary(&self, conn: &mut Option<Conn>, primary: Option<String>) -> Result<(), String> {
        let written_to = primary.clone().unwrap_or_else(|| self.shown.clone());
        let why = match self.connect().await {
            Ok(now) if now.primary == primary => return Ok(()),
            Ok(now) => format!(
                "written to the primary {written_to}, which stopped being the primary ({} is now) before every \
                 replica acknowledged it",
                now.primary.unwrap_or_default()
            ),
            Err(Refusal::Wrong(why)) => format!(
                "written to {written_to}, which is no longer a primary ({why}) and was so before every replica \
                 acknowledged it"
            ),
            Err(Refusal::Unreachable(why)) => format!(
                "written to {written_to} before every replica acknowledged it, and whether it is still the \
                 primary cannot be told ({why})"
            ),
        };
        *conn = None;
        self.lagging.store(false, Ordering::Relaxed);
        Err(why)
    }
}

/// What the store adds about a batch: its notes, one line, and a warning.
fn written(notes: Vec<String>, warning: Option<String>) -> super::Written {
    super::Written {
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        warning,
    }
}
