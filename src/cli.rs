//! The command line, as clap sees it. Nothing outside `settings.rs` imports this module.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
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
    /// Show what the stores hold now, by value, and whether it is the declared state.
    Show(ShowArgs),
    /// Print declarations of flags' current state (or add them to the overrides file).
    Import(ImportArgs),
    /// What a context gets from flags now (or after apply, --planned), on each store target, by
    /// LaunchDarkly's own evaluation engine.
    Eval(EvalArgs),
    /// Show the declared state's whole chain: every store target, every listed Relay, LaunchDarkly.
    Status(StatusArgs),
    /// Break a team lock (a lease in the stores) that a crashed apply left behind.
    Unlock(UnlockArgs),
    /// Print the shell completion script for SHELL.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
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
    /// How long to wait for the team lock another operator's apply holds on the stores.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The lease's id, as the message of the apply that waited for it names it.
    #[arg(value_name = "LOCK_ID")]
    pub id: String,
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

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// What to show: every flag of an environment, or one flag; a redis-keys store's declared
    /// keys (STORE or _keys/STORE), or one key (_keys/STORE/KEY). Default: every environment the
    /// overrides file names, and every store's declared keys.
    #[arg(value_name = "PROJECT/ENV[/FLAG]")]
    pub selectors: Vec<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which declared flags: every declared flag of an environment, or one flag. Default: every
    /// declared flag.
    #[arg(value_name = "PROJECT/ENV[/FLAG]")]
    pub selectors: Vec<String>,
    /// Print one JSON document (one per refresh with --watch).
    #[arg(long)]
    pub json: bool,
    /// Refresh until every store and Relay serves the declared state and LaunchDarkly has it
    /// (or Ctrl-C).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how often to refresh [default: 2s].
    #[arg(long, value_name = "DURATION", requires = "watch", value_parser = duration)]
    pub interval: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The flags whose current state to declare (or plain Redis keys, as _keys/STORE/KEY).
    #[arg(value_name = "PROJECT/ENV/FLAG", required = true)]
    pub flags: Vec<String>,
    /// Add the declarations to the overrides file, keeping its comments and formatting.
    #[arg(long)]
    pub write: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["context", "user", "key"]))]
pub struct EvalArgs {
    /// The flags to evaluate.
    #[arg(value_name = "PROJECT/ENV/FLAG", required = true)]
    pub flags: Vec<String>,
    /// The context: LaunchDarkly's context JSON (single- or multi-kind), @FILE, or - (standard
    /// input); a JSON array evaluates each of its contexts. May be repeated.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["user", "key", "context_kind", "attr"])]
    pub context: Vec<String>,
    /// Shorthand for a context of kind "user" with this key.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["key", "context_kind"])]
    pub user: Option<String>,
    /// With --key: the kind of the context (org, device, ...).
    #[arg(long, value_name = "KIND", requires = "key")]
    pub context_kind: Option<String>,
    /// With --context-kind: the key of the context.
    #[arg(long, value_name = "KEY", requires = "context_kind")]
    pub key: Option<String>,
    /// An attribute of a --user / --key context, as name=value (JSON when it parses as JSON:
    /// age=42, beta=true; else a string: country=NZ). May be repeated.
    #[arg(long, value_name = "NAME=VALUE")]
    pub attr: Vec<String>,
    /// Evaluate the state the overrides file declares, as apply would write it.
    #[arg(long)]
    pub planned: bool,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// The completion script for `shell`, generated from these definitions.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "relayctl", &mut out);
    out
}

/// The man page (roff), generated from these definitions: relayctl's page, then a section per
/// command with its synopsis and options, so the one page is the whole reference.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        out.extend(format!(".SH \"COMMAND: RELAYCTL {}\"\n", name.to_uppercase()).as_bytes());
        // The global options are on relayctl's own page; here only the command's own.
        let own = sub
            .clone()
            .mut_args(|a| if a.is_global_set() { a.hide(true) } else { a });
        let man = clap_mangen::Man::new(own.clone());
        let mut section = Vec::new();
        man.render_description_section(&mut section)?;
        man.render_synopsis_section(&mut section)?;
        if own.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut section)?;
        }
        // Each command's parts are subsections of its section.
        let section = String::from_utf8_lossy(&section)
            .replace(".SH DESCRIPTION", ".SS Description")
            .replace(".SH SYNOPSIS", ".SS Synopsis")
            .replace(".SH OPTIONS", ".SS Options");
        out.extend(section.as_bytes());
    }
    // The subcommands list names sections of this page, not pages of their own.
    let page = String::from_utf8_lossy(&out)
        .replace("relayctl\\-", "relayctl ")
        .replace("(1)\n", "\n");
    Ok(page.into_bytes())
}
