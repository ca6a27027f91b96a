//! Where a flag's state file lives in the journal's tree, and putting one there.
//!
//! An environment's folder is flat, `<project>/<environment>/<flag>.toml` (SPEC §2), while it
//! holds at most [`FLAT_MAX`] files. Past that, every commit would rewrite a tree of thousands of
//! entries (a journal commit's cost would grow with the flags already held), so the folder fans
//! out as git's own notes do at scale: `<project>/<environment>/<xx>/<flag>.toml`, where `xx` is
//! [`bucket`] of the flag key, the first two hex digits of the key's git blob id
//! (`printf %s "$flag" | git hash-object --stdin | cut -c1-2`), 256 folders at most. The
//! commit that crosses the threshold moves the folder's files (git shows renames); later commits
//! rewrite only the 256-entry folder and the flag's own bucket. The flag key stays in the path,
//! so `git log -p -- '*/<flag>.toml'` still finds it. A folder is fanned out when it holds a
//! folder; readers look in both places, so journals written flat keep reading, and a flat folder
//! larger than the threshold (written before the fan-out existed) fans out on its next commit.
//! A plain Redis key store's folder (`_keys/<store>/<key>.toml`, see [`super::keys`]) is laid
//! out by the same rule, the bucket taken from the key's escaped file name.

use super::pack::ToPack;
use crate::flag::FlagId;
use anyhow::{bail, ensure, Result};
use git2::{ObjectType, Odb, Oid, Repository, Tree};

/// The most files an environment's folder holds flat: the SPEC's path for every environment of
/// up to 256 flags (git notes fan out at the same size). Past it a flat commit rewrites every
/// entry where a fanned-out one rewrites about 256 + flags/256 (measured with the bench in
/// `bench.rs`: 10,000 commits over 10,000 flags took 107 s flat, 6 s fanned out; a release apply
/// of 1,000 changes on loopback Redis took 0.98 s with the threshold at 1,000, 0.54 s at 256).
pub(super) const FLAT_MAX: usize = 256;

const FILE: i32 = 0o100644;
const FOLDER: i32 = 0o040000;

/// The fan-out folder of a flag key: the first two hex digits of the key's git blob id.
pub(super) fn bucket(flag: &str) -> String {
    let id = Oid::hash_object(ObjectType::Blob, flag.as_bytes()).expect("hashing in memory");
    id.to_string()[..2].to_owned()
}

/// The state file's name in its environment's folder.
pub(super) fn file_name(flag: &str) -> String {
    format!("{flag}.toml")
}

/// The blob of the state file of `id` in `root`, in either layout.
pub(super) fn find(repo: &Repository, root: &Tree, id: &FlagId) -> Result<Option<Oid>> {
    find_in(repo, root, [&id.project, &id.environment], &id.flag)
}

/// The blob of the state file `name` in the folder `top/folder` of `root`, in either layout.
pub(super) fn find_in(
    repo: &Repository,
    root: &Tree,
    [top, folder]: [&str; 2],
    name: &str,
) -> Result<Option<Oid>> {
    let at: std::path::PathBuf = [top, folder].iter().collect();
    let env = match root.get_path(&at) {
        Ok(e) if e.kind() == Some(ObjectType::Tree) => repo.find_tree(e.id())?,
        Ok(_) => return Ok(None),
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file = file_name(name);
    if let Some(entry) = env.get_name(&file) {
        return Ok(Some(entry.id()));
    }
    let Some(sub) = subtree((repo, None), Some(&env), &bucket(name))? else {
        return Ok(None);
    };
    Ok(sub.get_name(&file).map(|e| e.id()))
}

/// What the commits held in memory wrote: the objects to pack, each with what it replaces (the
/// base [`super::pack::store`] stores it as a delta of), and about how many bytes they hold.
#[derive(Default)]
pub(super) struct Written {
    pub objects: Vec<ToPack>,
    pub bytes: usize,
}

/// A repository commits are built in, and the journal on disk to copy from what it lacks (see
/// [`super::writer::Memory`]); readers of the journal itself pass `None`.
pub(super) type Building<'a, 'r> = (&'r Repository, Option<&'a Odb<'a>>);

/// The tree `id` of `repo`, copied in from the journal's objects `from` when `repo` lacks it.
pub(super) fn tree<'r>(repo: &'r Repository, from: &Odb, id: Oid) -> Result<Tree<'r>> {
    match repo.find_tree(id) {
        Ok(tree) => Ok(tree),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            copy(from, repo, id)?;
            Ok(repo.find_tree(id)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The folders of the tree `root` that `memory` holds (the root, and below it, as deep as an
/// environment's buckets, each folder held), with their bytes: what the next commits build on.
/// Kept across a flush, they need not be read back from the packs just written: libgit2 keeps
/// what it unpacks from each pack in a cache of its own, so reading back grew an apply's memory
/// with each of its packs (93 MB of 273 MB at 40,000 changes).
pub(super) fn held(memory: &Repository, root: Oid) -> Vec<(Oid, Vec<u8>)> {
    let Ok(odb) = memory.odb() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut folders = vec![(root, 0)];
    while let Some((id, depth)) = folders.pop() {
        let Ok(object) = odb.read(id) else { continue };
        out.push((id, object.data().to_vec()));
        let Ok(tree) = memory.find_tree(id) else { continue };
        if depth < 3 {
            let inner = tree.iter().filter(|e| e.kind() == Some(ObjectType::Tree));
            folders.extend(inner.map(|e| (e.id(), depth + 1)));
        }
    }
    out
}

/// Copies the object `id` from the object database `from` into `to`.
pub(super) fn copy(from: &Odb, to: &Repository, id: Oid) -> Result<()> {
    let object = from.read(id)?;
    let copied = to.odb()?.write(object.kind(), object.data())?;
    ensure!(copied == id, "the journal's object {id} reads back as {copied}");
    Ok(())
}

/// Returns the tree `root` with `blob` as the state file `name` (`<name>.toml`) in the folder
/// `top/folder` (a flag's `<project>/<environment>`, a key's `_keys/<store>`), in the layout
/// that folder has (fanning it out when this file takes it past [`FLAT_MAX`]), written to
/// `repo` (whose folders may be copied in from `from`). Adds what it writes to `written`.
pub(super) fn put(
    (repo, from): (&Repository, &Odb),
    root: &Tree,
    [top, folder]: [&str; 2],
    name: &str,
    blob: Oid,
    written: &mut Written,
) -> Result<Oid> {
    let at = (repo, Some(from));
    let outer = subtree(at, Some(root), top)?;
    let inner = subtree(at, outer.as_ref(), folder)?;
    let inner = put_in_env(at, inner.as_ref(), name, blob, written)?;
    let outer = insert(repo, outer.as_ref(), folder, inner, FOLDER, written)?;
    insert(repo, Some(root), top, outer, FOLDER, written)
}

/// The folder `name` in `tree`, if any.
fn subtree<'r>((repo, from): Building<'_, 'r>, tree: Option<&Tree>, name: &str) -> Result<Option<Tree<'r>>> {
    match tree.and_then(|t| t.get_name(name)) {
        Some(e) if e.kind() == Some(ObjectType::Tree) => match from {
            Some(from) => Ok(Some(self::tree(repo, from, e.id())?)),
            None => Ok(Some(repo.find_tree(e.id())?)),
        },
        Some(_) => bail!("{name} is a file in the journal's tree, where relayctl keeps a folder"),
        None => Ok(None),
    }
}

/// Writes `tree` (or a new tree) with `name` set to `id`; adds it to `written`. The tree's
/// bytes are edited in place rather than rebuilt through libgit2's tree builder, which parses and
/// sorts every entry again (a fifth of apply's time at 20,000 changes).
fn insert(
    repo: &Repository,
    tree: Option<&Tree>,
    name: &str,
    id: Oid,
    mode: i32,
    written: &mut Written,
) -> Result<Oid> {
    if mode == FILE {
        let base = tree.and_then(|t| t.get_name(name)).map(|e| e.id());
        written.objects.push(ToPack { id, base });
    }
    let odb = repo.odb()?;
    let raw = match tree {
        Some(tree) => set_entry(odb.read(tree.id())?.data(), name, mode, id)?,
        None => set_entry(&[], name, mode, id)?,
    };
    written.bytes += raw.len();
    let new = odb.write(ObjectType::Tree, &raw)?;
    written.objects.push(ToPack {
        id: new,
        base: tree.map(Tree::id),
    });
    Ok(new)
}

/// The raw tree `raw` with the entry `name` set to `mode` and `id` (replacing any entry of that
/// name), in git's order: names compared as bytes, a folder's as if it ended in `/`.
pub(super) fn set_entry(raw: &[u8], name: &str, mode: i32, id: Oid) -> Result<Vec<u8>> {
    let folder = mode == FOLDER;
    let mut new = Vec::with_capacity(name.len() + 28);
    new.extend_from_slice(if folder { b"40000 " } else { b"100644 " });
    new.extend_from_slice(name.as_bytes());
    new.push(0);
    new.extend_from_slice(id.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + new.len());
    let mut placed = false;
    let mut rest = raw;
    while !rest.is_empty() {
        let (Some(space), Some(nul)) = (
            rest.iter().position(|&b| b == b' '),
            rest.iter().position(|&b| b == 0),
        ) else {
            bail!("a folder of the journal is not a valid git tree");
        };
        let end = nul + 1 + 20;
        if space > nul || rest.len() < end {
            bail!("a folder of the journal is not a valid git tree");
        }
        let (entry, after) = rest.split_at(end);
        rest = after;
        let entry_name = &entry[space + 1..nul];
        if entry_name == name.as_bytes() {
            continue;
        }
        if !placed && git_order(name.as_bytes(), folder, entry_name, &entry[..space] == b"40000").is_lt() {
            out.extend_from_slice(&new);
            placed = true;
        }
        out.extend_from_slice(entry);
    }
    if !placed {
        out.extend_from_slice(&new);
    }
    Ok(out)
}

/// git's order of tree entries (`base_name_compare`).
fn git_order(a: &[u8], a_folder: bool, b: &[u8], b_folder: bool) -> std::cmp::Ordering {
    let common = a.len().min(b.len());
    a[..common].cmp(&b[..common]).then_with(|| {
        let next = |name: &[u8], folder: bool| match name.get(common) {
            Some(&c) => c,
            None if folder => b'/',
            None => 0,
        };
        next(a, a_folder).cmp(&next(b, b_folder))
    })
}

/// Writes `tb`, adding it to `written` with an estimate of its size (an entry is its mode, name
/// and 20-byte id: about 40 bytes).
fn write(tb: git2::TreeBuilder, written: &mut Written) -> Result<Oid> {
    let oid = tb.write()?;
    written.bytes += tb.len() * 40;
    written.objects.push(ToPack { id: oid, base: None });
    Ok(oid)
}

/// The environment's folder `env` with `blob` as the state file of `flag`.
fn put_in_env(at: Building, env: Option<&Tree>, flag: &str, blob: Oid, written: &mut Written) -> Result<Oid> {
    let repo = at.0;
    let file = file_name(flag);
    let fanned_out = env.is_some_and(|t| t.iter().any(|e| e.kind() == Some(ObjectType::Tree)));
    if fanned_out {
        let name = bucket(flag);
        let sub = subtree(at, env, &name)?;
        let sub = insert(repo, sub.as_ref(), &file, blob, FILE, written)?;
        return insert(repo, env, &name, sub, FOLDER, written);
    }
    let held = env.map_or(0, Tree::len);
    let adds = env.is_none_or(|t| t.get_name(&file).is_none());
    if held + usize::from(adds) <= FLAT_MAX {
        return insert(repo, env, &file, blob, FILE, written);
    }
    fan_out(at, env, &file, blob, written)
}

/// The flat folder `env` fanned out into bucket folders, with `blob` as `file`.
fn fan_out(
    (repo, _): Building,
    env: Option<&Tree>,
    file: &str,
    blob: Oid,
    written: &mut Written,
) -> Result<Oid> {
    let mut buckets: std::collections::BTreeMap<String, Vec<(String, Oid, i32)>> = Default::default();
    let held = env.into_iter().flat_map(Tree::iter);
    for e in held {
        let name = e.name().unwrap_or_default().to_owned();
        if name == file {
            continue;
        }
        let key = name.strip_suffix(".toml").unwrap_or(&name);
        buckets
            .entry(bucket(key))
            .or_default()
            .push((name.clone(), e.id(), e.filemode()));
    }
    let key = file.strip_suffix(".toml").unwrap_or(file);
    let base = env.and_then(|t| t.get_name(file)).map(|e| e.id());
    written.objects.push(ToPack { id: blob, base });
    buckets
        .entry(bucket(key))
        .or_default()
        .push((file.to_owned(), blob, FILE));
    let mut top = repo.treebuilder(None)?;
    for (name, files) in buckets {
        let mut tb = repo.treebuilder(None)?;
        for (file, id, mode) in files {
            tb.insert(file, id, mode)?;
        }
        top.insert(name, write(tb, written)?, FOLDER)?;
    }
    write(top, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Editing a tree's bytes gives the tree libgit2's builder writes, in git's order, whatever
    /// the names (prefixes of each other, folders beside files of the same stem, replacements).
    #[test]
    fn set_entry_writes_the_tree_libgit2_writes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let blob = repo.blob(b"state").unwrap();
        let other = repo.blob(b"other").unwrap();
        let folder = repo.treebuilder(None).unwrap().write().unwrap();
        let names = [
            ("a.toml", FILE, blob),
            ("a", FOLDER, folder),
            ("a-b.toml", FILE, blob),
            ("a.b", FOLDER, folder),
            ("ab", FILE, blob),
            ("a.toml", FILE, other),
            ("0f", FOLDER, folder),
            ("Z", FILE, blob),
            ("a", FOLDER, folder),
            ("é.toml", FILE, other),
            ("a0", FILE, blob),
        ];
        let (mut raw, mut tb) = (Vec::new(), repo.treebuilder(None).unwrap());
        for (name, mode, id) in names {
            raw = set_entry(&raw, name, mode, id).unwrap();
            tb.insert(name, id, mode).unwrap();
            let expected = repo.find_object(tb.write().unwrap(), None).unwrap();
            let odb = repo.odb().unwrap();
            assert_eq!(odb.read(expected.id()).unwrap().data(), &raw[..], "after {name}");
        }
        assert!(set_entry(b"100644 broken", "x", FILE, blob).is_err());
    }
}
