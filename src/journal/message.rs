//! A journal commit as text: its message (subject, reason, git trailers) and its state file
//! (`<project>/<environment>/<flag>.toml`). Both are written and read back here only, so this is
//! the one file that knows the trailer names and the state file's shape.
//!
//! The trailers (`Project:`, `On:`, `Base-Version:`, `Store:`...) are what `git log
//! --format='%(trailers)'`, scripts and `relayctl sync` read; the state file holds the override
//! state after the change, so `git log -p` reads as a list of diffs, and it records the value of
//! each variation the change serves (an index alone would not survive a reordering of the
//! flag's variations in LaunchDarkly) and the exact reason, as a TOML string.
//!
//! Free text must never be read back as a trailer. The trailers are the message's last
//! paragraph, and relayctl reads them by that rule alone ([`trailers`]), not with libgit2's or
//! git's trailer readers, which stop at a `---` line or a scissors line a reason could contain.
//! The free text (the reason, why a target failed) always comes before them, and is written so
//! that git cannot be made to stop early either: a line git would take for the end of the
//! message gets a leading space, and control and invisible characters are escaped (so `git log`
//! plays none of them on a terminal); trailer values are single lines. So git and relayctl read
//! the same, real trailers, and the reason is read back from the state file, exactly as
//! declared (its TOML string escapes them too, and reads back the same).

use super::entry::{Commits, Entry};
use super::layout;
use super::notes::SyncNote;
use crate::flag::{Flag, FlagId, FlagRecord, Serve, Targeting, Variation};
use crate::kind::{with_version, StoreTarget};
use anyhow::{anyhow, Context, Result};
use git2::{Oid, Repository};
use serde_json::Value;

/// A journal commit read back, with its sync status.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub oid: Oid,
    /// The abbreviated commit id, as `log` shows it and the LaunchDarkly comment cites it.
    pub short: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// `Name <email>`.
    pub author: String,
    pub subject: String,
    pub reason: Option<String>,
    pub id: FlagId,
    /// The state the commit leaves the flag in: `on`, and each variation slot it set.
    pub to: Targeting,
    pub base_version: u64,
    /// The sync note, if any.
    pub note: Option<SyncNote>,
}

impl Recorded {
    /// Whether sync has finished with this commit (a `synced` note).
    pub fn is_synced(&self) -> bool {
        self.note.as_ref().is_some_and(SyncNote::is_synced)
    }

    /// The sync status as `relayctl log` shows it: the note's first line, or `pending`.
    #[cfg(test)]
    pub fn status(&self) -> String {
        status(self.note.as_ref())
    }
}

/// A journal commit as `relayctl log` lists it: what its message and sync note say.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub oid: Oid,
    /// The abbreviated commit id.
    pub short: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// `Name <email>`.
    pub author: String,
    pub subject: String,
    /// The sync note, if any.
    pub note: Option<SyncNote>,
}

impl Listed {
    /// Whether sync has finished with this commit (a `synced` note).
    pub fn is_synced(&self) -> bool {
        self.note.as_ref().is_some_and(SyncNote::is_synced)
    }

    /// The sync status: the note's first line, or `pending`.
    pub fn status(&self) -> String {
        status(self.note.as_ref())
    }
}

/// A sync status as `relayctl log` shows it: the note's first line, or `pending`.
fn status(note: Option<&SyncNote>) -> String {
    match note {
        Some(n) => n.to_string().lines().next().unwrap_or("pending").to_owned(),
        None => "pending".to_owned(),
    }
}

const PROJECT: &str = "Project";
const ENVIRONMENT: &str = "Environment";
const FLAG: &str = "Flag";
const ON: &str = "On";
const PREVIOUS_ON: &str = "Previous-On";
const BASE_VERSION: &str = "Base-Version";
const OFF_VARIATION: &str = "Off-Variation";
const FALLTHROUGH: &str = "Fallthrough";
pub(super) const STORE: &str = "Store";
const STORE_FAILED: &str = "Store-Failed";
pub(super) const NOT_WRITTEN: &str =
    "Not written (apply failed there; run `relayctl plan` to see what is left):";

impl Commits for Flag {
    /// Each part of its state file's path must be a name a git tree and a file system can hold (a
    /// journal path that cannot be checked out would fail this and every later apply).
    fn check(record: &FlagRecord) -> Result<(), String> {
        let id = &record.id;
        let keys = [
            ("project", &id.project),
            ("environment", &id.environment),
            ("flag", &id.flag),
        ];
        let path = [
            id.project.clone(),
            id.environment.clone(),
            format!("{}{}", id.flag, crate::names::STATE),
        ];
        for (name, (what, key)) in path.iter().zip(keys) {
            if let Err(why) = crate::names::file_name(name) {
                return Err(format!(
                    "its {what} key {key:?} cannot name a file in the journal: {why}"
                ));
            }
        }
        Ok(())
    }

    fn place(record: &FlagRecord) -> ([String; 2], String) {
        let id = &record.id;
        ([id.project.clone(), id.environment.clone()], id.flag.clone())
    }

    fn state_file(record: &FlagRecord) -> String {
        state_file(record)
    }

    /// Subject, reason, failures, then the trailers as the last paragraph.
    fn message(entry: &Entry<Flag>) -> String {
        let r = &entry.record;
        let id = &r.id;
        let mut trailers: Vec<(&str, String)> = vec![
            (PROJECT, id.project.clone()),
            (ENVIRONMENT, id.environment.clone()),
            (FLAG, id.flag.clone()),
            (ON, r.to.on.to_string()),
            (PREVIOUS_ON, r.from.on.to_string()),
            (BASE_VERSION, r.base_version.to_string()),
        ];
        if let Some(v) = r.to.off_variation.as_ref().and_then(Serve::variation) {
            trailers.push((OFF_VARIATION, v.index.to_string()));
        }
        if let Some(v) = r.to.fallthrough.as_ref().and_then(Serve::variation) {
            trailers.push((FALLTHROUGH, v.index.to_string()));
        }
        trailers.extend(stores(entry));
        let subject = format!("{id}: {}", r.summary());
        compose(&subject, r.reason.as_deref(), &entry.failed, trailers)
    }
}

/// One `Store:` trailer per target written: the target, its version where the kind has one, and
/// what it said about the write.
pub(super) fn stores<K: crate::kind::Kind>(entry: &Entry<K>) -> Vec<(&'static str, String)> {
    let store = |(t, version): &(StoreTarget, K::Version)| {
        let value = with_version::<K>(t, *version);
        match entry.note(t) {
            Some(note) => (STORE, format!("{value} ({note})")),
            None => (STORE, value),
        }
    };
    entry.written.iter().map(store).collect()
}

/// The one writer of every commit message, flag or key: the subject; the free text (the
/// reason, then each failed target and why) written so that it can never be read as a
/// trailer ([`body`], [`field`]); then `trailers` and one `Store-Failed:` per failed target as
/// the last paragraph, each value on one line.
pub(super) fn compose(
    subject: &str,
    reason: Option<&str>,
    failed: &[(StoreTarget, String)],
    trailers: Vec<(&str, String)>,
) -> String {
    let mut m = format!("{}\n\n", field(subject));
    if let Some(reason) = reason.map(body).filter(|r| !r.is_empty()) {
        m += &reason;
        m += "\n\n";
    }
    if !failed.is_empty() {
        m += NOT_WRITTEN;
        m += "\n";
        for (t, why) in failed {
            m += &format!("- {}: {}\n", field(&t.to_string()), field(why));
        }
        m += "\n";
    }
    let failed = failed.iter().map(|(t, _)| (STORE_FAILED, t.to_string()));
    for (key, value) in trailers.into_iter().chain(failed) {
        m += &format!("{key}: {}\n", field(&value));
    }
    m
}

/// Free text as a commit body shows it: trimmed, control and invisible characters escaped, a
/// space before every line git or libgit2 would take for the end of the message (a `---` patch
/// divider, a `# -------- >8 --------` scissors line with any comment character), so that the
/// trailers after it stay the message's last paragraph for every reader.
pub(super) fn body(text: &str) -> String {
    let lines: Vec<String> = text
        .trim()
        .replace("\r\n", "\n")
        .split('\n')
        .map(|line| {
            let line = escape_controls(line);
            if line.starts_with("---") || line.contains(" >8 ") {
                format!(" {line}")
            } else {
                line
            }
        })
        .collect();
    lines.join("\n")
}

/// A trailer value or one-line field: its words on one line, control characters escaped.
pub(super) fn field(text: &str) -> String {
    escape_controls(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `text` with every character that must not reach a terminal raw but the tab (a control, a
/// bidirectional or invisible mark: [`crate::escape::unsafe_char`]) as a `\u{..}` escape.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if crate::escape::unsafe_char(c) => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The trailers of a commit message by relayctl's rule: its last paragraph, every line
/// `Key: value`. `None` when the last paragraph is not like that (or there is only a subject).
pub(super) fn trailers(message: &str) -> Option<Vec<(&str, &str)>> {
    let (_, block) = message.trim_end_matches('\n').rsplit_once("\n\n")?;
    block.lines().map(|l| l.split_once(": ")).collect()
}

/// Whether `message` is a flag commit's: its trailers start with `Project:`.
pub(super) fn is_flag_commit(message: &str) -> bool {
    trailers_start_with(message, PROJECT)
}

/// Whether the trailers of `message`, read by relayctl's one rule ([`trailers`]), start with
/// `key`: how a flag commit (`Project:`) and a key commit (`Key-Store:`) are told apart.
pub(super) fn trailers_start_with(message: &str, key: &str) -> bool {
    trailers(message).is_some_and(|t| t.first().is_some_and(|(k, _)| *k == key))
}

/// The flag a flag commit's message names and the store version it was based on (its
/// `Base-Version`); `None` for any other commit.
pub(super) fn flag_version(message: &str) -> Option<(FlagId, u64)> {
    let trailers = trailers(message)?;
    let get = |key: &str| {
        trailers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let id = FlagId {
        project: get(PROJECT)?,
        environment: get(ENVIRONMENT)?,
        flag: get(FLAG)?,
    };
    Some((id, get(BASE_VERSION)?.parse().ok()?))
}

/// A commit's author as `relayctl log` shows it: `Name <email>`.
pub(super) fn author(commit: &git2::Commit) -> String {
    let author = commit.author();
    format!(
        "{} <{}>",
        author.name().unwrap_or(""),
        author.email().unwrap_or("")
    )
}

/// The state file: the override state after the change, in the overrides file's terms.
fn state_file(entry: &FlagRecord) -> String {
    let mut out = format!(
        "# {}: override state written by relayctl\non = {}\n",
        entry.id, entry.to.on
    );
    for (key, slot) in [
        ("off_variation", &entry.to.off_variation),
        ("fallthrough", &entry.to.fallthrough),
    ] {
        if let Some(v) = slot.as_ref().and_then(Serve::variation) {
            out += &format!("{key} = {}\n", variation_toml(v));
        }
    }
    if let Some(r) = &entry.reason {
        out += &format!("reason = {}\n", toml_text(r));
    }
    out
}

/// `text` as a TOML string of a state file: as the toml crate writes it, unless it holds a
/// character that must not reach a terminal raw (`git log -p` shows state files): then a basic
/// string with that character escaped, which reads back the same.
pub(super) fn toml_text(text: &str) -> String {
    match text.contains(crate::escape::unsafe_char) {
        true => crate::escape::toml_string(text),
        false => toml::Value::String(text.to_owned()).to_string(),
    }
}

/// `{ index = 1, value = "control" }`, or `{ index = 1, json = "..." }` for a value TOML cannot
/// hold exactly on one line (null, numbers beyond i64, text with line breaks).
fn variation_toml(v: &Variation) -> String {
    let mut table = toml::Table::new();
    table.insert("index".into(), toml::Value::Integer(v.index as i64));
    let exact = toml::Value::try_from(&v.value)
        .ok()
        .filter(|t| serde_json::to_value(t).ok().as_ref() == Some(&v.value))
        .filter(|t| !t.to_string().contains('\n'));
    match exact {
        Some(t) => table.insert("value".into(), t),
        None => table.insert("json".into(), toml::Value::String(v.value.to_string())),
    };
    toml::Value::Table(table).to_string()
}

/// What a state file records besides `on`: the value of each variation slot, and the reason.
#[derive(Debug, Default, PartialEq)]
struct State {
    off_variation: Option<Value>,
    fallthrough: Option<Value>,
    reason: Option<String>,
}

/// Reads a state file back.
fn read_state(state: &str) -> Result<State, String> {
    let table: toml::Table = toml::from_str(state).map_err(|e| e.message().to_owned())?;
    let value = |key: &str| -> Result<Option<Value>, String> {
        match table.get(key) {
            None => Ok(None),
            // The first format: `off_variation = 1 # "control"`, the value in the comment.
            Some(toml::Value::Integer(_)) => Ok(legacy_value(state, key)),
            Some(toml::Value::Table(t)) => match (t.get("value"), t.get("json")) {
                (Some(v), None) => serde_json::to_value(v).map(Some).map_err(|e| e.to_string()),
                (None, Some(toml::Value::String(json))) => {
                    serde_json::from_str(json).map(Some).map_err(|e| e.to_string())
                }
                _ => Err(format!("{key} has neither a value nor its JSON")),
            },
            Some(other) => Err(format!("{key} is {other}")),
        }
    };
    let reason = match table.get("reason") {
        None => None,
        Some(toml::Value::String(r)) => Some(r.clone()),
        Some(other) => return Err(format!("reason is {other}")),
    };
    Ok(State {
        off_variation: value("off_variation")?,
        fallthrough: value("fallthrough")?,
        reason,
    })
}

fn legacy_value(state: &str, key: &str) -> Option<Value> {
    state.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        let (_, json) = rest.split_once(" # ")?;
        serde_json::from_str(json.trim()).ok()
    })
}

/// What a flag commit's message says, read without its tree.
struct Head {
    listed: Listed,
    id: FlagId,
    on: bool,
    base_version: u64,
    off_index: Option<usize>,
    ft_index: Option<usize>,
}

/// Reads the message and trailers of a journal commit; `None` for commits that are not flag
/// changes (the initial one).
fn head(odb: &git2::Odb, commit: &git2::Commit, note: Option<SyncNote>) -> Result<Option<Head>> {
    let Some(trailers) = trailers(commit.message().unwrap_or("")) else {
        return Ok(None);
    };
    let short = super::abbreviate(&[odb], commit.id());
    let get = |key: &str| -> Result<Option<String>> {
        let mut values = trailers
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string());
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            (Some(_), Some(_)) => Err(anyhow!("journal commit {short} has more than one {key} trailer")),
            (None, Some(_)) => unreachable!("a second value without a first"),
        }
    };
    let (Some(project), Some(environment), Some(flag)) = (get(PROJECT)?, get(ENVIRONMENT)?, get(FLAG)?)
    else {
        return Ok(None);
    };
    let bad = |what: &str| anyhow!("journal commit {short} has an invalid {what} trailer");
    let on = get(ON)?
        .and_then(|v| v.parse::<bool>().ok())
        .ok_or_else(|| bad(ON))?;
    let base_version = get(BASE_VERSION)?
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(BASE_VERSION))?;
    let index = |k: &str| {
        get(k)?
            .map(|v| v.parse::<usize>().map_err(|_| bad(k)))
            .transpose()
    };
    let (off_index, ft_index) = (index(OFF_VARIATION)?, index(FALLTHROUGH)?);
    let listed = Listed {
        oid: commit.id(),
        time: commit.time().seconds(),
        author: author(commit),
        subject: commit.summary().unwrap_or("").to_owned(),
        note,
        short,
    };
    let id = FlagId {
        project,
        environment,
        flag,
    };
    Ok(Some(Head {
        listed,
        id,
        on,
        base_version,
        off_index,
        ft_index,
    }))
}

/// A journal commit as `relayctl log` lists it, read from its message alone (never its tree);
/// `None` for commits that are not flag changes.
pub(super) fn list(odb: &git2::Odb, commit: &git2::Commit, note: Option<SyncNote>) -> Result<Option<Listed>> {
    Ok(head(odb, commit, note)?.map(|h| h.listed))
}

/// Reads back a journal commit, with the state its tree records; `None` for commits that are
/// not flag changes (the initial one).
pub(super) fn read(
    repo: &Repository,
    odb: &git2::Odb,
    commit: &git2::Commit,
    note: Option<SyncNote>,
) -> Result<Option<Recorded>> {
    let Some(Head {
        listed,
        id,
        on,
        base_version,
        off_index,
        ft_index,
    }) = head(odb, commit, note)?
    else {
        return Ok(None);
    };
    let short = &listed.short;
    let needs_values = off_index.is_some() || ft_index.is_some();
    let state = match state_of(repo, commit, &id) {
        Ok(text) => read_state(&text)
            .map_err(|e| anyhow!("the state file of journal commit {short} ({id}) is not relayctl's: {e}"))?,
        Err(e) if needs_values => {
            return Err(e.context(format!("reading the state file of journal commit {short} ({id})")))
        }
        Err(_) => State::default(),
    };
    let slot = |index: Option<usize>, value: Option<Value>, what: &str| -> Result<Option<Serve>> {
        match (index, value) {
            (Some(index), Some(value)) => Ok(Some(Serve::Variation(Variation { index, value }))),
            (Some(_), None) => Err(anyhow!(
                "journal commit {short} ({id}) records {what} variation without its value"
            )),
            (None, _) => Ok(None),
        }
    };
    let to = Targeting {
        on,
        off_variation: slot(off_index, state.off_variation, "an off")?,
        fallthrough: slot(ft_index, state.fallthrough, "a fallthrough")?,
    };
    Ok(Some(Recorded {
        oid: listed.oid,
        time: listed.time,
        author: listed.author,
        subject: listed.subject,
        reason: state.reason,
        id,
        to,
        base_version,
        note: listed.note,
        short: listed.short,
    }))
}

/// The text of the state file of `id` in `commit`'s tree, in either layout ([`layout`]).
fn state_of(repo: &Repository, commit: &git2::Commit, id: &FlagId) -> Result<String> {
    let blob = layout::find(repo, &commit.tree()?, id)?
        .with_context(|| format!("{} is not in the commit's tree", layout::file_name(&id.flag)))?;
    let blob = repo.find_blob(blob)?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::journal) fn from() -> Targeting {
        Targeting {
            on: true,
            off_variation: Some(Serve::Unset),
            fallthrough: None,
        }
    }

    pub(in crate::journal) fn entry() -> Entry<Flag> {
        let mut e = Entry::new(FlagRecord {
            id: FlagId {
                project: "default".into(),
                environment: "production".into(),
                flag: "new-checkout".into(),
            },
            from: from(),
            to: Targeting {
                on: false,
                off_variation: Some(Serve::Variation(Variation {
                    index: 1,
                    value: "control".into(),
                })),
                fallthrough: None,
            },
            base_version: 41,
            reason: Some("INC-4711: checkout returns 500".into()),
        });
        let target = |target: &str| StoreTarget {
            store: "relay-redis".into(),
            target: target.into(),
        };
        e.written.push((target("redis://10.0.0.5:6379"), 42));
        e.failed
            .push((target("redis://10.0.0.6:6379"), "connection\nrefused".into()));
        e
    }

    pub(in crate::journal) fn message(e: &Entry<Flag>) -> String {
        <Flag as Commits>::message(e)
    }

    #[test]
    fn message_has_subject_reason_and_trailers() {
        insta::assert_snapshot!(message(&entry()));
    }

    #[test]
    fn a_target_note_joins_its_store_trailer() {
        let mut e = entry();
        let target = e.written[0].0.clone();
        e.notes.push((
            target,
            "primary redis://10.0.0.7:6379; 2 of 2 replicas acknowledged".into(),
        ));
        let m = message(&e);
        assert!(
            m.contains(
                "\nStore: relay-redis redis://10.0.0.5:6379 v42 (primary redis://10.0.0.7:6379; 2 of 2 replicas \
                 acknowledged)\n"
            ),
            "{m}"
        );
        assert!(
            m.contains("\nStore-Failed: relay-redis redis://10.0.0.6:6379\n"),
            "{m}"
        );
    }

    #[test]
    fn state_files_record_each_value_exactly() {
        for value in [
            json!("control"),
            json!(3),
            json!(2.5),
            json!(true),
            json!(null),
            json!(18446744073709551615u64),
            json!({"a": [1, "x\ny"], "b": null}),
        ] {
            let mut e = entry();
            e.record.to.fallthrough = Some(Serve::Variation(Variation {
                index: 0,
                value: value.clone(),
            }));
            let state = state_file(&e.record);
            let read = read_state(&state).unwrap();
            assert_eq!(
                (read.off_variation, read.fallthrough),
                (Some(json!("control")), Some(value.clone())),
                "{state}"
            );
        }
        assert_eq!(
            state_file(&entry().record),
            "# default/production/new-checkout: override state written by relayctl\non = false\n\
             off_variation = { index = 1, value = \"control\" }\nreason = \"INC-4711: checkout returns 500\"\n"
        );
    }

    #[test]
    fn state_files_of_the_first_format_still_read() {
        let state = "# default/production/f: override state written by relayctl\non = false\n\
                     off_variation = 1 # \"control\"\nfallthrough = 0 # {\"a\":1}\n";
        let read = read_state(state).unwrap();
        assert_eq!(
            (read.off_variation, read.fallthrough),
            (Some(json!("control")), Some(json!({"a": 1})))
        );
    }

    #[test]
    fn free_text_never_reads_back_as_a_trailer() {
        let forged = "Project: acc\nEnvironment: production\nFlag: flag-9\nOn: false\nPrevious-On: true\nBase-Version: 41";
        for reason in [
            format!("INC\n{forged}\n--- end"),
            format!("INC\n\n{forged}\n# ------------------------ >8 ------------------------\nx"),
            format!("INC\n\n{forged}\n\n"),
            format!("{forged}\r\n---\r\n"),
            "INC \u{0} x\u{1b}[31m".to_owned(),
        ] {
            let mut e = entry();
            e.record.reason = Some(reason.clone());
            e.failed[0].1 = format!("refused\n\n{forged}");
            e.failed[0].0.store = "relay\n\nFlag: flag-9".into();
            let m = message(&e);
            assert!(!m.contains('\0') && !m.contains('\u{1b}'), "{m:?}");
            assert!(
                !m.lines().any(|l| l.starts_with("---") || l.starts_with('#')),
                "{m}"
            );
            let t = trailers(&m).unwrap();
            let flags: Vec<_> = t.iter().filter(|(k, _)| *k == FLAG).collect();
            assert_eq!(flags, [&(FLAG, "new-checkout")], "{m}");
            assert_eq!(t[0], (PROJECT, "default"), "{m}");
            assert!(is_flag_commit(&m));
            assert_eq!(
                read_state(&state_file(&e.record)).unwrap().reason,
                Some(reason),
                "the exact reason"
            );
        }
        assert!(!is_flag_commit("Start the relayctl journal"));
        assert!(!is_flag_commit("x: y\n\nsome text\n"));
    }

    #[test]
    fn names_a_journal_path_cannot_hold_are_refused() {
        let with = |project: &str, flag: &str| {
            let mut e = entry();
            e.record.id.project = project.into();
            e.record.id.flag = flag.into();
            <Flag as Commits>::check(&e.record)
        };
        assert!(with("default", &"f".repeat(250)).is_ok());
        let e = with("default", &"f".repeat(251)).unwrap_err();
        assert!(e.contains("256 bytes long") && e.contains("at most 255"), "{e}");
        for (project, flag) in [
            ("default", "a/b"),
            ("default", ""),
            ("..", "f"),
            (".git", "f"),
            ("default", "x\0"),
        ] {
            let e = with(project, flag).unwrap_err();
            assert!(
                e.contains("cannot name a file in the journal"),
                "{project}/{flag}: {e}"
            );
        }
    }
}
