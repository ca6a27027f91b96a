//! The one writer of stdout and stderr: every line relayctl shows goes through here, so what
//! holds for one command holds for all of them.
//!
//! - **Escaped.** Text from outside (flag keys, reasons, store names, LaunchDarkly's error text,
//!   a teammate's commit) is escaped here, at the one place it reaches a terminal
//!   ([`crate::escape`]): a control sequence, a bidirectional control or an invisible character
//!   is shown as its `\u{..}` escape, whoever formatted the message. relayctl's own colours
//!   ([`super::paint`], the styles of this module's parent) are the only escape sequences that
//!   pass, and `anstream` drops them when colour is off. JSON ([`print_json`]) is escaped the
//!   JSON way, so it reads back the same.
//! - **Never a panic.** A reader that went away (`relayctl log | head -1`) ends the output
//!   quietly: nothing more is written, and the command finishes with its own exit code, as git
//!   does. Any other failure (a full disk: `relayctl plan > /dev/full`) is a [`StdoutError`]
//!   naming stdout: returned by the write that met it and every later one, and reported once by
//!   [`finish`] if no caller did (exit 1). `print!` and its kind panic on both, which is why
//!   clippy.toml disallows them.
//! - **In order.** stdout is buffered (64 KiB, or line by line on a terminal); anything written
//!   to stderr first flushes it, so the two streams interleave as they were written even when
//!   both go to one file (`2>&1`). Commands whose lines report what was just done (apply's
//!   outcome per item, sync's per flag) [`flush`] after each, so a reader (or a kill) sees
//!   every line of what happened, as it happened.

use crate::escape::{self, unsafe_char};
use std::borrow::Cow;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// A write to stdout failed for another reason than a reader going away.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write to stdout: {0}; the output is incomplete")]
pub struct StdoutError(String);

/// stdout's state for the whole process.
enum Stdout {
    /// Not written yet: made on first use, once the colour choice is made.
    Unopened,
    /// `colour`: whether styles are kept (`anstream`'s choice for stdout: `--color`,
    /// `NO_COLOR`, a terminal). JSON has none, so it is written as it is, never scanned for them.
    Open {
        w: BufWriter<io::Stdout>,
        terminal: bool,
        colour: bool,
    },
    /// The reader went away: nothing more is written, and that is no error.
    Gone,
    /// A write failed: nothing more is written, and every write says so.
    Failed(StdoutError),
}

static STDOUT: Mutex<Stdout> = Mutex::new(Stdout::Unopened);

fn stdout() -> MutexGuard<'static, Stdout> {
    STDOUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Stdout {
    /// Writes `text` (already escaped), its styles dropped when colour is off unless it is
    /// `plain` (has none); flushes on a terminal.
    fn write(&mut self, text: &str, plain: bool) -> Result<(), StdoutError> {
        if let Stdout::Unopened = self {
            let out = io::stdout();
            let terminal = out.is_terminal();
            let colour = anstream::AutoStream::choice(&out) != anstream::ColorChoice::Never;
            *self = Stdout::Open {
                w: BufWriter::with_capacity(1 << 16, out),
                terminal,
                colour,
            };
        }
        let result = match self {
            Stdout::Open { w, terminal, colour } => match plain || *colour || !text.contains('\u{1b}') {
                true => w.write_all(text.as_bytes()),
                false => write!(w, "{}", anstream::adapter::strip_str(text)),
            }
            .and_then(|()| if *terminal { w.flush() } else { Ok(()) }),
            Stdout::Gone => return Ok(()),
            Stdout::Failed(e) => return Err(e.clone()),
            Stdout::Unopened => unreachable!("opened above"),
        };
        self.settle(result)
    }

    fn flush(&mut self) -> Result<(), StdoutError> {
        let result = match self {
            Stdout::Open { w, .. } => w.flush(),
            Stdout::Failed(e) => return Err(e.clone()),
            Stdout::Unopened | Stdout::Gone => return Ok(()),
        };
        self.settle(result)
    }

    /// The state after a write or flush that returned `result`.
    fn settle(&mut self, result: io::Result<()>) -> Result<(), StdoutError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                // What is still buffered has no reader either: drop it without a flush.
                if let Stdout::Open { w, .. } = std::mem::replace(self, Stdout::Gone) {
                    let _ = w.into_parts();
                }
                Ok(())
            }
            Err(e) => {
                let failed = StdoutError(e.to_string());
                if let Stdout::Open { w, .. } = std::mem::replace(self, Stdout::Failed(failed.clone())) {
                    let _ = w.into_parts();
                }
                Err(failed)
            }
        }
    }
}

/// Writes human text to stdout, escaped.
pub fn print(text: &str) -> Result<(), StdoutError> {
    let shown = terminal(text);
    stdout().write(&shown, false)
}

/// Writes a line of human text to stdout, escaped.
pub fn println(line: &str) -> Result<(), StdoutError> {
    print(&format!("{line}\n"))
}

/// Writes JSON to stdout, its strings escaped the JSON way ([`escape::json`]).
pub fn print_json(text: &str) -> Result<(), StdoutError> {
    stdout().write(&escape::json(text), true)
}

/// Clears the terminal stdout is (`status --watch` before each refresh): relayctl's own control
/// sequence, the one written unescaped.
pub fn clear_screen() -> Result<(), StdoutError> {
    stdout().write("\u{1b}[H\u{1b}[2J", true)
}

/// Flushes stdout: for output a reader should see now (a line per flag as sync works), or
/// before an action whose output must have been delivered first.
pub fn flush() -> Result<(), StdoutError> {
    stdout().flush()
}

/// Flushes stdout at the end of the run: the failure of any write to stdout, if one failed.
pub fn finish() -> Result<(), StdoutError> {
    flush()
}

/// Writes status text to stderr, escaped, after what stdout holds so far. A stderr that cannot
/// be written is not reported anywhere: there is nowhere left to report it.
pub fn eprint(text: &str) {
    if text.is_empty() {
        return;
    }
    // A failure here is stdout's, kept for the next write and `finish`.
    let _ = flush();
    let _ = anstream::stderr().write_all(terminal(text).as_bytes());
}

/// Writes a line of status to stderr ([`eprint`]).
pub fn eprintln(line: &str) {
    eprint(&format!("{line}\n"));
}

/// The escape sequences relayctl's own styles are made of: the only ones that reach a terminal.
static STYLE_CODES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut codes: Vec<String> = [super::CHANGE, super::ERROR, super::WARNING]
        .iter()
        .map(|s| s.render().to_string())
        .collect();
    codes.push(anstyle::Reset.render().to_string());
    codes
});

/// `text` for a terminal: every [`unsafe_char`] but `\n` and `\t` escaped, except relayctl's
/// own style codes.
fn terminal(text: &str) -> Cow<'_, str> {
    // Most text is printable ASCII: one pass over its bytes says so.
    if text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\n' | b'\t')) {
        return Cow::Borrowed(text);
    }
    let bad = |c: char| unsafe_char(c) && !matches!(c, '\n' | '\t');
    if !text.contains(bad) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find(bad) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(code) = STYLE_CODES.iter().find(|code| tail.starts_with(code.as_str())) {
            out.push_str(code);
            rest = &tail[code.len()..];
            continue;
        }
        let c = tail.chars().next().expect("found above");
        out.push_str(&c.escape_unicode().to_string());
        rest = &tail[c.len_utf8()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relayctl_s_own_styles_pass() {
        let ours = format!(
            "{} {}",
            super::super::paint(super::super::WARNING, "warning:"),
            "x"
        );
        assert_eq!(terminal(&ours), ours);
        let hostile = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}[8m\u{9b}2J\u{202e}";
        let text = format!("{ours} {hostile}\n");
        assert_eq!(
            terminal(&text),
            format!("{ours} \\u{{1b}}[2J\\u{{1b}}]0;pwned\\u{{7}}\\u{{1b}}[8m\\u{{9b}}2J\\u{{202e}}\n")
        );
    }
}
