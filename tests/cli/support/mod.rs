//! Test support: real servers on free loopback ports, temp workspaces, and the binary.
//!
//! A server binary that is missing makes the test fail with how to install it: nothing here
//! skips silently. Everything started here is stopped on drop.

#![allow(dead_code)]

pub mod fake_ld;
pub mod moto;

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test, saying how to install `binary`, when it is not on PATH.
pub fn require(binary: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{binary}` is needed by this test and is not on PATH. Install it with: {install} (or run scripts/test.sh, which does)")
    })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `check` succeeds, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A throwaway `redis-server` on a free loopback port, with no persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `requirepass`, when started with [`Redis::start_with_password`].
    password: Option<String>,
    /// Serves TLS only (self-signed), when started with [`Redis::start_tls`].
    tls: bool,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            password: None,
            tls: false,
        };
        r.restart();
        r
    }

    /// A server that requires `password` (AUTH); [`Redis::secret_url`] carries it.
    pub fn start_with_password(password: &str) -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            password: Some(password.to_owned()),
            tls: false,
        };
        r.restart();
        r
    }

    /// A server that speaks only TLS (a self-signed certificate made with `openssl`) and
    /// requires `password`. Its URLs are `rediss://...#insecure`, which skips certificate checks.
    pub fn start_tls(password: &str) -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            password: Some(password.to_owned()),
            tls: true,
        };
        let openssl = require("openssl", "apt-get install -y openssl");
        let out = Command::new(openssl)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(r.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        redis::cmd("HSET")
            .arg(format!("{prefix}:features"))
            .arg(flag)
            .arg(raw)
            .exec(&mut self.conn())
            .unwrap();
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
        for f in flags {
            let key = f["key"].as_str().unwrap();
            redis::cmd("HSET")
                .arg(format!("{prefix}:features"))
                .arg(key)
                .arg(f.to_string())
                .exec(&mut c)
                .unwrap();
        }
        redis::cmd("SET")
            .arg(format!("{prefix}:$inited"))
            .arg("")
            .exec(&mut c)
            .unwrap();
    }

    /// The stored JSON of `flag` under `prefix`, if any.
    pub fn flag(&self, prefix: &str, flag: &str) -> Option<Value> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(format!("{prefix}:features"))
            .arg(flag)
            .query(&mut self.conn())
            .unwrap();
        raw.map(|r| serde_json::from_str(&r).unwrap())
    }

    /// Every field of the hash as raw strings (to compare "untouched" byte for byte).
    pub fn hash(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        redis::cmd("HGETALL").arg(key).query(&mut self.conn()).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A database's content by key, as [`Redis::dump`] returns it.
pub type Dump = std::collections::BTreeMap<String, DumpValue>;

/// The exact content of one Redis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpValue {
    String(String),
    Hash(std::collections::BTreeMap<String, String>),
}

/// An overrides file with one store `relay-redis` over `redis` (prefix `ld:{project}:{environment}`)
/// and `flags` declared under `[overrides.default.production]`.
pub fn redis_overrides(redis: &[&Redis], flags: &str) -> String {
    let urls: Vec<String> = redis.iter().map(|r| format!("\"{}\"", r.secret_url())).collect();
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nurls = [{}]\nprefix = \"ld:{{project}}:{{environment}}\"\n\n[overrides.default.production]\n{flags}",
        urls.join(", ")
    )
}

/// The prefix [`redis_overrides`] gives `default/production`.
pub const PREFIX: &str = "ld:default:production";

/// A realistic flag as Relay stores it: boolean or string variations, targets, a rule.
pub fn flag(key: &str, version: u64, on: bool, variations: Value) -> Value {
    json!({
        "key": key, "on": on, "prerequisites": [],
        "targets": [{"variation": 0, "values": ["alice"]}], "contextTargets": [],
        "rules": [{"id": "rule-1", "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"], "negate": false}], "variation": 0, "trackEvents": false}],
        "fallthrough": {"variation": 0}, "offVariation": 1, "variations": variations,
        "clientSide": false, "salt": format!("salt-{key}"), "trackEvents": false, "trackEventsFallthrough": false,
        "debugEventsUntilDate": null, "version": version, "deleted": false
    })
}

/// A temp directory with an overrides file, where `relayctl` runs with a fixed author and no
/// colour, isolated from the developer's git config and environment.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(overrides: &str) -> Workspace {
        let w = Workspace {
            dir: tempfile::tempdir().unwrap(),
        };
        w.write("overrides.toml", overrides);
        w
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// `relayctl` in this workspace, with a clean environment.
    pub fn relayctl(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command())
    }

    /// The same as [`Workspace::relayctl`], as a std `Command` (to spawn several at once).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_relayctl"));
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("RELAYCTL_AUTHOR", "Test Operator <operator@example.com>")
            .env("NO_COLOR", "1")
            .env("RELAYCTL_LOCK_TIMEOUT", "30");
        cmd
    }

    /// Runs `relayctl args` in this workspace and captures everything.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.relayctl();
        cmd.args(args);
        Run::of(&mut cmd)
    }

    /// The workspace directory as text, for redaction.
    pub fn root(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The full messages (subject, body, trailers) of the journal's commits, oldest first,
    /// without the initial commit.
    pub fn journal_messages(&self) -> Vec<String> {
        let out = git(&self.path("journal"), &["log", "--reverse", "--format=%B%x00"]);
        out.split('\0')
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.starts_with("Start the relayctl journal"))
            .map(str::to_owned)
            .collect()
    }

    /// `relayctl <args>` on a pseudo-terminal (the `script` utility), with this workspace's
    /// environment: stdin, stdout and stderr are a terminal to relayctl. `args` is shell text, so
    /// it may redirect (`sync > stdout.txt`).
    pub fn on_terminal(&self, args: &str) -> Command {
        let script = require(
            "script",
            "apt-get install -y bsdutils (util-linux on newer Debian)",
        );
        let inner = self.command();
        let mut cmd = Command::new(script);
        cmd.env_clear().current_dir(self.dir.path());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        // A terminal has a type; without TERM, progress bars (indicatif) stay hidden.
        cmd.env("TERM", "xterm");
        cmd.args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_relayctl")),
            "/dev/null",
        ]);
        cmd
    }

    /// The journal's commits, oldest first, as `git log` sees them (subject and trailers).
    pub fn journal_log(&self) -> Vec<String> {
        git(
            &self.path("journal"),
            &["log", "--reverse", "--format=%s%n%(trailers)"],
        )
        .split("\n\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
    }

    /// How many commits the journal has (including its initial commit).
    pub fn journal_commits(&self) -> usize {
        if !self.path("journal").exists() {
            return 0;
        }
        git(&self.path("journal"), &["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .unwrap()
    }
}

/// The outcome of one `relayctl` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion, capturing its exit code and output.
    pub fn of(cmd: &mut assert_cmd::Command) -> Run {
        let out = cmd.output().expect("running relayctl");
        Run {
            code: out.status.code().expect("relayctl was killed by a signal"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// The whole run as one text for a snapshot, with `pairs` replaced (temp paths, ports).
    pub fn render(&self, pairs: &[(&str, &str)]) -> String {
        redact(
            &format!(
                "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
                self.code, self.stdout, self.stderr
            ),
            pairs,
        )
    }

    /// Everything the run printed, stdout then stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs the system git in `dir` and returns stdout, failing the test on error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Replaces `from` with `to` in `text`, for redacting temp paths and ports in snapshots.
pub fn redact(text: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

/// A TCP proxy in front of a Redis server that runs a hook just before it forwards the first
/// `EXEC`: a concurrent writer landing, deterministically, between relayctl's WATCH and EXEC.
pub struct ExecProxy {
    pub port: u16,
    execs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ExecProxy {
    pub fn start(upstream: u16, before_first_exec: impl FnOnce() + Send + 'static) -> ExecProxy {
        let mut once = Some(before_first_exec);
        ExecProxy::start_each(upstream, move || {
            if let Some(h) = once.take() {
                h();
            }
        })
    }

    /// Like [`ExecProxy::start`], running the hook before every `EXEC`.
    pub fn start_each(upstream: u16, before_each_exec: impl FnMut() + Send + 'static) -> ExecProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        type Hook = Box<dyn FnMut() + Send>;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let execs = Arc::new(AtomicUsize::new(0));
        let hook: Arc<Mutex<Hook>> = Arc::new(Mutex::new(Box::new(before_each_exec)));
        let counter = execs.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { break };
                let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut to_client, mut from_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
                let (hook, counter) = (hook.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buf[..n];
                        if chunk.windows(10).any(|w| w == b"$4\r\nEXEC\r\n") {
                            counter.fetch_add(1, Ordering::SeqCst);
                            (hook.lock().unwrap())();
                        }
                        if server.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(Shutdown::Write);
                });
            }
        });
        ExecProxy { port, execs }
    }

    /// The proxy's URL, to put in the overrides file.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many EXECs went through.
    pub fn execs(&self) -> usize {
        self.execs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What the LaunchDarkly SDK served for `flag` in `tests/conformance/evaluate.py`'s output:
/// (value, variation index, reason kind).
pub fn served(results: &Value, flag: &str) -> (Value, Value, Value) {
    (
        results[flag]["value"].clone(),
        results[flag]["variation_index"].clone(),
        results[flag]["reason"]["kind"].clone(),
    )
}
