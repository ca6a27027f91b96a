//! The command line, as clap sees it. Nothing outside `settings.rs` imports this module.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Change LaunchDarkly flags in the Relay Proxy's store while LaunchDarkly is down, journal every
/// change in git, and replay the journal onto LaunchDarkly when it is back.
#[derive(Debug, Parser)]
#[command(name = "relayctl", version, about, max_term_width = 100)]
pub struct Cli {
    /// The overrides file.
    #[arg(
        short = 'c',
        long = "config",
        env = "RELAYCTL_CONFIG",
        default_value = "overrides.toml",
        global = true
    )]
    pub config: PathBuf,
    /// When to colour the output (NO_COLOR is honoured by `auto`).
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    /// Say more about what is happening.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only data and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read the stores and print the changes needed to match the overrides file.
    Plan(PlanArgs),
    /// Write the changes to the stores, one journal commit per changed flag.
    Apply(ApplyArgs),
    /// Show the journal, newest first, with each commit's sync status.
    Log(LogArgs),
    /// Replay unsynced journal commits onto LaunchDarkly, refusing to overwrite changes made there.
    Sync(SyncArgs),
    /// Compare LaunchDarkly's current state with the journal's latest state per flag.
    Verify,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan (JSON, with the observed versions) for `relayctl apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when there are changes, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `relayctl plan --out`: apply exactly it, without asking.
    pub plan_file: Option<PathBuf>,
    /// Apply without asking for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Show only commits not yet synced to LaunchDarkly.
    #[arg(long)]
    pub pending: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only read LaunchDarkly: print what would be sent and what conflicts; send and note nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay flags even when LaunchDarkly changed them during the outage (conflicts).
    #[arg(long)]
    pub force: bool,
    /// Keep trying until LaunchDarkly answers and every journal commit is synced. Start it right
    /// after the first apply: the Relay Proxy replaces the store as soon as LaunchDarkly is back.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: the longest pause between two attempts (the first ones come sooner) [default: 30s].
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = duration)]
    pub interval: Option<Duration>,
    /// With --wait: give up after this long, leaving the rest pending (exit 1) [default: never].
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = duration)]
    pub timeout: Option<Duration>,
}

/// A duration such as `30s`, `5m` or `1h30m`, more than zero.
fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; expected a duration such as 30s, 5m or 1h"))?;
    if d.is_zero() {
        return Err("must be more than zero, such as 30s, 5m or 1h".into());
    }
    Ok(d)
}
