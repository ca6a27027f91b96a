//! Talking to the journal's remote (SPEC "Working as a team"): fetching what teammates pushed
//! and pushing what this machine wrote. Only transfers: what is fetched is combined with the
//! local history by [`super::combine`], under the journal lock.
//!
//! A network remote (ssh, https) goes through the git program, as cargo's
//! `net.git-fetch-with-cli` does: it does what `git fetch` does on this machine (ssh-agent,
//! `~/.ssh/config`, `core.sshCommand`, proxies, every credential helper), which is the
//! operator's usual set-up; relayctl's libgit2 has no network transport (see
//! [`Remote::with_cli`] for the start-up cost that saves every command). A path or `file://`
//! remote is fetched and pushed in process by libgit2, or by the git program with
//! `git_fetch_with_cli`. Both ways are bounded ([`Net::timeout`] for the whole transfer; the git
//! program is killed with its children at the deadline) and never ask on a terminal. The URL
//! reaches the git program through its environment, never its command line
//! (`ps` shows command lines to every user), and no FETCH_HEAD is written (it records the URL).
//! Every message from either is scrubbed of the URL's credentials ([`crate::git_url::scrub`]).
//!
//! What is fetched lands in tracking refs, never in the journal's own: the remote's branches
//! under `refs/remotes/origin/`, its notes under [`TRACKING_NOTES`]'s folder. Objects arrive as
//! packs indexed (and so checked) by libgit2's or git's indexer, with git's fsck of every
//! object for the git program. Pushes are never forced: a ref the remote moved meanwhile is
//! rejected ([`Pushed::Rejected`]), for the caller to fetch, combine and push again.

use crate::git_url::{scrub, Remote};
use anyhow::{anyhow, Result};
use git2::{AutotagOption, FetchOptions, PushOptions, RemoteCallbacks, Repository};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the remote's sync notes are fetched to.
pub const TRACKING_NOTES: &str = "refs/relayctl/remote-notes/relayctl-sync";

/// The refspecs of a fetch: every branch and every notes ref of the remote, into tracking refs
/// (forced there only: they are this machine's copy of the remote, never its history).
const FETCH: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/notes/*:refs/relayctl/remote-notes/*",
];

/// The tracking ref of the journal's branch `refs/heads/<name>`.
pub fn tracking(branch: &str) -> String {
    format!(
        "refs/remotes/origin/{}",
        branch.strip_prefix("refs/heads/").unwrap_or(branch)
    )
}

/// A remote and how long one transfer with it may take.
pub struct Net<'a> {
    pub remote: &'a Remote,
    pub timeout: Duration,
}

/// How a push went.
#[derive(Debug, PartialEq)]
pub enum Pushed {
    Done,
    /// The remote refused these refs because it moved (someone pushed first): fetch, combine,
    /// push again.
    Rejected(Vec<String>),
}

impl Net<'_> {
    /// Fetches the remote's branches and notes into the tracking refs of the journal `git_dir`.
    pub fn fetch(&self, git_dir: &Path) -> Result<()> {
        match self.remote.with_cli() {
            true => self
                .cli(git_dir, &["fetch", "--no-write-fetch-head", "--no-tags"], &FETCH)
                .map(|_| ()),
            false => self.libgit2_fetch(git_dir),
        }
    }

    /// Pushes each of `refs` (full names) to the same name on the remote, never forced.
    pub fn push(&self, git_dir: &Path, refs: &[String]) -> Result<Pushed> {
        let specs: Vec<String> = refs.iter().map(|r| format!("{r}:{r}")).collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        match self.remote.with_cli() {
            true => {
                let out = self.cli(git_dir, &["push", "--porcelain"], &specs)?;
                Ok(rejected_in(&out))
            }
            false => self.libgit2_push(git_dir, &specs),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "{what} {} failed: {}",
            self.remote.shown,
            scrub(&e.to_string(), self.remote).trim()
        )
    }

    /// A local transfer's callbacks: it stops at the deadline.
    fn callbacks(&self, deadline: Instant) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.transfer_progress(move |_| Instant::now() < deadline);
        callbacks
    }

    fn libgit2_fetch(&self, git_dir: &Path) -> Result<()> {
        let repo = Repository::open(git_dir)?;
        let mut remote = repo
            .remote_anonymous(&self.remote.url)
            .map_err(|e| self.failed("reaching", e))?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.callbacks(self.deadline()))
            .update_fetchhead(false)
            .download_tags(AutotagOption::None);
        remote
            .fetch(&FETCH, Some(&mut options), None)
            .map_err(|e| self.failed("fetching from", e))
    }

    fn libgit2_push(&self, git_dir: &Path, specs: &[&str]) -> Result<Pushed> {
        let repo = Repository::open(git_dir)?;
        let mut remote = repo
            .remote_anonymous(&self.remote.url)
            .map_err(|e| self.failed("reaching", e))?;
        let mut rejected = Vec::new();
        let mut callbacks = self.callbacks(self.deadline());
        callbacks.push_update_reference(|name, status| {
            if status.is_some() {
                rejected.push(name.to_owned());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let pushed = remote.push(specs, Some(&mut options));
        drop(options);
        match pushed {
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
                Ok(Pushed::Rejected(specs.iter().map(|s| s.to_string()).collect()))
            }
            Err(e) => Err(self.failed("pushing to", e)),
            Ok(()) if rejected.is_empty() => Ok(Pushed::Done),
            Ok(()) => Ok(Pushed::Rejected(rejected)),
        }
    }

    /// Runs `git <args> relayctl-journal <specs>` in `git_dir`, the URL given through git's
    /// environment, bounded by the timeout; its standard output, or why it failed. A push that the
    /// remote refused is not a failure here (its `--porcelain` output says so).
    fn cli(&self, git_dir: &Path, args: &[&str], specs: &[&str]) -> Result<String> {
        let out = tempfile::tempfile()?;
        let err = tempfile::tempfile()?;
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(git_dir)
            .args(["-c", "fetch.unpackLimit=1", "-c", "transfer.fsckObjects=true"])
            .args(args)
            .arg("relayctl-journal")
            .args(specs)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "remote.relayctl-journal.url")
            .env("GIT_CONFIG_VALUE_0", &self.remote.url)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(err.try_clone()?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| {
                anyhow!(
                    "cannot run git ({e}); a network remote (and git_fetch_with_cli) needs the git program on PATH"
                )
            })?;
        let deadline = self.deadline();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let group = format!("-{}", child.id());
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                let _ = child.wait();
                return Err(anyhow!(
                    "git {} {} took longer than {}s and was stopped",
                    args[0],
                    self.remote.shown,
                    self.timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut text = String::new();
            let _ = f.rewind().and_then(|_| f.read_to_string(&mut text));
            text
        };
        let (stdout, stderr) = (read(out), read(err));
        let refused = args[0] == "push" && stdout.lines().any(|l| l.starts_with('!'));
        if !status.success() && !refused {
            let what = if args[0] == "push" {
                "pushing to"
            } else {
                "fetching from"
            };
            return Err(self.failed(what, last_lines(&stderr)));
        }
        Ok(stdout)
    }
}

/// The refs a `git push --porcelain` output says the remote rejected.
fn rejected_in(out: &str) -> Pushed {
    let rejected: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('!'))
        .filter_map(|l| l.split('\t').nth(1))
        .map(|spec| spec.split(':').next_back().unwrap_or(spec).to_owned())
        .collect();
    match rejected.is_empty() {
        true => Pushed::Done,
        false => Pushed::Rejected(rejected),
    }
}

/// The last few lines of git's standard error: what went wrong, without its progress chatter.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_porcelain_push_output_names_the_refs_rejected() {
        let out = "To /srv/team.git\n=\trefs/notes/relayctl-sync:refs/notes/relayctl-sync\t[up to date]\n\
                   !\trefs/heads/master:refs/heads/master\t[rejected] (fetch first)\nDone\n";
        assert_eq!(
            rejected_in(out),
            Pushed::Rejected(vec!["refs/heads/master".into()])
        );
        assert_eq!(
            rejected_in("To x\n*\trefs/heads/m:refs/heads/m\t[new branch]\nDone\n"),
            Pushed::Done
        );
    }
}
