//! The names and free text of the overrides file: what a project, environment or flag key, a
//! store name and a reason may be. Keys are LaunchDarkly keys that fit the journal's
//! `<project>/<environment>/<flag>.toml` layout; names and reasons are text the journal and
//! every message can record faithfully. Plan files name flags too, so [`check_id`] is public.

use super::Located;
use crate::flag::FlagId;
use toml::Spanned;

/// The longest flag key: the journal keeps each flag in a file `<flag>.toml`, and a file name
/// holds at most 255 bytes.
const MAX_FLAG_KEY: usize = 250;
/// The longest project or environment key: each is a directory of the journal.
const MAX_KEY: usize = 255;

/// Checks a key of the overrides file (`what`: project, environment or flag).
pub(super) fn check_key(key: &Spanned<String>, what: &str) -> Result<(), String> {
    check_name(key.get_ref(), what)
}

/// LaunchDarkly keys are letters, digits, `.`, `_` and `-`; anything else (a `/`, `..`) could
/// escape the journal's `<project>/<environment>/<flag>.toml` layout, and a key longer than
/// that layout's file names hold could not be journaled.
fn check_name(k: &str, what: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(format!(
            "{what} key {k:?} is not a LaunchDarkly key: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        ));
    }
    let (max, file) = match what {
        "flag" => (MAX_FLAG_KEY, "a file <flag>.toml"),
        _ => (MAX_KEY, "a directory"),
    };
    if k.len() > max {
        return Err(format!(
            "{what} key {}... is {} characters long: the journal keeps it in {file}, so it may have at most {max}",
            &k[..20],
            k.len()
        ));
    }
    Ok(())
}

/// Checks the project, environment and flag keys of `id` as the overrides file's are checked
/// (for a plan file, which names flags too).
pub fn check_id(id: &FlagId) -> Result<(), String> {
    check_name(&id.project, "project")?;
    check_name(&id.environment, "environment")?;
    check_name(&id.flag, "flag")
}

/// A reason is free text without a NUL, which git cannot record. It may be empty: that is the
/// placeholder `relayctl import` leaves, which plan warns about and apply refuses.
pub(super) fn check_reason(reason: &Spanned<String>, flag: &str) -> Result<(), Located> {
    let r = reason.get_ref();
    if r.contains('\0') {
        return Err((
            Some(reason.span()),
            format!("the reason of flag {flag} contains a NUL character, which the journal cannot record: remove it"),
        ));
    }
    Ok(())
}

/// A reason as declared, trimmed; one with no visible character (only spaces, or zero-width and
/// other invisible characters) says nothing, so it is empty: plan warns about it and apply refuses
/// it, as for `reason = ""`.
pub(super) fn reason(raw: &str) -> String {
    match crate::escape::visible(raw) {
        true => raw.trim().to_owned(),
        false => String::new(),
    }
}

/// A store name is printed in messages and recorded in journal trailers, one line each.
pub(super) fn check_store_name(name: &Spanned<String>) -> Result<(), Located> {
    if name.get_ref().chars().any(char::is_control) {
        return Err((
            Some(name.span()),
            format!(
                "store name {:?} contains a line break, a NUL or another control character: use a plain name",
                name.get_ref()
            ),
        ));
    }
    Ok(())
}
