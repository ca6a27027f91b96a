//! A real `redis-server` per test on a free loopback port ([`Redis`]), started empty and killed on
//! drop, with helpers to seed, dump and restore it. Faults between relayctl and it come from
//! `support::proxy`.
//!
//! A missing `redis-server` (or `openssl`, for TLS) fails the test with the install command.

use super::{free_port, require, stdout_of, wait_for};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A throwaway `redis-server` on a free loopback port, with no persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `requirepass`, when started with [`Redis::start_with_password`].
    password: Option<String>,
    /// Serves TLS only (self-signed), when started with [`Redis::start_tls`].
    tls: bool,
    /// More `redis-server` arguments (`--replicaof`, `--cluster-enabled`), from [`Redis::start_with`].
    args: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::launch(None, false)
    }

    /// A server started with more `redis-server` arguments (a replica, a cluster node), and
    /// `password` if any.
    pub fn start_with(password: Option<&str>, args: &[String]) -> Redis {
        Redis::launch_with(password, false, args)
    }

    /// A server that requires `password` (AUTH); [`Redis::secret_url`] carries it.
    pub fn start_with_password(password: &str) -> Redis {
        Redis::launch(Some(password), false)
    }

    /// A server that speaks only TLS (a self-signed certificate made with `openssl`) and
    /// requires `password`. Its URLs are `rediss://...#insecure`, which skips certificate checks.
    pub fn start_tls(password: &str) -> Redis {
        Redis::launch(Some(password), true)
    }

    fn launch(password: Option<&str>, tls: bool) -> Redis {
        Redis::launch_with(password, tls, &[])
    }

    fn launch_with(password: Option<&str>, tls: bool, args: &[String]) -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            password: password.map(str::to_owned),
            tls,
            args: args.to_vec(),
        };
        if tls {
            let openssl = require("openssl", "apt-get install -y openssl");
            stdout_of(
                Command::new(openssl)
                    .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
                    .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
                    .args(["-keyout", "key.pem", "-out", "cert.pem"])
                    .current_dir(r.dir.path()),
                "openssl",
            );
        }
        r.restart();
        r
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        let bin = require("redis-server", "apt-get install -y redis-server");
        let child = Command::new(bin)
            .args(if self.tls {
                vec![
                    "--port".to_owned(),
                    "0".to_owned(),
                    "--tls-port".to_owned(),
                    self.port.to_string(),
                    "--tls-cert-file".to_owned(),
                    "cert.pem".to_owned(),
                    "--tls-key-file".to_owned(),
                    "key.pem".to_owned(),
                    "--tls-ca-cert-file".to_owned(),
                    "cert.pem".to_owned(),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                ]
            } else {
                vec!["--port".to_owned(), self.port.to_string()]
            })
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_owned(), p.clone()]),
            )
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let url = self.secret_url();
        wait_for(
            &format!("redis-server on port {}", self.port),
            Duration::from_secs(10),
            || {
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            },
        );
    }

    /// Kills the server (SIGKILL), as a crash or network loss would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`) to the server: SIGSTOP makes a server that accepts
    /// connections (the kernel does) and answers nothing.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.pid(), signal);
    }

    /// The server's process id, for [`signal_pid`] from a hook that owns no [`Redis`].
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn url(&self) -> String {
        match self.tls {
            true => format!("rediss://127.0.0.1:{}/#insecure", self.port),
            false => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The URL with the password in it, when the server has one (else [`Redis::url`]).
    pub fn secret_url(&self) -> String {
        match (&self.password, self.tls) {
            (Some(p), true) => format!("rediss://:{p}@127.0.0.1:{}/#insecure", self.port),
            (Some(p), false) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            (None, _) => self.url(),
        }
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.secret_url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Stores `raw` verbatim as field `flag` of `<prefix>:features` (for values that are not
    /// flags, or a concurrent writer's change).
    pub fn set_raw(&self, prefix: &str, flag: &str, raw: &str) {
        set_raw(&self.secret_url(), prefix, flag, raw);
    }

    /// Every key of the database with its exact content (strings and hashes), to compare
    /// "untouched" byte for byte and to restore a server with [`Redis::restore`].
    pub fn dump(&self) -> Dump {
        let mut c = self.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let kind: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
                let content = match kind.as_str() {
                    "string" => DumpValue::String(redis::cmd("GET").arg(&k).query(&mut c).unwrap()),
                    "hash" => DumpValue::Hash(redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap()),
                    other => panic!("dump: key {k} has type {other}, which the tests do not use"),
                };
                (k, content)
            })
            .collect()
    }

    /// Writes every key of `dump` back (after a restart, which empties the server).
    pub fn restore(&self, dump: &Dump) {
        let mut c = self.conn();
        for (k, v) in dump {
            match v {
                DumpValue::String(s) => redis::cmd("SET").arg(k).arg(s).exec(&mut c).unwrap(),
                DumpValue::Hash(h) => {
                    for (f, val) in h {
                        redis::cmd("HSET").arg(k).arg(f).arg(val).exec(&mut c).unwrap();
                    }
                }
            }
        }
    }

    /// Stores `flags` in `<prefix>:features` and sets `$inited`, as Relay's full init does.
    pub fn seed(&self, prefix: &str, flags: &[Value]) {
        let mut c = self.conn();
        seed_flags(&mut c, prefix, flags);
        redis::cmd("SET")
            .arg(format!("{prefix}:$inited"))
            .arg("")
            .exec(&mut c)
            .unwrap();
    }

    /// Stores `segments` in `<prefix>:segments`, as Relay does.
    pub fn seed_segments(&self, prefix: &str, segments: &[Value]) {
        let mut c = self.conn();
        for s in segments {
            redis::cmd("HSET")
                .arg(format!("{prefix}:segments"))
                .arg(s["key"].as_str().unwrap())
                .arg(s.to_string())
                .exec(&mut c)
                .unwrap();
        }
    }

    /// The stored JSON of `flag` under `prefix`, if any.
    pub fn flag(&self, prefix: &str, flag: &str) -> Option<Value> {
        read_flag(&mut self.conn(), prefix, flag)
    }

    /// Every field of the hash as raw strings (to compare "untouched" byte for byte).
    pub fn hash(&self, key: &str) -> BTreeMap<String, String> {
        redis::cmd("HGETALL").arg(key).query(&mut self.conn()).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// [`Redis::set_raw`] on the server at `url`, from anywhere (a `Proxy` hook owns no [`Redis`]).
pub fn set_raw(url: &str, prefix: &str, flag: &str, raw: &str) {
    let mut conn = redis::Client::open(url).and_then(|c| c.get_connection()).unwrap();
    set_flag(&mut conn, prefix, flag, raw);
}

/// Sets the field `flag` of `<prefix>:features` to `raw` through `c` (a server's connection or a
/// cluster's).
fn set_flag(c: &mut impl redis::ConnectionLike, prefix: &str, flag: &str, raw: &str) {
    redis::cmd("HSET")
        .arg(format!("{prefix}:features"))
        .arg(flag)
        .arg(raw)
        .exec(c)
        .unwrap();
}

/// Stores `flags` in `<prefix>:features` through `c`.
pub(super) fn seed_flags(c: &mut impl redis::ConnectionLike, prefix: &str, flags: &[Value]) {
    for f in flags {
        set_flag(c, prefix, f["key"].as_str().unwrap(), &f.to_string());
    }
}

/// The stored JSON of `flag` under `prefix`, if any, read through `c`.
pub(super) fn read_flag(c: &mut impl redis::ConnectionLike, prefix: &str, flag: &str) -> Option<Value> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(format!("{prefix}:features"))
        .arg(flag)
        .query(c)
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

/// Sends `signal` (`"STOP"`, `"CONT"`) to process `pid` with `kill`.
pub fn signal_pid(pid: u32, signal: &str) {
    stdout_of(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
        &format!("kill -{signal} {pid}"),
    );
}

/// A database's content by key, as [`Redis::dump`] returns it.
pub type Dump = BTreeMap<String, DumpValue>;

/// The exact content of one Redis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpValue {
    String(String),
    Hash(BTreeMap<String, String>),
}
