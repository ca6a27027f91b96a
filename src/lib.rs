//! relayctl: change LaunchDarkly flags in the Relay Proxy's persistent store while LaunchDarkly
//! is down, journal every change in git, and replay the journal onto LaunchDarkly when it is back.
//!
//! Data flows one way:
//!
//! ```text
//! overrides.toml ──load──▶ Desired ─┐
//!                                    ├─plan()──▶ Plan ──apply()──▶ store writes ─▶ journal commit (git)
//! store(s) ──read──▶ Observed ──────┘                                              │
//!                                                                                  ▼
//!                         LaunchDarkly REST API ◀──sync()── unsynced journal commits (git notes mark done)
//! ```
//!
//! [`run`] is the whole program: parse the command line, build the runtime, dispatch, and print
//! any error once, with its causes.

pub mod apply;
mod cli;
pub mod commands;
pub mod desired;
pub mod flag;
pub mod interrupt;
pub mod journal;
pub mod launchdarkly;
pub mod plan;
pub mod redact;
pub mod settings;
pub mod store;
pub mod sync;
pub mod ui;

use settings::{Command, Settings, SettingsError};
use std::ffi::OsString;
use std::process::ExitCode;

/// The process exit status (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or nothing to do.
    Success = 0,
    /// An error.
    Error = 1,
    /// Something is pending: changes to apply, conflicts or failures left, mismatches found.
    Pending = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Runs relayctl with `args` (including the program name) and returns the exit status.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    // rustls cannot pick a crypto provider by itself once several are compiled in (the AWS SDK
    // brings its own): choose ring explicitly, before any rediss:// connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = match settings::parse(args) {
        Ok(s) => s,
        Err(SettingsError::Usage(e)) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Error
            } else {
                Exit::Success
            }
            .into();
        }
        Err(SettingsError::Other(e)) => {
            print_error(&e, false);
            return Exit::Error.into();
        }
    };
    match execute(&settings) {
        Ok(exit) => exit.into(),
        Err(e) => {
            print_error(&e, settings.stderr.enabled);
            Exit::Error.into()
        }
    }
}

fn execute(settings: &Settings) -> anyhow::Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match &settings.command {
        Command::Plan {
            out,
            json,
            detailed_exitcode,
        } => commands::plan(settings, &rt, out.as_deref(), *json, *detailed_exitcode),
        Command::Apply {
            plan_file,
            auto_approve,
        } => commands::apply_cmd(settings, &rt, plan_file.as_deref(), *auto_approve),
        Command::Log { pending } => commands::log(settings, *pending),
        Command::Sync { dry_run, force } => commands::sync(settings, &rt, *dry_run, *force),
        Command::Verify => commands::verify(settings, &rt),
    }
}

/// Prints `error: ...` and the chain of causes, once, on stderr.
fn print_error(e: &anyhow::Error, color: bool) {
    let label = if color {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    };
    eprintln!("{label} {e}");
    for cause in e.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
}
