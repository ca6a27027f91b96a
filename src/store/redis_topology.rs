//! Where a Redis store's endpoint connects (SPEC §1 "Plain Redis keys and Redis topologies"):
//! one node, the primary a group of Sentinels names, or a cluster. The rest of the Redis code
//! sees one connection type, [`Conn`], whatever the topology.
//!
//! A node must be a primary: a read-only replica is refused naming the primary it replicates
//! from, a cluster node asks for `cluster = true`. The Sentinels are asked for the current
//! primary on every run (so a failover between plan and apply writes to the new one), and the
//! primary found is what the journal records. A cluster follows `MOVED`/`ASK` (the redis crate's
//! cluster client); a pipeline whose keys live in different slots is sent key by key, concurrently.
//!
//! Passwords ([`Auth`], `redis_auth.rs`): a URL's user and password are its server's; the
//! Sentinels' are also the primary's unless the store gives the primary's apart.

use super::redis_auth::{refused, Who};
pub use super::redis_auth::{Auth, Secret};
use futures::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisFuture, Value,
};
use std::time::Duration;

/// How the URLs of a Redis store are read.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Topology {
    /// Each URL is a server of its own that receives every change.
    #[default]
    Nodes,
    /// The URLs are Sentinels; the store is the primary they know as `master`.
    Sentinel { master: String },
    /// The URLs are seed nodes of one Redis Cluster.
    Cluster,
}

/// How long apply waits for the replicas of a primary to acknowledge a write (Redis `WAIT`).
pub(super) const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// The slots of a Redis Cluster.
const CLUSTER_SLOTS: u32 = 16384;

/// `host:port` of a URL, without scheme or credentials.
fn host_port(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
    }
}

/// A Sentinel, and how to reach the primary it names.
#[derive(Clone)]
pub(super) struct Sentinel {
    info: ConnectionInfo,
    /// The primary's user, password and database.
    primary: RedisConnectionInfo,
}

/// What an endpoint connects to.
#[derive(Clone)]
pub(super) enum Server {
    Node(redis::Client),
    Sentinel {
        sentinels: Vec<Sentinel>,
        master: String,
    },
    Cluster {
        seeds: Vec<ConnectionInfo>,
        client: ClusterClient,
    },
}

/// Why a connection was not made.
pub(super) enum Refusal {
    /// The server did not answer or could not be reached.
    Unreachable(String),
    /// It answered, and is not something relayctl may write to as configured.
    Wrong(String),
}

/// A connection to the primary of an endpoint.
#[derive(Clone)]
pub(super) struct Conn {
    inner: Inner,
    /// How many replicas the primary had when connected (0 for a cluster: not waited for).
    pub(super) replicas: usize,
    /// The primary connected to, when it is not the URL itself (Sentinel): `redis://host:port`.
    pub(super) primary: Option<String>,
}

#[derive(Clone)]
enum Inner {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

fn invalid(shown: &str, e: &redis::RedisError) -> anyhow::Error {
    anyhow::anyhow!(
        "invalid Redis URL {shown}: {}",
        e.detail().unwrap_or("cannot parse")
    )
}

impl Server {
    /// The server of `urls` (a single URL for [`Topology::Nodes`]), with the passwords `auth`
    /// gives, and how to name it.
    pub(super) fn new(urls: &[String], topology: &Topology, auth: &Auth) -> anyhow::Result<(Server, String)> {
        let parse = |url: &String| {
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| invalid(&crate::redact::url(url), &e))?;
            if let Some(Secret(password)) = &auth.password {
                info.redis.password = Some(password.clone());
            }
            Ok::<_, anyhow::Error>(info)
        };
        match topology {
            Topology::Nodes => {
                let url = &urls[0];
                let client =
                    redis::Client::open(parse(url)?).map_err(|e| invalid(&crate::redact::url(url), &e))?;
                Ok((Server::Node(client), crate::redact::url(url)))
            }
            Topology::Sentinel { master } => {
                let sentinels = urls
                    .iter()
                    .map(|url| sentinel_of(url, auth))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let shown = format!(
                    "sentinel://{}/{master}",
                    sentinels
                        .iter()
                        .map(|s| host_port(&s.info))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let master = master.clone();
                Ok((Server::Sentinel { sentinels, master }, shown))
            }
            Topology::Cluster => {
                let seeds = urls.iter().map(parse).collect::<anyhow::Result<Vec<_>>>()?;
                let shown = format!(
                    "cluster://{}",
                    seeds.iter().map(host_port).collect::<Vec<_>>().join(",")
                );
                // A few retries: enough to follow MOVED/ASK, not to wait out a node that is down.
                let client = ClusterClient::builder(seeds.clone())
                    .retries(3)
                    .build()
                    .map_err(|e| anyhow::anyhow!("cluster {shown}: {e}"))?;
                Ok((Server::Cluster { seeds, client }, shown))
            }
        }
    }

    /// A connection to the primary: each connection made within `wait`, each reply within `reply`.
    pub(super) async fn connect(&self, wait: Duration, reply: Duration) -> Result<Conn, Refusal> {
        let config = &AsyncConnectionConfig::new()
            .set_connection_timeout(wait)
            .set_response_timeout(reply);
        match self {
            Server::Node(client) => node(client, config, wait, None).await,
            Server::Sentinel { sentinels, master } => sentinel(sentinels, master, config, wait).await,
            Server::Cluster { seeds, client } => cluster(seeds, client, config, (wait, reply)).await,
        }
    }
}

/// The Sentinel of `url`, with its own password and the primary's as `auth` gives them (each
/// the URL's when not given apart).
fn sentinel_of(url: &str, auth: &Auth) -> anyhow::Result<Sentinel> {
    let mut info = url
        .into_connection_info()
        .map_err(|e| invalid(&crate::redact::url(url), &e))?;
    let mut primary = info.redis.clone();
    if let Some(Secret(password)) = &auth.password {
        primary.username = None;
        primary.password = Some(password.clone());
    }
    if let Some(Secret(password)) = &auth.sentinel_password {
        info.redis.password = Some(password.clone());
    }
    Ok(Sentinel { info, primary })
}

/// How a timeout or a failure to connect reads.
fn why(e: &redis::RedisError, wait: Duration) -> String {
    match e.is_timeout() {
        true => format!("no answer within {}s", wait.as_secs()),
        false => e.to_string(),
    }
}

fn unreachable(e: &redis::RedisError, wait: Duration) -> Refusal {
    Refusal::Unreachable(why(e, wait))
}

/// Whose password a connection to a node uses: the primary's when a Sentinel named it.
fn who(primary: &Option<String>) -> Who {
    match primary {
        Some(_) => Who::Primary,
        None => Who::Node,
    }
}

/// A connection to one node, which must be a primary outside a cluster. `primary` names it when
/// it was found through Sentinels.
async fn node(
    client: &redis::Client,
    config: &AsyncConnectionConfig,
    wait: Duration,
    primary: Option<String>,
) -> Result<Conn, Refusal> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await
        .map_err(|e| match refused(&e, who(&primary)) {
            Some(why) => Refusal::Wrong(why),
            None => unreachable(&e, wait),
        })?;
    // A cluster node first: a cluster's replica is also reached with cluster = true.
    let info: Result<String, _> = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await;
    if info.is_ok_and(|i| i.lines().any(|l| l.trim() == "cluster_enabled:1")) {
        return Err(Refusal::Wrong(
            "this is a cluster node: set cluster = true in the store (its url/urls are then the cluster's seed nodes)".into(),
        ));
    }
    let replicas = role(&mut conn, wait, who(&primary)).await?;
    Ok(Conn {
        inner: Inner::Node(conn),
        replicas,
        primary,
    })
}

/// What `ROLE` says: a primary with N replicas, else why relayctl must not write there. A server
/// that refuses `ROLE` (an ACL) counts as a primary without replicas.
async fn role(conn: &mut MultiplexedConnection, wait: Duration, who: Who) -> Result<usize, Refusal> {
    let reply: Value = match redis::cmd("ROLE").query_async(conn).await {
        Ok(reply) => reply,
        Err(e) if e.is_io_error() => return Err(unreachable(&e, wait)),
        Err(e) => match refused(&e, who) {
            Some(why) => return Err(Refusal::Wrong(why)),
            None => return Ok(0),
        },
    };
    let Value::Array(items) = reply else {
        return Ok(0);
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    };
    match text(items.first()).as_str() {
        "slave" | "replica" => {
            let primary = format!("{}:{}", text(items.get(1)), text(items.get(2)));
            Err(Refusal::Wrong(format!(
                "this is a read-only replica of the primary {primary}: point the store's url at the primary \
                 (redis://{primary}), or name its Sentinels with sentinels = [...] and master = \"...\""
            )))
        }
        "sentinel" => Err(Refusal::Wrong(
            "this is a Sentinel, not a data node: list it in sentinels = [...] with master = \"<name>\" instead of url/urls"
                .into(),
        )),
        _ => Ok(match items.get(2) {
            Some(Value::Array(replicas)) => replicas.len(),
            _ => 0,
        }),
    }
}

/// The primary the Sentinels know as `master`: each Sentinel in turn names it, until one names
/// a node that answers as a primary (right after a failover a Sentinel may still name the old
/// one, and that node may not answer yet, or already be a replica).
async fn sentinel(
    sentinels: &[Sentinel],
    master: &str,
    config: &AsyncConnectionConfig,
    wait: Duration,
) -> Result<Conn, Refusal> {
    let (mut down, mut unknown, mut tried) = (Vec::new(), Vec::new(), Vec::new());
    let mut stale = None;
    for sentinel in sentinels {
        let shown = host_port(&sentinel.info);
        let (host, port) = match ask(&sentinel.info, master, config, wait).await {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                unknown.push(shown);
                continue;
            }
            Err(Refusal::Wrong(why)) => return Err(Refusal::Wrong(format!("the Sentinel {shown}: {why}"))),
            Err(Refusal::Unreachable(why)) => {
                down.push(format!("{shown}: {why}"));
                continue;
            }
        };
        let (primary, name) = primary_at(sentinel, &host, port);
        if tried.contains(&name) {
            continue;
        }
        tried.push(name.clone());
        let client =
            redis::Client::open(primary).map_err(|e| Refusal::Wrong(format!("primary {name}: {e}")))?;
        let refusal = match node(&client, config, wait, Some(name.clone())).await {
            Ok(conn) => return Ok(conn),
            Err(refusal) => refusal,
        };
        let said = format!("the Sentinel {shown} names {name} as the primary of {master:?}");
        if let Refusal::Wrong(why) = &refusal {
            if why.contains("password") {
                return Err(Refusal::Wrong(format!("{said}, but {why}")));
            }
        }
        let after = "a failover may be under way: run again in a few seconds";
        stale.get_or_insert(match refusal {
            Refusal::Unreachable(why) => {
                Refusal::Unreachable(format!("{said}, which does not answer ({why}); {after}"))
            }
            Refusal::Wrong(why) => Refusal::Wrong(format!("{said}, but {why}; {after}")),
        });
    }
    if let Some(stale) = stale {
        return Err(stale);
    }
    if !unknown.is_empty() {
        return Err(Refusal::Wrong(format!(
            "no Sentinel knows a master named {master:?} (asked {}{}): check `master` against the name in the \
             Sentinels' `sentinel monitor` line (redis-cli -p <port> SENTINEL MASTERS)",
            unknown.join(", "),
            match down.is_empty() {
                true => String::new(),
                false => format!("; no answer from {}", down.join(", ")),
            }
        )));
    }
    Err(Refusal::Unreachable(format!(
        "none of the Sentinels answered ({})",
        down.join("; ")
    )))
}

/// Where the Sentinel `info` says the primary of `master` is (None: it knows no such master);
/// else why it did not say: it did not answer, or it refused relayctl's credentials. A Sentinel
/// holds no data: nothing else is asked.
async fn ask(
    info: &ConnectionInfo,
    master: &str,
    config: &AsyncConnectionConfig,
    wait: Duration,
) -> Result<Option<(String, u16)>, Refusal> {
    let failed = |e: redis::RedisError| match refused(&e, Who::Sentinel) {
        Some(why) => Refusal::Wrong(why),
        None => unreachable(&e, wait),
    };
    let client = redis::Client::open(info.clone()).map_err(|e| Refusal::Wrong(e.to_string()))?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await
        .map_err(failed)?;
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut conn)
        .await
        .map_err(failed)
}

/// The primary at `host:port`, reached as `sentinel` says (its TLS; the primary's credentials
/// and database), and how to name it.
fn primary_at(sentinel: &Sentinel, host: &str, port: u16) -> (ConnectionInfo, String) {
    let info = &sentinel.info;
    let mut primary = info.clone();
    primary.redis = sentinel.primary.clone();
    let (scheme, addr) = match &info.addr {
        ConnectionAddr::TcpTls {
            insecure, tls_params, ..
        } => (
            "rediss",
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
        ),
        _ => ("redis", ConnectionAddr::Tcp(host.to_owned(), port)),
    };
    primary.addr = addr;
    (primary, format!("{scheme}://{host}:{port}"))
}

/// A cluster connection, once one seed says the cluster serves every slot.
async fn cluster(
    seeds: &[ConnectionInfo],
    client: &ClusterClient,
    config: &AsyncConnectionConfig,
    (wait, reply): (Duration, Duration),
) -> Result<Conn, Refusal> {
    let mut down = Vec::new();
    let mut checked = false;
    for info in seeds {
        let shown = host_port(info);
        let conn = match redis::Client::open(info.clone()) {
            Ok(c) => c.get_multiplexed_async_connection_with_config(config).await,
            Err(e) => return Err(Refusal::Wrong(format!("seed {shown}: {e}"))),
        };
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                down.push(format!("{shown}: {}", why(&e, wait)));
                continue;
            }
        };
        let info: String = match redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await {
            Ok(info) => info,
            Err(e) if e.is_io_error() => {
                down.push(format!("{shown}: {e}"));
                continue;
            }
            Err(_) => {
                return Err(Refusal::Wrong(format!(
                "the seed {shown} is not a cluster node (cluster support disabled): remove cluster = true, \
                     or list the cluster's nodes"
            )))
            }
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':').map(str::to_owned))
                .unwrap_or_default()
        };
        let assigned: u32 = field("cluster_slots_assigned").parse().unwrap_or(0);
        if assigned < CLUSTER_SLOTS || field("cluster_state") != "ok" {
            return Err(Refusal::Wrong(format!(
                "the cluster (seed {shown}) covers {assigned} of {CLUSTER_SLOTS} slots (cluster_state:{}): keys in \
                 the other slots have no node; fix the cluster (redis-cli --cluster check / fix {shown}) and run again",
                field("cluster_state")
            )));
        }
        checked = true;
        break;
    }
    if !checked {
        return Err(Refusal::Unreachable(format!(
            "none of the cluster's seed nodes answered ({})",
            down.join("; ")
        )));
    }
    let conn = client
        .get_async_connection_with_config(
            redis::cluster::ClusterConfig::new()
                .set_connection_timeout(wait)
                .set_response_timeout(reply),
        )
        .await
        .map_err(|e| unreachable(&e, wait))?;
    Ok(Conn {
        inner: Inner::Cluster(conn),
        replicas: 0,
        primary: None,
    })
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Node(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Node(c) => c.req_packed_commands(pipeline, offset, count),
            // A plain pipeline in a cluster may span slots: one command at a time, concurrently
            // (the cluster client sends each to its node). A transaction stays one request.
            Inner::Cluster(c) if !pipeline.is_transaction() && pipeline.len() > 1 => {
                let c = c.clone();
                Box::pin(async move {
                    let sent = pipeline.cmd_iter().map(|cmd| {
                        let mut c = c.clone();
                        let mut one = redis::pipe();
                        one.add_command(cmd.clone());
                        async move { c.req_packed_commands(&one, 0, 1).await }
                    });
                    let mut out = Vec::with_capacity(pipeline.len());
                    for reply in join_all(sent).await {
                        out.extend(reply?);
                    }
                    Ok(out)
                })
            }
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Node(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// After a write: waits up to `bound` for the primary's replicas (Redis `WAIT`) and returns
    /// how many acknowledged, or None when it has none (or is a cluster).
    pub(super) async fn wait_for_replicas(&mut self, bound: Duration) -> Option<Result<usize, String>> {
        if self.replicas == 0 {
            return None;
        }
        let replies: Result<i64, _> = redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(bound.as_millis().max(1) as u64)
            .query_async(self)
            .await;
        Some(replies.map(|n| n.max(0) as usize).map_err(|e| e.to_string()))
    }
}
