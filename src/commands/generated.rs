//! `relayctl completions SHELL` and `relayctl man`: print what settings generated from the clap
//! definitions (so the completions and the man page always match the command line).

use crate::exit::Exit;
use anyhow::{Context, Result};
use std::io::Write;

/// Writes `text` to stdout as it is; a reader that closed the pipe early is no error.
pub fn print(text: &[u8]) -> Result<Exit> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(Exit::Success),
    }
}
