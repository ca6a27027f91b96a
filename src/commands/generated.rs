//! `relayctl completions SHELL` and `relayctl man`: print what settings generated from the clap
//! definitions (so the completions and the man page always match the command line).

use crate::exit::Exit;
use anyhow::Result;

/// Writes `text` to stdout; a reader that closed the pipe early is no error.
pub fn print(text: &[u8]) -> Result<Exit> {
    crate::ui::out::print(&String::from_utf8_lossy(text))?;
    Ok(Exit::Success)
}
