//! Test support: temp workspaces where the binary runs ([`Workspace`], and its one command
//! builder in `relayctl`), real servers on free loopback ports (`redis_server`, `moto`), a
//! fault-injecting TCP proxy to put in front of them (`proxy`), the fake LaunchDarkly
//! (`fake_ld`), the real Relay Proxy and a proxy-mode SDK (`relay`), and shared test data
//! (`fixtures`).
//!
//! A server binary that is missing makes the test fail with how to install it: nothing here
//! skips silently. Everything started here is stopped on drop.

#![allow(dead_code)]

pub mod eval_data;
pub mod fake_ld;
pub mod fixtures;
pub mod moto;
mod proxy;
mod redis_server;
mod redis_topology;
pub mod relay;
mod relayctl;

pub use proxy::{Fault, Proxy};
pub use redis_server::{set_raw, signal_pid, Dump, DumpValue, Redis};
pub use redis_topology::{Cluster, Replicated, Sentinels};
pub use relayctl::{output, Relayctl, Run};

use std::ffi::OsStr;
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

    /// `relayctl args` in this workspace, to add to (`.token()`, `.aws()`, `.env(k, v)`,
    /// `.stdin(text)`, `.on_terminal()`) and then `.run()`, `.assert()`, `.spawn(..)` or `.std()`.
    pub fn cmd(&self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Relayctl<'_> {
        Relayctl::new(self).args(args)
    }

    /// `relayctl args` as it is, run to completion: `self.cmd(args).run()`.
    pub fn run(&self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Run {
        self.cmd(args).run()
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

    /// The subjects of the journal's flag commits (not its initial commit), oldest first.
    pub fn journal_subjects(&self) -> Vec<String> {
        git(&self.path("journal"), &["log", "--reverse", "--format=%s"])
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect()
    }

    /// Waits (20 s at most) until the workspace file `rel` contains `text`.
    pub fn wait_for_text(&self, rel: &str, text: &str) {
        wait_for(&format!("{text:?} in {rel}"), Duration::from_secs(20), || {
            std::fs::read_to_string(self.path(rel))
                .unwrap_or_default()
                .contains(text)
        });
    }
}

/// Runs the system git in `dir` and returns stdout, failing the test on error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    stdout_of(
        Command::new("git").arg("-C").arg(dir).args(args),
        &format!("git {args:?}"),
    )
}

/// Runs a helper program (`what`, for messages) to completion and returns its stdout, failing the
/// test with its stderr unless it succeeded.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
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
