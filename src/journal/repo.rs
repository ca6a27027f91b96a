//! The journal's repository as a place (SPEC §2 "The journal"): creating it marked as
//! relayctl's, recognising it, and checking, before anything is written anywhere, that relayctl
//! may commit there: its own journal (never the operator's repository), HEAD on the journal's
//! branch, the branch present (never a new history started over a lost one), no lock file git
//! left behind. Also the process lock that serialises relayctl runs.
//!
//! The mark is two keys in the repository's own `.git/config` (`relayctl.journal`,
//! `relayctl.branch`). A journal an earlier relayctl wrote, before the mark existed, is
//! recognised by its root commit ("Start the relayctl journal", holding README.md) and marked
//! by the first run that locks it, so an upgrade never strands an outage's unsynced commits.
//! This module writes no commit and never touches the working tree.

use anyhow::{anyhow, bail, Context, Result};
use git2::{ConfigLevel, ErrorCode, ObjectType, Oid, Repository, RepositoryOpenFlags};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The subject of every journal's root commit.
pub(super) const ROOT_SUBJECT: &str = "Start the relayctl journal";
const MARK: &str = "relayctl.journal";
const BRANCH: &str = "relayctl.branch";

/// What opening found at the journal path.
pub(super) struct Found {
    /// Marked as relayctl's; otherwise a journal of an earlier relayctl, or an empty repository
    /// (a fresh `git init`), to be marked under the lock.
    pub marked: bool,
    /// The branch recorded in the mark.
    pub branch: Option<String>,
}

/// The journal's branch, as HEAD names it.
pub(super) struct Branch {
    /// The full reference name, `refs/heads/<name>`.
    pub name: String,
    /// Whether it has commits: false only for a journal without its initial commit yet.
    pub born: bool,
}

fn short(name: &str) -> &str {
    name.strip_prefix("refs/heads/").unwrap_or(name)
}

/// Opens the repository at `path` (exactly there: a repository above it is not the journal).
/// `None` if there is nothing at `path`.
fn open_at(path: &Path) -> Result<Option<Repository>> {
    tune()?;
    let flags = RepositoryOpenFlags::NO_SEARCH;
    match Repository::open_ext(path, flags, std::iter::empty::<&std::ffi::OsStr>()) {
        Ok(repo) => Ok(Some(repo)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("opening the journal {}", path.display()))),
    }
}

/// Sets libgit2's global options for the journal's workload.
fn tune() -> Result<()> {
    // Every object a journal commit references was written by relayctl a moment before, so
    // libgit2's check that it exists (a file read per tree entry and parent) is pure cost.
    git2::opts::strict_object_creation(false);
    // libgit2 caches only objects under 4 KiB by default, so the tree of an environment with many
    // flags would be read back from disk and inflated for every commit.
    // SAFETY: this only sets a global size limit; relayctl opens its one journal from one thread.
    // libgit2 keeps every packfile it has read from open, with no limit by default; a journal
    // gains a packfile or a few per apply, so reading a long-lived one (`log`, sync) ran out of
    // file descriptors (1,024 per process is common) and failed as "object not found". It closes
    // the least recently used past this many.
    // SAFETY: as above.
    unsafe {
        git2::opts::set_cache_object_limit(ObjectType::Tree, 16 << 20)?;
        git2::opts::set_cache_object_limit(ObjectType::Commit, 1 << 20)?;
        git2::opts::set_mwindow_file_limit(OPEN_PACKS)?;
    }
    Ok(())
}

/// The most packfiles libgit2 keeps open at once (see [`tune`]).
const OPEN_PACKS: usize = 64;

/// Opens the journal at `path` if there is one; refuses a repository that is not a journal.
pub(super) fn open_existing(path: &Path) -> Result<Option<(Repository, Found)>> {
    if !path.exists() {
        return Ok(None);
    }
    let Some(repo) = open_at(path)? else {
        bail!(
            "{} exists but is not a git repository; point journal.path at the journal",
            path.display()
        );
    };
    let found = recognise(&repo, path)?;
    Ok(Some((repo, found)))
}

/// Opens the journal at `path`, creating it (marked) if absent; refuses a repository that is not
/// a journal.
///
/// The lock lives inside the repository, so creation cannot be under it: the repository is
/// initialised and marked in a temporary directory beside `path` and renamed into place, so two
/// relayctl processes creating the journal at once never see a half-made one. The loser of the
/// rename opens the winner's repository.
pub(super) fn open_or_init(path: &Path) -> Result<(Repository, Found)> {
    let missing = open_at(path)?.is_none();
    if missing && path.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "the journal path {} is a non-empty directory that is not a git repository; \
             point journal.path at an empty or new directory",
            path.display()
        );
    }
    if missing {
        create(path)?;
    }
    open_existing(path)?.with_context(|| format!("opening the journal {}", path.display()))
}

fn create(path: &Path) -> Result<()> {
    let context = || format!("creating the journal repository {}", path.display());
    let (tmp, repo) = init_beside(path).with_context(context)?;
    let head = repo.find_reference("HEAD").with_context(context)?;
    let branch = head.symbolic_target().unwrap_or("refs/heads/master").to_owned();
    mark(&repo, &branch).with_context(context)?;
    // Fails only when another process has just put its repository there: use that one.
    let _ = std::fs::rename(tmp.path(), path);
    Ok(())
}

/// A new repository in a temporary directory beside `path` (for the caller to fill and rename
/// into place, so a journal never exists half made), without reflogs: the commits are the audit
/// trail, and a reflog entry per commit would only double the writes.
pub(super) fn init_beside(path: &Path) -> Result<(tempfile::TempDir, Repository)> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".relayctl-journal-")
        .tempdir_in(parent)?;
    let repo = Repository::init(tmp.path())?;
    repo.config()
        .and_then(|mut c| c.set_bool("core.logAllRefUpdates", false))?;
    Ok((tmp, repo))
}

/// Records in the repository's own config that it is relayctl's journal, on `branch`.
pub(super) fn mark(repo: &Repository, branch: &str) -> Result<()> {
    let mut config = repo.config()?.open_level(ConfigLevel::Local)?;
    config.set_bool(MARK, true)?;
    config.set_str(BRANCH, branch)?;
    Ok(())
}

/// Whether `repo` is a journal: marked, written by an earlier relayctl, or empty.
fn recognise(repo: &Repository, path: &Path) -> Result<Found> {
    let context = || format!("reading the journal {}", path.display());
    let local = repo
        .config()
        .and_then(|c| c.open_level(ConfigLevel::Local))
        .with_context(context)?;
    if local.get_bool(MARK).unwrap_or(false) {
        return Ok(Found {
            marked: true,
            branch: local.get_string(BRANCH).ok(),
        });
    }
    let unmarked = Found {
        marked: false,
        branch: None,
    };
    let not_ours = |why: &str| {
        anyhow!(
            "{} is a git repository but not a relayctl journal ({why}); relayctl writes only to a \
             journal it created, so it does not commit to this one or touch its files. Point \
             journal.path at a new directory (e.g. \"journal\" beside the overrides file)",
            path.display()
        )
    };
    if repo.is_bare() {
        return Err(not_ours("it is a bare repository"));
    }
    if let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) {
        return match root_of(repo, head).with_context(context)? {
            true => Ok(unmarked),
            false => Err(not_ours(&format!("its first commit is not {ROOT_SUBJECT:?}"))),
        };
    }
    // No commit on HEAD: an empty repository, or a journal whose branch was lost.
    let commits = commits(repo).with_context(context)?;
    if commits.iter().any(|c| is_root(repo, *c)) {
        return Ok(unmarked);
    }
    if !commits.is_empty() {
        return Err(not_ours("none of its commits is a journal's first commit"));
    }
    let workdir = repo.workdir().unwrap_or(path);
    let empty = std::fs::read_dir(workdir)
        .with_context(context)?
        .all(|e| e.is_ok_and(|e| e.file_name() == ".git"));
    if !empty {
        return Err(not_ours("it has no commits, and files relayctl did not write"));
    }
    Ok(unmarked)
}

/// Whether the first-parent history of `tip` starts with a journal's root commit.
pub(super) fn root_of(repo: &Repository, tip: git2::Commit) -> Result<bool> {
    let mut commit = tip;
    while let Ok(parent) = commit.parent(0) {
        commit = parent;
    }
    Ok(is_root(repo, commit.id()))
}

/// Whether `oid` is a journal's root commit: no parent, the subject, README.md alone.
fn is_root(repo: &Repository, oid: Oid) -> bool {
    let Ok(commit) = repo.find_commit(oid) else {
        return false;
    };
    let tree = commit.tree();
    commit.parent_count() == 0
        && commit.message().is_some_and(|m| m.trim() == ROOT_SUBJECT)
        && tree.is_ok_and(|t| t.len() == 1 && t.get_name("README.md").is_some())
}

/// Every commit object in the repository.
fn commits(repo: &Repository) -> Result<Vec<Oid>> {
    let odb = repo.odb()?;
    let mut out = Vec::new();
    odb.foreach(|oid| {
        if odb
            .read_header(*oid)
            .is_ok_and(|(_, kind)| kind == ObjectType::Commit)
        {
            out.push(*oid);
        }
        true
    })
    .or_else(|e| {
        if e.code() == ErrorCode::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(out)
}

/// Checks that relayctl may commit to the journal's branch: HEAD names it (not detached, not
/// another branch) and it exists, unless the repository has no commit at all yet.
pub(super) fn branch(repo: &Repository, path: &Path, found: &Found) -> Result<Branch> {
    let context = || format!("reading the journal {}", path.display());
    let head = repo.find_reference("HEAD").with_context(context)?;
    let at = shell_word(&path.display().to_string());
    let Some(target) = head.symbolic_target().map(str::to_owned) else {
        let name = found
            .branch
            .clone()
            .or_else(|| only_branch(repo))
            .map_or("<branch>".to_owned(), |b| short(&b).to_owned());
        let commit = head.target().map(|o| o.to_string()).unwrap_or_default();
        bail!(
            "the journal {} has a detached HEAD (at {}): relayctl commits only on the journal's branch, \
             where log and sync look. Put HEAD back on it with `git -C {at} checkout {name}` (`git -C {at} \
             branch` lists the branches), then run this again",
            path.display(),
            &commit[..commit.len().min(12)]
        );
    };
    let name = found.branch.clone().unwrap_or(target.clone());
    if target != name {
        bail!(
            "HEAD of the journal {} is on branch {}, but the journal's branch is {}: relayctl commits only \
             there, where log and sync look. Run `git -C {at} checkout {}`, then run this again",
            path.display(),
            short(&target),
            short(&name),
            short(&name)
        );
    }
    match repo.find_reference(&name) {
        Ok(_) => Ok(Branch { name, born: true }),
        Err(e) if e.code() == ErrorCode::NotFound => {
            if commits(repo).with_context(context)?.is_empty() {
                return Ok(Branch { name, born: false });
            }
            let restore = match newest_tip(repo) {
                Some(oid) => format!("`git -C {at} branch {} {oid}` (its newest commit)", short(&name)),
                None => format!(
                    "`git -C {at} branch {} <commit>` with its newest commit (`git -C {at} fsck --lost-found` \
                     lists commits no branch holds)",
                    short(&name)
                ),
            };
            bail!(
                "the journal {} has lost its branch {}: HEAD names it but it does not exist, so the \
                 journal's history cannot be found. relayctl will not start a new history, which would \
                 hide every earlier change from sync. Restore the branch with {restore}, then run this again",
                path.display(),
                short(&name)
            )
        }
        Err(e) => Err(anyhow!(e).context(context())),
    }
}

/// The one local branch, if there is exactly one.
fn only_branch(repo: &Repository) -> Option<String> {
    let mut names = repo
        .branches(Some(git2::BranchType::Local))
        .ok()?
        .filter_map(|b| b.ok()?.0.get().name().map(str::to_owned));
    let first = names.next()?;
    names.next().is_none().then_some(first)
}

/// The newest journal commit that no other commit has as a parent: the tip of a lost branch.
fn newest_tip(repo: &Repository) -> Option<Oid> {
    let commits = commits(repo).ok()?;
    let mut parents = std::collections::HashSet::new();
    let mut found = Vec::new();
    for oid in &commits {
        let commit = repo.find_commit(*oid).ok()?;
        parents.extend(commit.parent_ids());
        let journal = super::message::is_flag_commit(commit.message().unwrap_or(""))
            || commit.message().is_some_and(|m| m.trim() == ROOT_SUBJECT);
        if journal {
            found.push((commit.time().seconds(), *oid));
        }
    }
    found
        .into_iter()
        .filter(|(_, oid)| !parents.contains(oid))
        .max()
        .map(|(_, oid)| oid)
}

/// The file relayctl keeps while it moves one of its refs (the branch, the sync notes), naming
/// the lock file libgit2 takes for it. A relayctl killed in that moment leaves that lock file
/// behind, which would otherwise stop every later run as if a git command held it; the marker
/// tells the next relayctl (which holds the journal lock, so the one that left it is gone) that
/// the lock file is its own to remove.
const MOVING_REF: &str = "relayctl-moving-ref";

/// Points the ref `name` at `to`, under the marker [`MOVING_REF`], and saves it to disk (the
/// write-ahead log lets go of the commits it now reaches right after).
pub(super) fn move_ref(repo: &Repository, name: &str, to: Oid, log: &str) -> Result<()> {
    let marker = repo.path().join(MOVING_REF);
    std::fs::write(&marker, format!("{name}.lock\n"))
        .with_context(|| format!("writing {}", marker.display()))?;
    let moved = repo.reference(name, to, true, log);
    let _ = std::fs::remove_file(&marker);
    moved.with_context(|| format!("moving {name} to {to}"))?;
    let file = repo.path().join(name);
    let saved = File::open(&file).and_then(|f| f.sync_all());
    saved.with_context(|| format!("saving {} to disk", file.display()))?;
    super::pack::sync_dir(file.parent().unwrap_or(repo.path()))
}

/// Removes the lock file a relayctl killed while moving a ref left (see [`MOVING_REF`]); call
/// under the journal lock. Returns the lock file removed, if any.
fn release_own_lock(git_dir: &Path) -> Result<Option<PathBuf>> {
    let marker = git_dir.join(MOVING_REF);
    let named = match std::fs::read_to_string(&marker) {
        Ok(named) => named,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", marker.display())),
    };
    let named = named.trim();
    let ours = named.starts_with("refs/") && named.ends_with(".lock") && !named.contains("..");
    let lock = git_dir.join(named);
    let released = match ours && lock.is_file() {
        true => {
            std::fs::remove_file(&lock).with_context(|| format!("removing {}", lock.display()))?;
            Some(lock)
        }
        false => None,
    };
    std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    Ok(released)
}

/// Refuses when git left a lock file that a commit, the branch update or the working tree
/// update would need: found before any store write rather than after. A ref's lock file that a
/// killed relayctl left is removed instead, and returned.
pub(super) fn check_lock_files(repo: &Repository, path: &Path, branch: &Branch) -> Result<Option<PathBuf>> {
    let git_dir = repo.path();
    let released = release_own_lock(git_dir)?;
    let names = [
        "index.lock".to_owned(),
        "HEAD.lock".to_owned(),
        "config.lock".to_owned(),
        "packed-refs.lock".to_owned(),
        format!("{}.lock", branch.name),
        format!("{}.lock", super::notes::NOTES_REF),
    ];
    for name in names {
        let lock = git_dir.join(&name);
        if lock.exists() {
            bail!(
                "the journal {} is locked by git: {} exists, so a git command is running in the journal \
                 or one was stopped before it finished. Nothing was written. If no git command is running \
                 there, delete it (`rm {}`) and run this again",
                path.display(),
                lock.display(),
                shell_word(&lock.display().to_string())
            );
        }
    }
    Ok(released)
}

/// `word` as one shell word, quoted only when it needs to be.
pub(super) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Another relayctl holds a lock longer than this one may wait: the message says who and what
/// to do. Commands that can try again later (`sync --wait`) tell it from other errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockBusy(pub String);

/// Takes the journal lock (an OS file lock, released automatically if the process dies).
pub(super) fn lock(repo: &Repository, path: &Path, options: &super::Options) -> Result<File> {
    let still = |who: &str, waited: u64, lock: &Path| {
        format!(
            "{who} is still writing to the journal {} after {waited}s; let it finish and run this again \
             (the lock {} is released as soon as that process exits)",
            path.display(),
            lock.display()
        )
    };
    lock_file(
        &repo.path().join("relayctl.lock"),
        "pid",
        "the journal lock",
        options,
        &still,
    )
}

/// Takes the OS file lock `lock_path` (`name` in messages), waiting up to `options.lock_wait`
/// for the process named in it (said once through `options.on_wait`), and writes `<tag> <our
/// pid>` into it. Fails with [`LockBusy`] (`still(who, seconds waited, lock_path)`) when the
/// wait runs out or an interruption is requested; a wait of zero tries once.
pub(super) fn lock_file(
    lock_path: &Path,
    tag: &str,
    name: &str,
    options: &super::Options,
    still: &dyn Fn(&str, u64, &Path) -> String,
) -> Result<File> {
    let context = || format!("locking the journal {}", lock_path.display());
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .with_context(context)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = File::open(lock_path).and_then(|mut f| f.read_to_string(&mut holder));
                // What another relayctl wrote there: a pid, shown as text without control characters.
                let holder: String = holder
                    .trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(80)
                    .collect();
                let who = if holder.is_empty() {
                    "another relayctl".to_owned()
                } else {
                    format!("another relayctl ({holder})")
                };
                if start.elapsed() >= options.lock_wait {
                    return Err(LockBusy(still(&who, options.lock_wait.as_secs(), lock_path)).into());
                }
                if crate::interrupt::requested() {
                    let what = format!(
                        "interrupted while waiting for {who} to release {}",
                        lock_path.display()
                    );
                    return Err(LockBusy(what).into());
                }
                if !told {
                    (options.on_wait)(&format!(
                        "Waiting for {who} to release {name} {}...",
                        lock_path.display()
                    ));
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(anyhow!(e).context(context())),
        }
    }
    file.set_len(0).with_context(context)?;
    file.rewind().with_context(context)?;
    write!(file, "{tag} {}", std::process::id()).with_context(context)?;
    Ok(file)
}
