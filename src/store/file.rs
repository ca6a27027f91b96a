//! The LaunchDarkly SDK file data source format (`{"flags": {...}, "segments": {...}}`): the
//! embedded default store, needing no server. The only file that knows that format.
//!
//! Each project/environment has its own file (the path template). A write changes only the
//! bytes of the one flag it rewrites: the rest of the file (other flags, segments, numbers as
//! written, whitespace, key order, even bytes that are not UTF-8) is copied as it was. The file is
//! replaced atomically: the new content goes to a temporary file in the same directory, flushed,
//! then renamed over the old one, so a reader (or a crash) never sees half a file. Segments are
//! only ever read (for `relayctl eval`).

use super::{Groups, ItemKind, Raw, Reads, Rewrite, Template, WriteError};
use crate::flag::{FlagId, NotAFlag};
use crate::json_text;
use anyhow::{anyhow, Context, Result};
use serde::de::IgnoredAny;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
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

    pub(super) fn path(&self, project: &str, environment: &str) -> PathBuf {
        self.config
            .base_dir
            .join(self.config.path.render(project, environment))
    }

    /// The path as the overrides file names it (relative to that file), so it reads the same
    /// whatever directory relayctl runs from, and a saved plan matches it from anywhere.
    pub(super) fn describe(&self, project: &str, environment: &str) -> String {
        self.config.path.render(project, environment)
    }

    pub(super) async fn read(&self, groups: &Groups<'_>) -> Result<Reads> {
        let mut out = Vec::new();
        for ((p, e), flags) in groups {
            let path = self.path(p, e);
            let text = load(&path)?;
            let stored = flags_of(&text, &path)?;
            // Flag key -> where each member with that key is (a file may hold 10,000 flags).
            let mut by_key: HashMap<&[u8], Vec<Range<usize>>> = HashMap::new();
            for m in &stored.members {
                by_key.entry(m.key()).or_default().push(m.value.clone());
            }
            out.push(
                flags
                    .iter()
                    .map(
                        |flag| match find(&text, by_key.get(flag.as_bytes()), flag, &path) {
                            Found::One(_, json) => Raw::Json(json.to_owned()),
                            Found::None(place) => Raw::Missing(place),
                            Found::Invalid(why) => Raw::Invalid(why),
                        },
                    )
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Reads the file, rewrites the flag's text, and replaces the file with the same bytes but
    /// for that flag's: other flags, segments, whitespace and key order are never re-rendered.
    pub(super) async fn compare_and_swap(&self, id: &FlagId, rewrite: Rewrite<'_>) -> Result<(), WriteError> {
        let _guard = self.lock.lock().await;
        let path = self.path(&id.project, &id.environment);
        let text = load(&path)?;
        let stored = flags_of(&text, &path)?;
        let spans: Vec<Range<usize>> = stored.find(&id.flag).map(|m| m.value.clone()).collect();
        let (span, current) = match find(&text, Some(&spans), &id.flag, &path) {
            Found::One(span, json) => (span, json),
            Found::None(place) => {
                // The rewrite refuses a missing flag (a stale plan); relayctl never adds one.
                rewrite(None)?;
                return Err(anyhow!("{place}; relayctl never adds a flag").into());
            }
            Found::Invalid(why) => return Err(anyhow!("{why}; nothing was written").into()),
        };
        let json = rewrite(Some(current))?;
        // What SDKs would fail to read must never reach the file.
        serde_json::from_str::<IgnoredAny>(&json).context("the rewritten flag is not JSON")?;
        let new = json_text::splice(&text, vec![(span, json.into_bytes())])
            .with_context(|| format!("editing {id} in {}", path.display()))?;
        replace(&path, &new).with_context(|| format!("writing {id} to {}", path.display()))?;
        Ok(())
    }
}

impl FileEndpoint {
    /// Every flag of a project/environment's file; a file that does not exist holds none. A key
    /// that appears twice is listed once, as the read of that flag sees it (not a flag).
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
        let text = load(&path)?;
        let stored = flags_of(&text, &path)?;
        let mut by_key: std::collections::BTreeMap<&[u8], Vec<Range<usize>>> =
            std::collections::BTreeMap::new();
        for m in &stored.members {
            by_key.entry(m.key()).or_default().push(m.value.clone());
        }
        let flags = by_key
            .into_iter()
            .map(|(key, spans)| {
                let flag = String::from_utf8_lossy(key).into_owned();
                let raw = match find(&text, Some(&spans), &flag, &path) {
                    Found::One(_, json) => Raw::Json(json.to_owned()),
                    Found::None(place) => Raw::Missing(place),
                    Found::Invalid(why) => Raw::Invalid(why),
                };
                (flag, raw)
            })
            .collect();
        Ok(super::listing::Listed { place, flags })
    }
}

impl FileEndpoint {
    /// The items `keys` of `kind` in a project/environment's file, for evaluation: a file with no
    /// `"segments"` object holds no segment (the SDKs' file data source allows leaving it out).
    pub(super) async fn read_items(
        &self,
        project: &str,
        environment: &str,
        kind: ItemKind,
        keys: &[String],
    ) -> Result<Vec<Raw>> {
        let path = self.path(project, environment);
        let text = load(&path)?;
        let (member, _) = kind.file_member();
        let object = match kind {
            ItemKind::Flag => Some(flags_of(&text, &path)?),
            ItemKind::Segment => member_of(&text, &path, member)?,
        };
        let mut by_key: HashMap<&[u8], Vec<Range<usize>>> = HashMap::new();
        for m in object.iter().flat_map(|o| &o.members) {
            by_key.entry(m.key()).or_default().push(m.value.clone());
        }
        Ok(keys
            .iter()
            .map(
                |key| match find_item(&text, by_key.get(key.as_bytes()), (kind, key), &path) {
                    Found::One(_, json) => Raw::Json(json.to_owned()),
                    Found::None(place) => Raw::Missing(place),
                    Found::Invalid(why) => Raw::Invalid(why),
                },
            )
            .collect())
    }
}

/// The flag file's bytes, once they are known to be JSON (any text in strings: a flag that is
/// not UTF-8 is refused by name, the others are carried as they are).
fn load(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read(path).map_err(|e| {
        anyhow!(
            "cannot read flag file {}: {e}; check the store's `path` in the overrides file (it is relative to that file)",
            path.display()
        )
    })?;
    serde_json::from_slice::<IgnoredAny>(&text)
        .with_context(|| format!("flag file {} is not valid JSON", path.display()))?;
    Ok(text)
}

/// The `"flags"` object of a flag file.
fn flags_of<'t>(text: &'t [u8], path: &Path) -> Result<json_text::Object<'t>> {
    member_of(text, path, "flags")?.ok_or_else(|| not_sdk_file(path, "flags"))
}

/// Why a flag file is not an SDK file data source (its `member` is missing or not an object).
fn not_sdk_file(path: &Path, member: &str) -> anyhow::Error {
    anyhow!(
        "flag file {} has no \"{member}\" object; it must be an SDK file data source: {{\"flags\": {{...}}, \"segments\": {{...}}}}",
        path.display()
    )
}

/// The object `member` (`"flags"`, `"segments"`) of a flag file, if it has one.
fn member_of<'t>(text: &'t [u8], path: &Path, member: &str) -> Result<Option<json_text::Object<'t>>> {
    let (doc, _) = json_text::object(text, 0).map_err(|_| not_sdk_file(path, "flags"))?;
    let mut found = doc.find(member);
    match (found.next(), found.next()) {
        (Some(m), None) => Ok(Some(
            json_text::object(text, m.value.start)
                .map_err(|_| not_sdk_file(path, member))?
                .0,
        )),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(anyhow!(
            "flag file {} has more than one \"{member}\" object; SDKs disagree on which one counts: keep one",
            path.display()
        )),
    }
}

/// Where one flag is in a flag file.
enum Found<'t> {
    /// Its JSON's bytes in the file, and that JSON.
    One(Range<usize>, &'t str),
    /// Not there: where it was looked for.
    None(String),
    /// Stored in a way relayctl must not rewrite.
    Invalid(NotAFlag),
}

/// Flag `flag` of the file `text`, given where the members with its key are (`spans`).
fn find<'t>(text: &'t [u8], spans: Option<&Vec<Range<usize>>>, flag: &str, path: &Path) -> Found<'t> {
    find_item(text, spans, (ItemKind::Flag, flag), path)
}

/// Item `key` of `kind` in the file `text`, given where the members with its key are (`spans`).
fn find_item<'t>(
    text: &'t [u8],
    spans: Option<&Vec<Range<usize>>>,
    (kind, key): (ItemKind, &str),
    path: &Path,
) -> Found<'t> {
    let (member, item) = kind.file_member();
    let span = match spans.map(Vec::as_slice).unwrap_or_default() {
        [span] => span.clone(),
        [] => {
            return Found::None(format!(
                "no {item} {key:?} under \"{member}\" in {}",
                path.display()
            ))
        }
        _ => {
            return Found::Invalid(NotAFlag::new(format!(
                "the {item} appears more than once under \"{member}\" in {}; SDKs disagree on which one counts: keep one",
                path.display()
            )))
        }
    };
    match std::str::from_utf8(&text[span.clone()]) {
        Ok(json) => Found::One(span, json),
        Err(e) => Found::Invalid(NotAFlag::new(format!(
            "the stored {item} is not valid UTF-8 (byte {} of its JSON in {}); correct or remove it in the file",
            e.valid_up_to(),
            path.display()
        ))),
    }
}

/// Writes `text` to a temporary file beside `path`, flushes it to disk, renames it over `path`
/// (keeping the original file's permissions) and flushes the directory, so the rename survives
/// a crash too.
fn replace(path: &Path, text: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".relayctl-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(text)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
