//! Redis as production runs it, from real `redis-server` processes on free loopback ports: a
//! primary with replicas ([`Replicated`]), the same watched by three Sentinels ([`Sentinels`]),
//! and a three-primary cluster ([`Cluster`]). Every wait is bounded and says what it waits for.

use super::{free_port, redis_server, require, stdout_of, wait_for, Redis};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a topology may take to settle (replicas in sync, a failover seen by every Sentinel).
const SETTLE: Duration = Duration::from_secs(30);

/// The URL of the server at `port`, with `password` if any.
fn url(port: u16, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    }
}

/// What a command on the server at `url` answers, as a string (`INFO`, `CLUSTER INFO`).
fn query_text(url: &str, args: &[&str]) -> Option<String> {
    let mut c = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<String>(&mut c).ok()
}

/// A primary and its replicas (`--replicaof`), every replica in sync when started.
pub struct Replicated {
    pub primary: Redis,
    pub replicas: Vec<Redis>,
}

impl Replicated {
    pub fn start(replicas: usize) -> Replicated {
        Replicated::start_with(replicas, None)
    }

    /// Every server requiring `password` (the replicas authenticate with it too).
    pub fn start_with(replicas: usize, password: Option<&str>) -> Replicated {
        // Every server authenticates to its primary: after a failover the old primary replicates too.
        let auth: Vec<String> = password
            .iter()
            .flat_map(|p| ["--masterauth".to_owned(), (*p).to_owned()])
            .collect();
        let primary = Redis::start_with(password, &auth);
        let mut of = vec![
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port.to_string(),
        ];
        of.extend(auth);
        let replicas: Vec<Redis> = (0..replicas).map(|_| Redis::start_with(password, &of)).collect();
        eprintln!(
            "waiting (at most {SETTLE:?}) for {} replica(s) to sync",
            replicas.len()
        );
        wait_for("the replicas to be online", SETTLE, || {
            let info = query_text(&primary.secret_url(), &["INFO", "replication"]).unwrap_or_default();
            info.lines().filter(|l| l.contains("state=online")).count() == replicas.len()
        });
        Replicated { primary, replicas }
    }

    /// Waits (at most [`SETTLE`]) until every replica has what the primary holds (`WAIT`).
    pub fn sync(&self) {
        eprintln!("waiting (at most {SETTLE:?}) for the replicas to acknowledge the primary's writes");
        let acked: usize = redis::cmd("WAIT")
            .arg(self.replicas.len())
            .arg(SETTLE.as_millis() as u64)
            .query(&mut self.primary.conn())
            .unwrap();
        assert_eq!(
            acked,
            self.replicas.len(),
            "replicas that acknowledged within {SETTLE:?}"
        );
    }
}

/// One `redis-server --sentinel` process.
struct Sentinel {
    port: u16,
    /// Its own `requirepass`, if any.
    password: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn url(&self) -> String {
        url(self.port, self.password.as_deref())
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary with one replica, watched by three Sentinels as [`Sentinels::MASTER`]; the primary
/// and replica require [`Sentinels::PASSWORD`], and so do the Sentinels unless started with
/// another password or none ([`Sentinels::start_with`]). Failovers are forced
/// ([`Sentinels::failover`]): a primary that stops answering is only noticed after 30 s.
pub struct Sentinels {
    pub nodes: Replicated,
    sentinels: Vec<Sentinel>,
}

impl Sentinels {
    pub const MASTER: &'static str = "mymaster";
    pub const PASSWORD: &'static str = "s3ntinel-secret";

    pub fn start() -> Sentinels {
        Sentinels::start_with(Some(Self::PASSWORD))
    }

    /// Sentinels requiring `password` (none: `None`) in front of servers requiring
    /// [`Sentinels::PASSWORD`].
    pub fn start_with(password: Option<&str>) -> Sentinels {
        let nodes = Replicated::start_with(1, Some(Self::PASSWORD));
        let bin = require("redis-server", "apt-get install -y redis-server");
        let sentinels: Vec<Sentinel> = (0..3)
            .map(|_| {
                let port = free_port();
                let dir = tempfile::tempdir().unwrap();
                let conf = dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n{own}\
                         sentinel monitor {m} 127.0.0.1 {primary} 2\n\
                         sentinel auth-pass {m} {pw}\n\
                         sentinel down-after-milliseconds {m} 30000\n\
                         sentinel failover-timeout {m} 4000\n",
                        dir = dir.path().display(),
                        own = password.map_or_else(String::new, |p| format!("requirepass \"{p}\"\n")),
                        m = Self::MASTER,
                        pw = Self::PASSWORD,
                        primary = nodes.primary.port
                    ),
                )
                .unwrap();
                let child = Command::new(&bin)
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("starting redis-server --sentinel");
                Sentinel {
                    port,
                    password: password.map(str::to_owned),
                    child,
                    _dir: dir,
                }
            })
            .collect();
        let s = Sentinels { nodes, sentinels };
        eprintln!("waiting (at most {SETTLE:?}) for 3 Sentinels to see the primary and its replica");
        for sentinel in &s.sentinels {
            wait_for("a Sentinel to know the replica", SETTLE, || {
                replicas_known(&sentinel.url()) > 0
            });
        }
        s
    }

    /// The Sentinels' URLs, for `sentinels = [...]`: with their own password, if they have one.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Sentinel::url).collect()
    }

    /// The Sentinels' URLs with `password` in them, whatever the Sentinels require.
    pub fn urls_with(&self, password: Option<&str>) -> Vec<String> {
        self.sentinels.iter().map(|s| url(s.port, password)).collect()
    }

    /// The port each Sentinel names as the primary.
    pub fn primary_ports(&self) -> Vec<Option<u16>> {
        self.sentinels
            .iter()
            .map(|s| {
                let mut c = redis::Client::open(s.url())
                    .and_then(|c| c.get_connection())
                    .ok()?;
                let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(Self::MASTER)
                    .query(&mut c)
                    .ok()?;
                addr.map(|(_, port)| port)
            })
            .collect()
    }

    /// Forces a failover (`SENTINEL FAILOVER`) and waits until every Sentinel names the former
    /// replica as the primary and it says it is one.
    pub fn failover(&self) {
        self.start_failover();
        self.failed_over();
    }

    /// Forces a failover (`SENTINEL FAILOVER`), once the Sentinel accepts it.
    pub fn start_failover(&self) {
        let new = self.nodes.replicas[0].port;
        eprintln!("forcing a failover to port {new}");
        let mut c = redis::Client::open(self.sentinels[0].url())
            .unwrap()
            .get_connection()
            .unwrap();
        // NOGOODSLAVE until the Sentinel has fresh news of the replica: ask again.
        wait_for("SENTINEL FAILOVER to be accepted", SETTLE, || {
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(Self::MASTER)
                .exec(&mut c)
                .is_ok()
        });
    }

    /// Waits until every Sentinel names the former replica as the primary and it says it is one.
    pub fn failed_over(&self) {
        let new = self.nodes.replicas[0].port;
        eprintln!("waiting at most {SETTLE:?} for every Sentinel to name port {new} as the primary");
        wait_for("every Sentinel to name the new primary", SETTLE, || {
            self.primary_ports().iter().all(|p| *p == Some(new))
                && query_text(&self.nodes.replicas[0].secret_url(), &["INFO", "replication"])
                    .is_some_and(|i| i.contains("role:master"))
        });
    }
}

/// How many replicas the Sentinel at `url` knows for [`Sentinels::MASTER`].
fn replicas_known(url: &str) -> usize {
    let Ok(mut c) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return 0;
    };
    redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(Sentinels::MASTER)
        .query::<Vec<redis::Value>>(&mut c)
        .map_or(0, |r| r.len())
}

/// Three cluster-enabled primaries, every slot assigned (`redis-cli --cluster create`), each
/// requiring [`Cluster::PASSWORD`].
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

fn cluster_node(password: Option<&str>) -> Redis {
    let mut args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(
        password
            .iter()
            .flat_map(|p| ["--masterauth".to_owned(), (*p).to_owned()]),
    );
    Redis::start_with(password, &args)
}

impl Cluster {
    pub const PASSWORD: &'static str = "c1uster-secret";

    pub fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3).map(|_| cluster_node(Some(Self::PASSWORD))).collect();
        let cli = require("redis-cli", "apt-get install -y redis-tools");
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        stdout_of(
            Command::new(cli)
                .args(["-a", Self::PASSWORD, "--no-auth-warning"])
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"]),
            "redis-cli --cluster create",
        );
        eprintln!("waiting (at most {SETTLE:?}) for the cluster to be ok on every node");
        wait_for("cluster_state:ok on every node", SETTLE, || {
            nodes.iter().all(|n| {
                query_text(&n.secret_url(), &["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            })
        });
        Cluster { nodes }
    }

    /// One cluster-enabled node that serves only slots 0-999: a cluster with slots not covered.
    pub fn partial() -> Redis {
        let node = cluster_node(None);
        redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(999)
            .exec(&mut node.conn())
            .unwrap();
        node
    }

    /// The nodes' URLs, with the password.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::secret_url).collect()
    }

    fn conn(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.urls())
            .and_then(|c| c.get_connection())
            .expect("a cluster connection")
    }

    /// Stores `flags` in `<prefix>:features` wherever the cluster keeps that key.
    pub fn seed(&self, prefix: &str, flags: &[Value]) {
        redis_server::seed_flags(&mut self.conn(), prefix, flags);
    }

    /// The cluster slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].conn())
            .unwrap()
    }

    /// The stored JSON of `flag` under `prefix`, if any.
    pub fn flag(&self, prefix: &str, flag: &str) -> Option<Value> {
        redis_server::read_flag(&mut self.conn(), prefix, flag)
    }
}
