//! Terminal concerns: colour, the confirmation prompt. Data goes to stdout, status to stderr.

use crate::plan::Style;
use std::io::{BufRead, IsTerminal, Write};

/// Colours text for one output stream.
#[derive(Debug, Clone, Copy)]
pub struct Painter {
    pub enabled: bool,
}

impl Painter {
    /// `text` in `style` when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if !self.enabled {
            return text.to_owned();
        }
        let code = match style {
            Style::Change => "33",
            Style::Error => "1;31",
            Style::Warning => "1;33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
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
