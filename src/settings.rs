//! Command line + environment (+ `.env`) -> [`Settings`]: the only module that sees clap, and
//! the only one that reads relayctl's environment variables.
//!
//! Everything below works on plain values, so tests can call commands without a command line and
//! no module reads the process environment behind its caller's back.

use crate::cli::{self, Cli};
use crate::desired::ConfigEnv;
use crate::eval::context::ContextArgs;
use crate::journal;
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Plan {
        out: Option<PathBuf>,
        json: bool,
        detailed_exitcode: bool,
    },
    Apply {
        plan_file: Option<PathBuf>,
        auto_approve: bool,
        /// `--lock-timeout`: how long to wait for the team lock.
        lock_timeout: Duration,
    },
    /// `unlock LOCK_ID`: break a team lease.
    Unlock {
        id: String,
    },
    Log {
        pending: bool,
    },
    Sync {
        dry_run: bool,
        force: bool,
        /// `--wait`: keep trying until LaunchDarkly answers and everything is synced.
        wait: Option<Wait>,
    },
    Verify,
    Show {
        selectors: Vec<String>,
        json: bool,
    },
    Import {
        flags: Vec<String>,
        write: bool,
    },
    Eval {
        flags: Vec<String>,
        contexts: ContextArgs,
        planned: bool,
        json: bool,
    },
    Status {
        selectors: Vec<String>,
        json: bool,
        /// `--watch`: refresh this often.
        watch: Option<Duration>,
    },
    /// `completions SHELL`: the script, generated from the clap definitions.
    Completions {
        script: Vec<u8>,
    },
    /// `man`: the page, generated from the clap definitions.
    Man {
        page: Vec<u8>,
    },
}

/// How `sync --wait` waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// The longest pause between two attempts (`--interval`).
    pub interval: Duration,
    /// When to give up (`--timeout`); never when `None`.
    pub timeout: Option<Duration>,
}

/// The longest pause between two attempts of `sync --wait` unless `--interval` says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// How often `status --watch` refreshes unless `--interval` says otherwise.
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Everything a command needs to know about how it was invoked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub command: Command,
    /// The overrides file.
    pub config: PathBuf,
    /// When to colour output (`--color`; `auto` honours `NO_COLOR` and terminals).
    pub color: anstream::ColorChoice,
    pub verbose: u8,
    pub quiet: bool,
    /// The settings of the overrides file that come from the environment.
    pub config_env: ConfigEnv,
    /// How long to wait for another relayctl holding the journal lock (`RELAYCTL_LOCK_TIMEOUT`).
    pub lock_wait: Duration,
    /// `RELAYCTL_AUTHOR`: the journal author when git config names none.
    pub author: Option<String>,
    /// How long a Redis server may take to answer one request (`RELAYCTL_REDIS_TIMEOUT`).
    pub redis_timeout: Duration,
    /// How long a team lease lives unless renewed (`RELAYCTL_LEASE_TTL`, 15 s).
    pub lease_ttl: Duration,
    /// How long one fetch or push of the journal may take (`RELAYCTL_GIT_TIMEOUT`, 20 s).
    pub git_timeout: Duration,
    /// `RELAYCTL_GIT_FETCH_WITH_CLI`: use the git program for the journal's remote, whatever the
    /// overrides file says (cargo's `CARGO_NET_GIT_FETCH_WITH_CLI`).
    pub git_cli: Option<bool>,
    /// How to reach LaunchDarkly's API.
    pub launchdarkly: LaunchDarkly,
    /// The environment (and `.env`), for the variables the overrides file names (SDK keys).
    env: Env,
}

/// The LaunchDarkly API access the environment gives: `LD_API_KEY` and `LD_BASE_URL`.
#[derive(Clone, Default)]
pub struct LaunchDarkly {
    /// The API access token. Never printed.
    pub token: Option<String>,
    /// `LD_BASE_URL`, which wins over the overrides file's `[launchdarkly] base_url`.
    pub base_url: Option<String>,
    /// `RELAYCTL_LD_TIMEOUT`: how long one request to LaunchDarkly may take.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for LaunchDarkly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchDarkly")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Settings {
    /// The environment variable `name` (from the environment, else `.env`), when set and not
    /// empty: for the variables the overrides file names, such as a Relay's SDK keys.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.get(name)
    }

    /// Prints a status line on stderr unless `--quiet`.
    pub fn status(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            crate::ui::out::eprintln(&message.to_string());
        }
    }

    /// How commands open the journal for writing: the lock wait, the author, and the "waiting
    /// for the lock" message on stderr unless `--quiet`.
    pub fn journal_options(&self) -> journal::Options<'_> {
        fn say(message: &str) {
            crate::ui::out::eprintln(message);
        }
        fn silent(_: &str) {}
        journal::Options {
            lock_wait: self.lock_wait,
            author: self.author.as_deref(),
            on_wait: if self.quiet { &silent } else { &say },
        }
    }
}

/// Environment variables, with a `.env` file in the working directory as a fallback (the
/// process environment wins, as relayCommander's python-dotenv did). `Debug` shows names only:
/// the values are secrets.
#[derive(Clone, Default)]
struct Env {
    dotenv: BTreeMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("dotenv", &self.dotenv.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Env {
    /// Reads `.env` from the working directory, if there is one.
    fn load() -> anyhow::Result<Env> {
        let text = match std::fs::read_to_string(".env") {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Env::default()),
            Err(e) => return Err(anyhow::anyhow!("cannot read .env in the working directory: {e}")),
        };
        let mut dotenv = BTreeMap::new();
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            let (k, v) = item.map_err(|e| dotenv_error(&text, e))?;
            dotenv.insert(k, v);
        }
        Ok(Env { dotenv })
    }

    /// The variable's value from the environment, else from `.env`; empty counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .filter(|v| !v.is_empty())
    }
}

/// Why `.env` cannot be read, naming the line and the variable but never quoting the line:
/// it is most likely the one holding the API token.
fn dotenv_error(text: &str, e: dotenvy::Error) -> anyhow::Error {
    let dotenvy::Error::LineParse(bad, at) = e else {
        return anyhow::anyhow!("cannot read .env in the working directory: {e}");
    };
    // dotenvy quotes the whole line or only its value: find the line that holds it.
    let first = bad.lines().next().unwrap_or("");
    let found = text.lines().enumerate().find(|(_, l)| l.contains(first));
    let line = found.map_or_else(String::new, |(i, _)| format!(" line {}", i + 1));
    let name: String = found
        .map_or(first, |(_, l)| l)
        .trim_start()
        .trim_start_matches("export ")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .collect();
    let name = if name.is_empty() {
        String::new()
    } else {
        format!(" (setting {name})")
    };
    anyhow::anyhow!(
        ".env in the working directory cannot be read: its{line}{name} does not parse at character {}; \
         check it is NAME=value, with a value holding spaces in closed quotes. The line is not shown: it \
         may hold a secret",
        at + 1
    )
}

/// Parses the command line and reads the environment.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Settings, SettingsError> {
    let cli = Cli::try_parse_from(args).map_err(SettingsError::Usage)?;
    let env = Env::load().map_err(SettingsError::Other)?;
    let lock_wait = seconds(&env, "RELAYCTL_LOCK_TIMEOUT", 0)?.unwrap_or(Duration::from_secs(60));
    let redis_timeout = seconds(&env, "RELAYCTL_REDIS_TIMEOUT", 1)?.unwrap_or(crate::store::REQUEST_TIMEOUT);
    let ld_timeout = seconds(&env, "RELAYCTL_LD_TIMEOUT", 1)?;
    let lease_ttl = seconds(&env, "RELAYCTL_LEASE_TTL", 1)?.unwrap_or(Duration::from_secs(15));
    let git_timeout = seconds(&env, "RELAYCTL_GIT_TIMEOUT", 1)?.unwrap_or(Duration::from_secs(20));
    let git_cli = env
        .get("RELAYCTL_GIT_FETCH_WITH_CLI")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    let command = command(cli.command)?;
    Ok(Settings {
        command,
        config: cli.config,
        color: match cli.color {
            cli::Color::Always => anstream::ColorChoice::Always,
            cli::Color::Never => anstream::ColorChoice::Never,
            cli::Color::Auto => anstream::ColorChoice::Auto,
        },
        verbose: cli.verbose,
        quiet: cli.quiet,
        config_env: ConfigEnv {
            redis_hosts: env.get("REDIS_HOSTS"),
            var: Some(std::sync::Arc::new({
                let env = env.clone();
                move |name: &str| env.get(name)
            })),
        },
        lock_wait,
        author: env.get("RELAYCTL_AUTHOR"),
        redis_timeout,
        lease_ttl,
        git_timeout,
        git_cli,
        launchdarkly: LaunchDarkly {
            token: env.get("LD_API_KEY"),
            base_url: env.get("LD_BASE_URL"),
            timeout: ld_timeout,
        },
        env,
    })
}

/// The command the command line names, as the commands take it.
fn command(command: cli::Command) -> Result<Command, SettingsError> {
    Ok(match command {
        cli::Command::Plan(a) => Command::Plan {
            out: a.out,
            json: a.json,
            detailed_exitcode: a.detailed_exitcode,
        },
        cli::Command::Apply(a) => Command::Apply {
            plan_file: a.plan_file,
            auto_approve: a.auto_approve,
            lock_timeout: a.lock_timeout,
        },
        cli::Command::Unlock(a) => Command::Unlock { id: a.id },
        cli::Command::Log(a) => Command::Log { pending: a.pending },
        cli::Command::Sync(a) => Command::Sync {
            dry_run: a.dry_run,
            force: a.force,
            wait: a.wait.then(|| Wait {
                interval: a.interval.unwrap_or(DEFAULT_INTERVAL),
                timeout: a.timeout,
            }),
        },
        cli::Command::Verify => Command::Verify,
        cli::Command::Show(a) => Command::Show {
            selectors: a.selectors,
            json: a.json,
        },
        cli::Command::Import(a) => Command::Import {
            flags: a.flags,
            write: a.write,
        },
        cli::Command::Eval(a) => eval(a),
        cli::Command::Status(a) => Command::Status {
            selectors: a.selectors,
            json: a.json,
            watch: a.watch.then(|| a.interval.unwrap_or(DEFAULT_WATCH_INTERVAL)),
        },
        cli::Command::Completions(a) => Command::Completions {
            script: cli::completions(a.shell),
        },
        cli::Command::Man => Command::Man {
            page: cli::man_page().map_err(|e| SettingsError::Other(e.into()))?,
        },
    })
}

/// `eval`'s command: the contexts as the shorthand builds them, or the `--context` values.
fn eval(a: cli::EvalArgs) -> Command {
    let contexts = match (a.user, a.context_kind, a.key) {
        (Some(key), _, _) => ContextArgs::Built {
            kind: "user".to_owned(),
            key,
            attrs: a.attr,
        },
        (None, Some(kind), Some(key)) => ContextArgs::Built {
            kind,
            key,
            attrs: a.attr,
        },
        _ => ContextArgs::Json(a.context),
    };
    Command::Eval {
        flags: a.flags,
        contexts,
        planned: a.planned,
        json: a.json,
    }
}

/// The variable `name` as a whole number of seconds, at least `min`, if set.
fn seconds(env: &Env, name: &str, min: u64) -> Result<Option<Duration>, SettingsError> {
    let Some(raw) = env.get(name) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if n >= min => Ok(Some(Duration::from_secs(n))),
        _ => {
            let least = if min > 0 {
                format!(" (at least {min})")
            } else {
                String::new()
            };
            Err(SettingsError::Other(anyhow::anyhow!(
                "{name} must be a whole number of seconds{least}, not {raw:?}"
            )))
        }
    }
}

/// Why the command line could not be turned into settings.
#[derive(Debug)]
pub enum SettingsError {
    /// clap's own output: usage errors, or `--help` / `--version`.
    Usage(clap::Error),
    Other(anyhow::Error),
}
