//! Terminal concerns: colour, the confirmation prompt, progress bars, and ([`out`]) the one
//! writer of stdout and stderr.
//!
//! Human output is rendered with styles embedded (`anstyle`) by pure functions, and printed
//! through [`out`], which escapes what came from outside and hands the rest to `anstream`, which
//! drops the styles when colour is off (`--color`, `NO_COLOR`, not a terminal): one decision,
//! made once in `lib::run`. Data goes to stdout, status to stderr.

pub mod out;

pub use crate::escape::printable;
use anstyle::{AnsiColor, Style};
use std::io::{BufRead, IsTerminal};

/// A change in a plan or an apply (`~`).
pub const CHANGE: Style = AnsiColor::Yellow.on_default();
/// Something that failed.
pub const ERROR: Style = AnsiColor::Red.on_default().bold();
/// Something to pay attention to.
pub const WARNING: Style = AnsiColor::Yellow.on_default().bold();

/// The widest a column is padded to for alignment: a longer cell (a 200 KB flag key from a
/// store) is printed as it is, past its column, instead of every line being padded to it.
pub const ALIGN_MOST: usize = 80;

/// The width a column of `cells` (each its width in characters) is padded to.
pub fn column_width(cells: impl IntoIterator<Item = usize>) -> usize {
    cells.into_iter().filter(|&w| w <= ALIGN_MOST).max().unwrap_or(0)
}

/// `text` in `style`.
pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// The warning apply prints once per target before reading back `writes` (e.g. "the writes of
/// 3 flags"; `one` when it is a single write) that the target did not answer, or (`answered`)
/// answered but are in doubt (`why`).
pub fn read_back_warning(
    target: &dyn std::fmt::Display,
    (writes, one, answered): (&str, bool, bool),
    why: &str,
    within: std::time::Duration,
) -> String {
    let (them, they) = match one {
        true => ("it", "it was"),
        false => ("them", "they were"),
    };
    let what = match answered {
        true => format!("took {writes}, but they may not stand ({why})."),
        false => format!("did not answer {writes} ({why}); its other writes in this run fail at once."),
    };
    format!(
        "{} {target} {what} Reading {them} back on a new connection (at most {}s) to learn whether {they} \
         written...\n",
        paint(WARNING, "warning:"),
        within.as_secs()
    )
}

/// `text` without its styles, as a pipe receives it.
#[cfg(test)]
pub fn plain(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

/// Asks for the literal answer `yes` on the terminal. `Ok(false)` for any other answer.
pub fn confirm(question: &str) -> std::io::Result<bool> {
    out::eprint(&format!("{question} "));
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// Whether a person can answer a prompt.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Above this many items, a terminal gets a progress bar.
const PROGRESS_ABOVE: usize = 5;

/// A progress bar of `len` flags on stderr, when stderr is a terminal and the run is long
/// enough to want one; a hidden bar otherwise.
pub fn progress(quiet: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    if quiet || len <= PROGRESS_ABOVE || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(len as u64), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} flags ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A spinner on stderr for a wait of unknown end, when stderr is a terminal; hidden otherwise.
pub fn spinner(quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let spinner = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

/// A duration for people: `250 ms`, `1.5 s`, `42 s`, `27h 46m 39s`.
pub fn duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < std::time::Duration::from_secs(10) {
        let tenths = (d.as_millis() + 50) / 100;
        match tenths % 10 {
            0 => format!("{} s", tenths / 10),
            t => format!("{}.{t} s", tenths / 10),
        }
    } else if d < std::time::Duration::from_secs(60) {
        format!("{} s", (d.as_millis() + 500) / 1000)
    } else {
        let secs = d.as_secs();
        let parts = [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n}{unit}"))
            .collect();
        shown.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_read_naturally() {
        let cases = [
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_millis(1000), "1 s"),
            (Duration::from_millis(1540), "1.5 s"),
            (Duration::from_millis(9990), "10 s"),
            (Duration::from_secs(42), "42 s"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(99999), "27h 46m 39s"),
        ];
        for (d, text) in cases {
            assert_eq!(super::duration(d), text, "{d:?}");
        }
    }
}
