//! What the journal can hold as a name: every item is a state file in its tree
//! (`<project>/<environment>/<flag>.toml`, `_keys/<store>/<key>.toml`), so each part of its path
//! must be one file name that git and the common file systems accept. A leaf: the overrides file
//! ([`crate::desired`]) checks its names here before anything is read, and the journal checks
//! them again before anything is written.

use crate::key::show_key;

/// The longest file name (in bytes) the common file systems hold.
pub const MAX_NAME: usize = 255;

/// The extension of every state file.
pub const STATE: &str = ".toml";

/// Whether `name` can be one file name in a git tree and on disk, as it is.
pub fn file_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!(
            "the file name would be {} bytes long, and a file name holds at most {MAX_NAME}",
            name.len()
        ));
    }
    let special = [".", "..", STATE].contains(&name) || name.to_ascii_lowercase().starts_with(".git");
    if name.is_empty() || special || name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err("use letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// `name` (any text) escaped into one file name: every byte but letters, digits, `_`, `-` and a
/// `.` not first becomes `%XX`, so no name can climb out of its folder or hide as `.git`.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks that a key of `store` can be recorded in the journal: a non-empty name whose escaped
/// file name fits a file system.
pub fn check_key(store: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("an empty key name in [keys.{store}]: name the key"));
    }
    for (what, name, file) in [
        ("store name", store, escape(store)),
        ("key", key, escape(key) + STATE),
    ] {
        if file.len() > MAX_NAME {
            return Err(format!(
                "the {what} {} is too long for the journal: it keeps it in a file named {}..., {} bytes \
                 long once escaped, and a file name holds at most {MAX_NAME}; use a shorter name",
                show_key(&name.chars().take(40).collect::<String>()),
                &file[..40.min(file.len())],
                file.len()
            ));
        }
    }
    Ok(())
}
