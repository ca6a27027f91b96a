//! The one way tests run the binary: [`Workspace::cmd`] gives a [`Relayctl`] builder over a clean,
//! isolated environment, finished by [`Relayctl::run`] (a captured [`Run`]),
//! [`Relayctl::assert`] (assert_cmd), [`Relayctl::spawn`] (a child to run beside others, kill or
//! interrupt) or [`Relayctl::std`] (a std `Command` to wire up by hand).
//!
//! The base environment holds only PATH, HOME and XDG_CONFIG_HOME (the workspace, so no git
//! config or AWS profile of the developer's leaks in), GIT_CONFIG_NOSYSTEM, a fixed
//! RELAYCTL_AUTHOR, NO_COLOR and RELAYCTL_LOCK_TIMEOUT. A test adds what it is about with
//! `.token()`, `.aws()` or `.env(k, v)`; nothing here touches the test process's own environment.

use super::fake_ld::TOKEN;
use super::moto::AWS_ENV;
use super::{require, Workspace};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_relayctl");

/// `relayctl` about to run in a [`Workspace`]: arguments, environment, standard input and
/// whether it gets a terminal. Made by [`Workspace::cmd`].
#[must_use = "a Relayctl does nothing until .run(), .assert(), .spawn() or .std()"]
pub struct Relayctl<'w> {
    workspace: &'w Workspace,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    terminal: bool,
    stdout_to: Option<PathBuf>,
    open_files: Option<u32>,
}

impl<'w> Relayctl<'w> {
    pub(super) fn new(workspace: &'w Workspace) -> Self {
        let home = workspace.dir.path();
        Relayctl {
            workspace,
            args: Vec::new(),
            env: BTreeMap::new(),
            stdin: None,
            timeout: None,
            terminal: false,
            stdout_to: None,
            open_files: None,
        }
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("RELAYCTL_AUTHOR", "Test Operator <operator@example.com>")
        .env("NO_COLOR", "1")
        .env("RELAYCTL_LOCK_TIMEOUT", "30")
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args(self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        args.into_iter().fold(self, Relayctl::arg)
    }

    /// Sets `key` (replacing the base value, if it has one).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Leaves `key` out, even a base variable or one [`Relayctl::aws`] set.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.remove(key.as_ref());
        self
    }

    /// `LD_API_KEY` set to the token the fake LaunchDarkly accepts.
    pub fn token(self) -> Self {
        self.env("LD_API_KEY", TOKEN)
    }

    /// The fake AWS credentials and region moto accepts ([`AWS_ENV`]).
    pub fn aws(self) -> Self {
        AWS_ENV.iter().fold(self, |cmd, (k, v)| cmd.env(k, v))
    }

    /// Writes `text` to standard input, then closes it ([`Relayctl::run`], [`Relayctl::assert`]).
    pub fn stdin(mut self, text: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    /// Fails the run if it takes longer than `limit` ([`Relayctl::run`], [`Relayctl::assert`]).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Runs with at most `n` open files (`ulimit -n`), as a tight service account would.
    pub fn open_files(mut self, n: u32) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Runs on a pseudo-terminal (util-linux `script`): stdin, stdout and stderr are a terminal
    /// to relayctl, and what a run captures as stdout is everything the terminal showed.
    pub fn on_terminal(mut self) -> Self {
        self.terminal = true;
        self
    }

    /// With [`Relayctl::on_terminal`]: relayctl's stdout goes to the workspace file `rel`
    /// (`relayctl sync > rel`) while stdin and stderr stay on the terminal.
    pub fn stdout_to(mut self, rel: &str) -> Self {
        self.stdout_to = Some(self.workspace.path(rel));
        self
    }

    /// Runs to completion, capturing the exit code and both streams.
    pub fn run(self) -> Run {
        Run::from(self.assert_cmd().output().expect("running relayctl"))
    }

    /// Runs to completion, for assert_cmd's `.success()`, `.code(n)` and friends.
    pub fn assert(self) -> assert_cmd::assert::Assert {
        self.assert_cmd().assert()
    }

    /// Starts it, stdin from /dev/null and the other two where given (`Stdio::piped()`, a
    /// `File`, ...), for a test that runs several at once or kills or interrupts one.
    pub fn spawn(self, stdout: impl Into<Stdio>, stderr: impl Into<Stdio>) -> Child {
        self.std()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("starting relayctl")
    }

    /// The command as a std `Command`, stdin from /dev/null, for what the other finishers do
    /// not cover (a terminal kept open, its input typed while it waits).
    pub fn std(self) -> Command {
        assert!(
            self.stdin.is_none() && self.timeout.is_none(),
            "stdin text and a timeout go with .run() or .assert(); with .std(), use its own stdin"
        );
        self.command()
    }

    fn assert_cmd(mut self) -> assert_cmd::Command {
        let (stdin, timeout) = (self.stdin.take(), self.timeout.take());
        let mut cmd = assert_cmd::Command::from_std(self.command());
        if let Some(text) = stdin {
            cmd.write_stdin(text);
        }
        if let Some(limit) = timeout {
            cmd.timeout(limit);
        }
        cmd
    }

    fn command(self) -> Command {
        let mut cmd = if self.terminal {
            let script = require(
                "script",
                "apt-get install -y bsdutils (util-linux on newer Debian)",
            );
            let mut line: Vec<String> = std::iter::once(OsStr::new(BIN))
                .chain(self.args.iter().map(OsString::as_os_str))
                .map(shell_quote)
                .collect();
            if let Some(path) = &self.stdout_to {
                line.extend([">".to_owned(), shell_quote(path.as_os_str())]);
            }
            let mut cmd = Command::new(script);
            cmd.args(["-qec", &line.join(" "), "/dev/null"]);
            cmd
        } else {
            assert!(
                self.stdout_to.is_none(),
                "stdout_to goes with on_terminal(); without a terminal, give .spawn() a File"
            );
            let mut cmd = match self.open_files {
                Some(n) => {
                    let mut sh = Command::new("sh");
                    sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                    sh
                }
                None => Command::new(BIN),
            };
            cmd.args(&self.args);
            cmd
        };
        cmd.current_dir(self.workspace.dir.path())
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null());
        if self.terminal {
            // A terminal has a type; without TERM, progress bars (indicatif) stay hidden.
            cmd.env("TERM", "xterm");
        }
        cmd
    }
}

/// `word` as one single-quoted shell word.
fn shell_quote(word: &OsStr) -> String {
    let word = word.to_str().expect("a shell word for `script` must be UTF-8");
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The outcome of one `relayctl` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("relayctl was killed by a signal"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

impl Run {
    /// The whole run as one text for a snapshot, with `pairs` replaced (temp paths, ports).
    pub fn render(&self, pairs: &[(&str, &str)]) -> String {
        super::redact(
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

/// What an assert_cmd run printed: (stdout, stderr).
pub fn output(a: &assert_cmd::assert::Assert) -> (String, String) {
    let o = a.get_output();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
