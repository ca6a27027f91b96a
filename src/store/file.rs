//! The LaunchDarkly SDK file data source format (`{"flags": {...}, "segments": {...}}`): the
//! embedded default store, needing no server. The only file that knows that format.
//!
//! Each project/environment has its own file (the path template). A write replaces the file
//! atomically: the new content goes to a temporary file in the same directory, which is then
//! renamed over the old one, so a reader (or a crash) never sees half a file.

use super::{Found, Groups, Rewrite, Template, WriteError};
use crate::flag::FlagId;
use anyhow::{anyhow, Context, Result};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// How to give each environment a file of its own.
pub(super) const PLACE_FIX: &str = "put {environment} (and {project}) in its path";

/// A `file` store: a path template, relative to the overrides file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: Template,
    pub base_dir: PathBuf,
}

impl Config {
    pub(super) fn place(&self, project: &str, environment: &str) -> String {
        format!("file {:?}", self.path.render(project, environment))
    }

    pub(super) fn identities(&self) -> Vec<String> {
        vec![format!("file {}", self.path.as_str())]
    }
}

pub(super) struct FileEndpoint {
    config: Config,
    /// Serialises this process's writes; other relayctl processes are kept out by the journal lock.
    lock: Mutex<()>,
}

impl FileEndpoint {
    pub(super) fn new(config: Config) -> Self {
        FileEndpoint {
            config,
            lock: Mutex::new(()),
        }
    }

    fn path(&self, project: &str, environment: &str) -> PathBuf {
        self.config
            .base_dir
            .join(self.config.path.render(project, environment))
    }

    /// The path as the overrides file names it (relative to that file), so it reads the same
    /// whatever directory relayctl runs from, and a saved plan matches it from anywhere.
    pub(super) fn describe(&self, project: &str, environment: &str) -> String {
        self.config.path.render(project, environment)
    }

    pub(super) async fn read(&self, groups: &Groups<'_>) -> Result<Found> {
        let mut out = Vec::new();
        for ((p, e), flags) in groups {
            let path = self.path(p, e);
            let doc = load(&path)?;
            let stored = flags_of(&doc, &path)?;
            out.push(
                flags
                    .iter()
                    .map(|flag| {
                        stored
                            .get(*flag)
                            .map(Value::to_string)
                            .ok_or_else(|| format!("no flag {flag:?} under \"flags\" in {}", path.display()))
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    pub(super) async fn compare_and_swap(&self, id: &FlagId, rewrite: Rewrite<'_>) -> Result<(), WriteError> {
        let _guard = self.lock.lock().await;
        let path = self.path(&id.project, &id.environment);
        let mut doc = load(&path)?;
        let current = flags_of(&doc, &path)?.get(&id.flag).map(Value::to_string);
        let json = rewrite(current.as_deref())?;
        let new: Value = serde_json::from_str(&json).context("rewritten flag is not JSON")?;
        doc.get_mut("flags")
            .and_then(Value::as_object_mut)
            .expect("checked by flags_of")
            .insert(id.flag.clone(), new);
        replace(&path, &doc).with_context(|| format!("writing {id} to {}", path.display()))?;
        Ok(())
    }
}

impl FileEndpoint {
    /// Every flag of a project/environment's file; a file that does not exist holds none.
    pub(super) async fn list(&self, project: &str, environment: &str) -> Result<super::listing::Listed> {
        let path = self.path(project, environment);
        let mut place = format!("file {}", self.describe(project, environment));
        if matches!(std::fs::metadata(&path), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            place.push_str(" (it does not exist)");
            return Ok(super::listing::Listed {
                place,
                flags: Vec::new(),
            });
        }
        let doc = load(&path)?;
        let flags = flags_of(&doc, &path)?
            .iter()
            .map(|(k, v)| (k.clone(), Ok(v.to_string())))
            .collect();
        Ok(super::listing::Listed { place, flags })
    }
}

fn load(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read flag file {}: {e}; check the store's `path` in the overrides file (it is relative to that file)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("flag file {} is not valid JSON", path.display()))
}

fn flags_of<'v>(doc: &'v Value, path: &Path) -> Result<&'v Map<String, Value>> {
    doc.get("flags").and_then(Value::as_object).ok_or_else(|| {
        anyhow!(
            "flag file {} has no \"flags\" object; it must be an SDK file data source: {{\"flags\": {{...}}, \"segments\": {{...}}}}",
            path.display()
        )
    })
}

/// Writes `doc` to a temporary file beside `path`, flushes it to disk and renames it over `path`,
/// keeping the original file's permissions.
fn replace(path: &Path, doc: &Value) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".relayctl-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path)?;
    Ok(())
}
