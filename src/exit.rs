//! The process exit status (SPEC §2): a leaf that only the commands and `lib::run` know.

use std::process::ExitCode;

/// How a command ended.
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
