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
//! [`run`] is the whole program: parse the command line, build the runtime, dispatch to
//! `commands`, and print any error once, with its causes. Below `commands`, no module knows
//! about settings or exit codes.

mod apply;
mod cli;
mod commands;
mod desired;
mod escape;
mod eval;
mod exit;
mod flag;
mod git_url;
mod import;
mod interrupt;
mod journal;
mod json_text;
mod key;
mod kind;
mod launchdarkly;
mod lease;
mod names;
mod plan;
#[cfg(test)]
mod proptests;
mod redact;
mod relay;
mod select;
mod settings;
mod show;
mod status;
mod store;
mod sync;
mod team;
mod ui;

use exit::Exit;
use settings::SettingsError;
use std::ffi::OsString;
use std::process::ExitCode;

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
            print_error(&e);
            return Exit::Error.into();
        }
    };
    settings.color.write_global();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| commands::run(&settings, &rt));
    // What stdout still buffers is written now; a write to it that failed fails the run, unless
    // the command already stopped on that failure and said so.
    let stdout = ui::out::finish();
    match (result, stdout) {
        (Ok(exit), Ok(())) => exit.into(),
        (Ok(_), Err(e)) => {
            print_error(&e.into());
            Exit::Error.into()
        }
        (Err(e), stdout) => {
            print_error(&e);
            if let Err(failed) = stdout {
                if !e.chain().any(|c| c.is::<ui::out::StdoutError>()) {
                    print_error(&failed.into());
                }
            }
            Exit::Error.into()
        }
    }
}

/// Prints `error: ...` and the chain of causes, once, on stderr.
fn print_error(e: &anyhow::Error) {
    ui::out::eprintln(&format!("{} {e}", ui::paint(ui::ERROR, "error:")));
    for cause in e.chain().skip(1) {
        ui::out::eprintln(&format!("caused by: {cause}"));
    }
}
