//! Finding damage to the journal before anything relies on it: a pack or index deleted, cut
//! short, emptied, with a bad header or a byte changed; a commit or folder of the branch's tip
//! that cannot be read. An apply must know the journal can record its changes before it writes
//! to a store, and `log`, `sync` and `verify` must say what is wrong instead of libgit2's
//! "object not found".
//!
//! Each pack is checked whole (its SHA-1 against its trailer, which its index also names) the
//! first time relayctl opens the journal with it, and then again whenever its size or time
//! changes: [`CHECKED`] lists the packs found whole, so a run re-reads only what is new (relayctl
//! checked its own packs as it wrote them, through libgit2's indexer). Every run checks that each
//! pack has its index and each index its pack, and their headers; and the branch's tip, with
//! every folder and file of its tree.

use anyhow::{bail, ensure, Context, Result};
use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};
use sha1::{Digest, Sha1};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The file in `.git` listing the packs found whole: `<name> <size> <mtime ns>` per line.
const CHECKED: &str = "relayctl-checked-packs";

/// Notes `pack`, which relayctl has just written and libgit2's indexer read whole, as whole:
/// [`check`] need not read it again.
pub(super) fn note_whole(repo: &Repository, pack: &Path) {
    let record = repo.path().join(CHECKED);
    let Ok(stamp) = stamp(pack) else { return };
    let mut known = std::fs::read_to_string(&record).unwrap_or_default();
    known.push_str(&stamp);
    known.push('\n');
    save(repo, &record, &known);
}

/// Replaces `record` with `text` in one rename. Only an optimization: a run that cannot note it
/// (a read-only journal, a full disk) reads the packs again next time.
fn save(repo: &Repository, record: &Path, text: &str) {
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(repo.path()) {
        if std::io::Write::write_all(&mut tmp, text.as_bytes()).is_ok() {
            let _ = tmp.persist(record);
        }
    }
}

/// An error saying the journal at `path` is damaged, what is wrong, and what to do.
pub(super) fn damaged(path: &Path, what: &str) -> anyhow::Error {
    let at = super::repo::shell_word(&path.display().to_string());
    anyhow::anyhow!(
        "the journal {} is damaged: {what}. relayctl reads and writes nothing more there, and wrote \
         nothing to the stores. See what git finds with `git -C {at} fsck --full`. To recover, restore \
         the journal from a backup or a copy of it (a teammate's clone); without one, move it aside \
         (`mv {at} {at}.damaged`), and the next apply starts a new journal: compare LaunchDarkly with \
         the stores (`relayctl show`, `relayctl verify`) for what the damaged one recorded and sync had \
         not replayed",
        path.display()
    )
}

/// Checks the packs (see the module's documentation) and the branch's tip `branch` of the
/// journal `repo` at `path`.
pub(super) fn check(repo: &Repository, path: &Path, branch: &str) -> Result<()> {
    let dir = repo.path().join("objects").join("pack");
    let packs = pairs(&dir).map_err(|e| damaged(path, &format!("{e:#}")))?;
    let record = repo.path().join(CHECKED);
    let known: BTreeSet<String> = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut whole = Vec::new();
    for pack in &packs {
        let stamp = stamp(pack)?;
        let checked = match known.contains(&stamp) {
            true => headers(pack),
            false => headers(pack).and_then(|()| checksum(pack)),
        };
        checked.map_err(|e| damaged(path, &format!("{}: {e:#}", pack.display())))?;
        whole.push(stamp);
    }
    tip(repo, branch).map_err(|e| damaged(path, &format!("{e:#}")))?;
    if whole.iter().any(|s| !known.contains(s)) {
        save(repo, &record, &(whole.join("\n") + "\n"));
    }
    Ok(())
}

/// Every `.pack` of `dir`, each of which has its `.idx`, and no `.idx` without its pack.
fn pairs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut packs = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Nothing to check where there is no pack directory; one that is not a directory fails
        // the first write there, which says so (the write-ahead log keeps what it held).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(packs)
        }
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let file = entry?.path();
        let (pack, idx) = (file.with_extension("pack"), file.with_extension("idx"));
        match file.extension().and_then(|e| e.to_str()) {
            Some("pack") if !idx.is_file() => bail!("{} has no index {}", file.display(), idx.display()),
            Some("idx") if !pack.is_file() => {
                bail!("the index {} has no pack {}", file.display(), pack.display())
            }
            Some("pack") => packs.push(file),
            _ => {}
        }
    }
    packs.sort();
    Ok(packs)
}

/// What identifies a pack as it is now: its name, size and time.
fn stamp(pack: &Path) -> Result<String> {
    let meta = std::fs::metadata(pack).with_context(|| format!("reading {}", pack.display()))?;
    let name = pack.file_name().unwrap_or_default().to_string_lossy();
    Ok(format!(
        "{name} {} {}.{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// The pack's and its index's headers, and the pack's trailer is the checksum its index names.
fn headers(pack: &Path) -> Result<()> {
    let idx = std::fs::read(pack.with_extension("idx")).context("reading its index")?;
    ensure!(
        idx.len() >= 8 + 256 * 4 + 40 && idx.starts_with(b"\xfftOc\0\0\0\x02"),
        "its index is empty, cut short or not a pack index"
    );
    let mut file = std::fs::File::open(pack)?;
    let size = file.metadata()?.len();
    let mut head = [0u8; 8];
    ensure!(
        size >= 32 && file.read_exact(&mut head).is_ok() && head == *b"PACK\0\0\0\x02",
        "it is empty, cut short or not a pack"
    );
    let mut trailer = [0u8; 20];
    std::io::Seek::seek(&mut file, std::io::SeekFrom::End(-20))?;
    file.read_exact(&mut trailer)?;
    ensure!(
        idx[idx.len() - 40..idx.len() - 20] == trailer,
        "it is not the pack its index describes (cut short, or changed)"
    );
    Ok(())
}

/// The pack's SHA-1, over all of it but its trailer, is its trailer.
fn checksum(pack: &Path) -> Result<()> {
    let bytes = std::fs::read(pack)?;
    let (body, trailer) = bytes.split_at(bytes.len() - 20);
    ensure!(
        Sha1::digest(body).as_slice() == trailer,
        "its content does not match its checksum: a byte in it changed"
    );
    Ok(())
}

/// The branch's tip can be read, with every folder and file of its tree: read through a handle
/// of its own, closed when this returns, so the packs it opened are closed too (a journal may
/// hold more packs than the process may keep open).
fn tip(repo: &Repository, branch: &str) -> Result<()> {
    let repo = &Repository::open(repo.path())?;
    let Ok(reference) = repo.find_reference(branch) else {
        return Ok(()); // a journal not born yet
    };
    let commit = reference.peel_to_commit().context("reading the newest commit")?;
    let tree = commit.tree().context("reading the newest commit's tree")?;
    let odb = repo.odb()?;
    let mut missing = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |folder, entry| {
        let readable = match entry.kind() {
            Some(ObjectType::Tree) => repo.find_tree(entry.id()).is_ok(),
            _ => odb.exists(entry.id()),
        };
        if readable {
            return TreeWalkResult::Ok;
        }
        missing = Some(format!("{folder}{}", entry.name().unwrap_or("?")));
        TreeWalkResult::Abort
    });
    match (missing, walked) {
        (Some(file), _) => bail!("{file} of the newest commit cannot be read"),
        (None, Err(e)) => bail!("a folder of the newest commit cannot be read ({})", e.message()),
        (None, Ok(())) => Ok(()),
    }
}
