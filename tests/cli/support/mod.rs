//! Test support: real servers on free loopback ports, temp workspaces, and the binary.
//!
//! A server binary that is missing makes the test fail with how to install it: nothing here
//! skips silently. Everything started here is stopped on drop.

#![allow(dead_code)]

pub mod fake_ld;

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
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        let bin = require("redis-server", "apt-get install -y redis-server");
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let url = self.url();
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
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
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
        let mut cmd = assert_cmd::Command::cargo_bin("relayctl").unwrap();
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
