//! Terminal concerns: colour, the confirmation prompt, progress bars.
//!
//! Human output is rendered with styles embedded (`anstyle`) by pure functions, and printed
//! through `anstream`, which drops the styles when colour is off (`--color`, `NO_COLOR`, not a
//! terminal): one decision, made once in `lib::run`. Data goes to stdout, status to stderr.

use anstyle::{AnsiColor, Style};
use std::io::{BufRead, IsTerminal, Write};

/// A change in a plan or an apply (`~`).
pub const CHANGE: Style = AnsiColor::Yellow.on_default();
/// Something that failed.
pub const ERROR: Style = AnsiColor::Red.on_default().bold();
/// Something to pay attention to.
pub const WARNING: Style = AnsiColor::Yellow.on_default().bold();

/// `text` in `style`.
pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// `text` without its styles, as a pipe receives it.
#[cfg(test)]
pub fn plain(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

/// Asks for the literal answer `yes` on the terminal. `Ok(false)` for any other answer.
pub fn confirm(question: &str) -> std::io::Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "{question} ")?;
    err.flush()?;
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

/// `text` safe to print on a terminal: control characters (C0, DEL, C1) and the invisible
/// bidirectional controls that could move or hide what a line shows are replaced by `\u{..}`
/// escapes. For text that comes from a store (flag keys, variation values).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}
