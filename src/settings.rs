//! Command line + environment (+ `.env`) -> [`Settings`]: the only module that sees clap.
//!
//! Everything below works on plain values, so tests can call commands without a command line.

use crate::cli::{self, Cli};
use crate::desired::ConfigEnv;
use crate::ui::Painter;
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
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
    },
    Log {
        pending: bool,
    },
    Sync {
        dry_run: bool,
        force: bool,
    },
    Verify,
}

/// Everything a command needs to know about how it was invoked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub command: Command,
    /// The overrides file.
    pub config: PathBuf,
    pub stdout: Painter,
    pub stderr: Painter,
    pub verbose: u8,
    pub quiet: bool,
    pub env: Env,
    /// How long to wait for another relayctl holding the journal lock.
    pub lock_wait: Duration,
}

impl Settings {
    /// Prints a status line on stderr unless `--quiet`.
    pub fn status(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// The settings of the overrides file that come from the environment.
    pub fn config_env(&self) -> ConfigEnv {
        ConfigEnv {
            redis_hosts: self.env.get("REDIS_HOSTS"),
        }
    }
}

/// Environment variables, with a `.env` file in the working directory as a fallback (the
/// process environment wins, as relayCommander's python-dotenv did).
#[derive(Debug, Clone, Default)]
pub struct Env {
    dotenv: BTreeMap<String, String>,
}

impl Env {
    /// Reads `.env` from the working directory, if there is one.
    pub fn load() -> anyhow::Result<Env> {
        let mut dotenv = BTreeMap::new();
        match dotenvy::from_path_iter(".env") {
            Ok(iter) => {
                for item in iter {
                    let (k, v) =
                        item.map_err(|e| anyhow::anyhow!("cannot read .env in the working directory: {e}"))?;
                    dotenv.insert(k, v);
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => return Err(anyhow::anyhow!("cannot read .env in the working directory: {e}")),
        }
        Ok(Env { dotenv })
    }

    /// The variable's value from the environment, else from `.env`; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .filter(|v| !v.is_empty())
    }
}

/// Parses the command line. Errors are clap's (usage, `--help`, `--version`).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Settings, SettingsError> {
    let cli = Cli::try_parse_from(args).map_err(SettingsError::Usage)?;
    let env = Env::load().map_err(SettingsError::Other)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let painter = |terminal: bool| Painter {
        enabled: match cli.color {
            cli::Color::Always => true,
            cli::Color::Never => false,
            cli::Color::Auto => terminal && !no_color,
        },
    };
    let lock_wait = env
        .get("RELAYCTL_LOCK_TIMEOUT")
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                SettingsError::Other(anyhow::anyhow!(
                    "RELAYCTL_LOCK_TIMEOUT must be a number of seconds, not {s:?}"
                ))
            })
        })
        .transpose()?
        .map_or(Duration::from_secs(60), Duration::from_secs);
    let command = match cli.command {
        cli::Command::Plan(a) => Command::Plan {
            out: a.out,
            json: a.json,
            detailed_exitcode: a.detailed_exitcode,
        },
        cli::Command::Apply(a) => Command::Apply {
            plan_file: a.plan_file,
            auto_approve: a.auto_approve,
        },
        cli::Command::Log(a) => Command::Log { pending: a.pending },
        cli::Command::Sync(a) => Command::Sync {
            dry_run: a.dry_run,
            force: a.force,
        },
        cli::Command::Verify => Command::Verify,
    };
    Ok(Settings {
        command,
        config: cli.config,
        stdout: painter(std::io::stdout().is_terminal()),
        stderr: painter(std::io::stderr().is_terminal()),
        verbose: cli.verbose,
        quiet: cli.quiet,
        env,
        lock_wait,
    })
}

/// Why the command line could not be turned into settings.
#[derive(Debug)]
pub enum SettingsError {
    /// clap's own output: usage errors, or `--help` / `--version`.
    Usage(clap::Error),
    Other(anyhow::Error),
}
