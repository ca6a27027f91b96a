//! Test support: real servers on free loopback ports, temp workspaces, and the binary.
//!
//! A server binary that is missing makes the test fail with how to install it: nothing here
//! skips silently. Everything started here is stopped on drop.

#![allow(dead_code)]

pub mod fake_ld;
pub mod moto;
mod redis_server;

pub use redis_server::{Dump, DumpValue, ExecProxy, Redis};

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// What the LaunchDarkly SDK served for `flag` in `tests/conformance/evaluate.py`'s output:
/// (value, variation index, reason kind).
pub fn served(results: &Value, flag: &str) -> (Value, Value, Value) {
    (
        results[flag]["value"].clone(),
        results[flag]["variation_index"].clone(),
        results[flag]["reason"]["kind"].clone(),
    )
}
