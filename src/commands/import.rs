//! `relayctl import PROJECT/ENV/FLAG... [--write]`: the declarations of flags' current state,
//! printed ready to paste, or added to the overrides file in place.
//!
//! All or nothing: a flag that cannot be imported (missing, deleted, targets that disagree,
//! already declared with `--write`) is an error naming it, and then nothing is printed or
//! written. `--write` checks that the edited file is a valid overrides file before it replaces
//! the old one (a temporary file renamed over it), so a failure leaves the file as it was.

mod keys;

use super::load;
use crate::exit::Exit;
use crate::flag::FlagId;
use crate::flag::Lookup;
use crate::import::{self, Declaration};
use crate::kind::StoreTarget;
use crate::select::parse_selector;
use crate::settings::Settings;
use crate::store::Stores;
use crate::ui;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use tokio::runtime::Runtime;

/// Prints the declarations (or adds them to the overrides file with `write`).
pub fn run(settings: &Settings, rt: &Runtime, flags: &[String], write: bool) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    if keys::named(flags) {
        return keys::run(settings, rt, (&config, &stores), flags, write);
    }
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for raw in flags {
        let s = parse_selector(raw)?;
        let Some(flag) = s.flag else {
            bail!(
                "{raw:?} names no flag: import takes PROJECT/ENV/FLAG, e.g. default/production/new-checkout \
                 (`relayctl show {raw}` lists the flags there)"
            );
        };
        let group = groups.entry((s.project, s.environment)).or_default();
        if !group.contains(&flag) {
            group.push(flag);
        }
    }
    let declarations = declarations(rt, &stores, &groups)?;
    if write {
        write_file(&settings.config, settings, &declarations)?;
        settings.status(format!(
            "Added {} declaration(s) to {}, each with reason = \"\": say why before you apply (plan warns, \
             apply refuses an empty reason). `relayctl plan` shows no change for them until you edit them.",
            declarations.len(),
            settings.config.display()
        ));
        return Ok(Exit::Success);
    }
    ui::out::print(&import::render(&declarations))?;
    for d in &declarations {
        if config.overrides.iter().any(|o| o.id == d.id) {
            ui::out::eprintln(&format!(
                "{} {} is already declared in {}: pasting it again would declare it twice.",
                ui::paint(ui::WARNING, "warning:"),
                d.id,
                settings.config.display()
            ));
        }
    }
    settings.status(
        "Paste these under the [overrides...] table named above them (or add them in place with --write), \
         then fill in each reason: apply refuses an empty one.",
    );
    Ok(Exit::Success)
}

/// The declarations of every flag in `groups`, or why some cannot be declared (then none is).
fn declarations(
    rt: &Runtime,
    stores: &Stores,
    groups: &BTreeMap<(String, String), Vec<String>>,
) -> Result<Vec<Declaration>> {
    let mut declarations = Vec::new();
    let mut problems = Vec::new();
    for ((project, environment), flags) in groups {
        let mut found: BTreeMap<&str, Vec<(StoreTarget, Lookup)>> = BTreeMap::new();
        for (target, result) in rt.block_on(stores.list(project, environment, Some(flags))) {
            let listing = result.with_context(|| {
                format!("cannot read {project}/{environment} from {target}; nothing was imported")
            })?;
            for (flag, lookup) in listing.flags {
                if let Some(flag) = flags.iter().find(|f| **f == flag) {
                    found.entry(flag).or_default().push((target.clone(), lookup));
                }
            }
        }
        for flag in flags {
            let id = FlagId {
                project: project.clone(),
                environment: environment.clone(),
                flag: flag.clone(),
            };
            match import::declaration(&id, found.get(flag.as_str()).map_or(&[][..], Vec::as_slice)) {
                Ok(d) => declarations.push(d),
                Err(why) => problems.push(format!("{id}: {why}")),
            }
        }
    }
    refuse(&problems, "flag(s)")?;
    Ok(declarations)
}

/// Fails when any of `what` (`flag(s)`, `key(s)`) cannot be imported, listing why for each, so
/// that nothing is imported.
fn refuse(problems: &[String], what: &str) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "cannot import {} {what}, so nothing was imported:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Adds `declarations` to the overrides file at `path` in place: checked to be a valid overrides
/// file first, then written to a temporary file beside it and renamed over it, keeping what the
/// operator's file is (see [`replace`]). Several imports at once take turns (a lock file beside
/// it, held from the read to the rename), and an edit made meanwhile by anything else (an editor)
/// is found before the rename and refused, so no declaration is lost.
fn write_file(path: &Path, settings: &Settings, declarations: &[Declaration]) -> Result<()> {
    let shown = path.display();
    // Write through a symbolic link rather than replacing it.
    let path = &std::fs::canonicalize(path).with_context(|| format!("cannot resolve {shown}"))?;
    let _turn = take_turn(path, settings)?;
    let read = std::fs::read(path).with_context(|| format!("cannot read the overrides file {shown}"))?;
    let (bom, text) = match read.strip_prefix("\u{feff}".as_bytes()) {
        Some(rest) => ("\u{feff}", rest),
        None => ("", read.as_slice()),
    };
    let text =
        std::str::from_utf8(text).with_context(|| format!("the overrides file {shown} is not UTF-8 text"))?;
    let crlf = text.contains("\r\n") && !text.replace("\r\n", "").contains('\n');
    let edited = import::insert(text, declarations)
        .map_err(|e| anyhow!("not changing {shown}: {e}. Nothing was written"))?;
    crate::desired::parse(path, &edited, &settings.config_env).map_err(|e| {
        anyhow!("not changing {shown}: with the declarations added it would not be a valid overrides file ({e}). Nothing was written")
    })?;
    let edited = match crlf {
        true => edited.replace("\r\n", "\n").replace('\n', "\r\n"),
        false => edited,
    };
    replace(path, &read, format!("{bom}{edited}").as_bytes())
}

/// Waits (10 s at most, said once) for any other relayctl editing the file at `path` to finish,
/// and holds the turn while the returned file is open.
fn take_turn(path: &Path, settings: &Settings) -> Result<std::fs::File> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let lock = path.with_file_name(format!(".{name}.relayctl-lock"));
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .with_context(|| format!("cannot create {}", lock.display()))?;
    let start = std::time::Instant::now();
    let mut told = false;
    while let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            bail!(
                "another relayctl is still editing {} after 10s (it holds {}); run this again once it is done. \
                 Nothing was written",
                path.display(),
                lock.display()
            );
        }
        if !std::mem::replace(&mut told, true) {
            settings.status(format!(
                "Waiting (10 s at most) for another relayctl editing {}...",
                path.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(file)
}

/// Replaces the file at `path`, which held `read`, with `bytes`: refused when it is read-only
/// or changed since it was read; written to a temporary file beside it (on disk before its
/// rename) with the file's mode and owner; and for a file with several hard links, copied into
/// the same file instead, so every link sees the change.
fn replace(path: &Path, read: &[u8], bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    if meta.permissions().readonly() {
        bail!(
            "the overrides file {shown} is read-only (mode {:o}), so relayctl does not change it: make it \
             writable (`chmod u+w`) and run this again, or paste the declarations by hand. Nothing was written",
            meta.mode() & 0o7777
        );
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".relayctl-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file beside {shown}"))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().set_permissions(meta.permissions()))
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write a temporary file beside {shown}"))?;
    // Only root can give a file away; anyone else's file stays theirs as it was made.
    let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()));
    if std::fs::read(path).ok().as_deref() != Some(read) {
        bail!("{shown} changed while relayctl was adding to it (an editor?); nothing was written: run this again");
    }
    if meta.nlink() > 1 {
        // The temporary file stays until the copy is on disk: a copy cut short loses nothing.
        let kept = tmp.into_temp_path();
        let mut file = std::fs::File::options().write(true).truncate(true).open(path)?;
        if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
            let kept = kept.keep()?;
            return Err(e).with_context(|| {
                format!(
                    "cannot write {shown}; what it should hold is in {}",
                    kept.display()
                )
            });
        }
        return Ok(());
    }
    tmp.persist(path)
        .with_context(|| format!("cannot replace {shown}; it was left as it was"))?;
    Ok(())
}
