//! Compacting the journal's packfiles: each apply adds one or a few, each sync a notes pack, and
//! libgit2 keeps at most 64 open, so past [`MAX_PACKS`] relayctl merges them into one, under the
//! journal's lock, before it reads or writes anything else.
//!
//! The merge copies every object's entry as it is stored (its compressed bytes, its delta)
//! instead of asking libgit2's pack builder to inflate and search for deltas again: only the
//! distance of an offset delta to its base is rewritten, since the base moved, and an object
//! stored in two packs (a state file written again with the same text) is kept once, its deltas
//! pointed at the copy kept. It costs a read and a write of the packs merged. What it writes is
//! checked as every pack relayctl writes is ([`pack::check_and_store`]), and the packs merged are
//! deleted only once the new one holds all their objects. The largest pack is left alone while it
//! holds more than all the others together, so a compaction copies about what was added since
//! the last one, not the whole history every time.

use super::pack;
use anyhow::{ensure, Context, Result};
use git2::{Oid, Repository};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How many packfiles a journal may hold before relayctl merges them: half what libgit2 keeps
/// open, so reading never juggles packs, and each object lookup searches few indexes.
pub const MAX_PACKS: usize = 32;

/// The pack entry type of a delta whose base is named by its offset in the same pack.
const OFS_DELTA: u8 = 6;

/// One packfile of the journal: its path and its size in bytes.
struct Pack {
    path: PathBuf,
    size: u64,
}

/// Merges the journal's packfiles when there are more than [`MAX_PACKS`]; call under the lock.
/// Returns how many were merged into one (0 when there was nothing to do). `on_start` is told
/// before the work starts, so the wait is said out loud.
pub(super) fn compact(repo: &Repository, on_start: &dyn Fn(&str)) -> Result<usize> {
    let dir = repo.path().join("objects").join("pack");
    let context = || format!("compacting the packfiles of {}", dir.display());
    // A pack directory that cannot be listed is the writer's to report, when it writes there.
    let Ok(mut packs) = packs(&dir) else {
        return Ok(0);
    };
    if packs.len() <= MAX_PACKS {
        return Ok(0);
    }
    packs.sort_by_key(|p| p.size);
    let rest: u64 = packs[..packs.len() - 1].iter().map(|p| p.size).sum();
    if packs.last().is_some_and(|largest| largest.size > rest) {
        packs.pop();
    }
    on_start(&format!(
        "Compacting {} packfiles of the journal ({} KiB) into one...",
        packs.len(),
        packs.iter().map(|p| p.size).sum::<u64>() / 1024
    ));
    let (merged, ids) = merge(&packs).with_context(context)?;
    let merged = pack::check_and_store(repo, &merged).with_context(context)?;
    let held = index(&std::fs::read(merged.with_extension("idx"))?).with_context(context)?;
    let held: std::collections::HashSet<Oid> = held.into_iter().map(|(id, _)| id).collect();
    ensure!(
        ids.iter().all(|id| held.contains(id)),
        "the merged packfile {} lacks objects of the packs it merges; they are left as they were",
        merged.display()
    );
    super::damage::note_whole(repo, &merged);
    for p in &packs {
        for ext in ["pack", "idx", "rev", "bitmap", "mtimes"] {
            match std::fs::remove_file(p.path.with_extension(ext)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", p.path.display()))
                }
                _ => {}
            }
        }
    }
    // A multi-pack index names packs that are gone now; git and libgit2 read well without one.
    let _ = std::fs::remove_file(dir.join("multi-pack-index"));
    pack::sync_dir(&dir)?;
    Ok(packs.len())
}

/// The packfiles in `dir` that relayctl may merge: each with its index, none kept (`.keep`).
fn packs(dir: &Path) -> Result<Vec<Pack>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let mergeable = path.extension().is_some_and(|e| e == "pack")
            && path.with_extension("idx").is_file()
            && !path.with_extension("keep").exists();
        if mergeable {
            let size = std::fs::metadata(&path)?.len();
            out.push(Pack { path, size });
        }
    }
    Ok(out)
}

/// One packfile holding every object of `packs` once, and their ids.
fn merge(packs: &[Pack]) -> Result<(Vec<u8>, Vec<Oid>)> {
    let mut out = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
    // Where each object went in `out`.
    let mut placed: HashMap<Oid, u64> = HashMap::new();
    for p in packs {
        let bytes = std::fs::read(&p.path).with_context(|| format!("reading {}", p.path.display()))?;
        let idx = std::fs::read(p.path.with_extension("idx"))?;
        let mut entries =
            index(&idx).with_context(|| format!("reading the index of {}", p.path.display()))?;
        entries.sort_by_key(|&(_, offset)| offset);
        let end = u64::try_from(bytes.len())?
            .checked_sub(20)
            .context("a packfile shorter than its checksum")?;
        // Where each entry of this pack went (or the copy kept of it), by its offset here.
        let mut moved: HashMap<u64, u64> = HashMap::new();
        for (i, &(id, at)) in entries.iter().enumerate() {
            let next = entries.get(i + 1).map_or(end, |&(_, o)| o);
            if let Some(&kept) = placed.get(&id) {
                moved.insert(at, kept);
                continue;
            }
            let start = u64::try_from(out.len())?;
            let raw = bytes
                .get(usize::try_from(at)?..usize::try_from(next)?)
                .context("an index offset past its packfile")?;
            copy_entry(&mut out, raw, at, start, &moved)?;
            moved.insert(at, start);
            placed.insert(id, start);
        }
    }
    let count = u32::try_from(placed.len()).context("too many objects for one packfile")?;
    out[8..12].copy_from_slice(&count.to_be_bytes());
    Ok((out, placed.into_keys().collect()))
}

/// Appends the entry `raw`, found at offset `at` of its pack, at offset `start` of `out`: as it
/// is, but for an offset delta, whose distance to its base (moved as `moved` says) is rewritten.
fn copy_entry(out: &mut Vec<u8>, raw: &[u8], at: u64, start: u64, moved: &HashMap<u64, u64>) -> Result<()> {
    let header = raw
        .iter()
        .position(|b| b & 0x80 == 0)
        .context("a truncated entry header")?
        + 1;
    let kind = (raw[0] >> 4) & 0x07;
    if kind != OFS_DELTA {
        out.extend_from_slice(raw);
        return Ok(());
    }
    let (back, len) = pack::read_offset(&raw[header..]).context("a truncated delta offset")?;
    let base = at
        .checked_sub(back)
        .context("a delta whose base is before its pack")?;
    let base = *moved
        .get(&base)
        .context("a delta whose base is not an entry of its pack")?;
    out.extend_from_slice(&raw[..header]);
    pack::offset_back(out, start - base);
    out.extend_from_slice(&raw[header + len..]);
    Ok(())
}

/// The objects a pack index (version 2) lists, with their offsets in its pack.
fn index(idx: &[u8]) -> Result<Vec<(Oid, u64)>> {
    ensure!(
        idx.get(..8) == Some(b"\xfftOc\0\0\0\x02"),
        "not a version 2 pack index"
    );
    let word = |at: usize| -> Result<u32> {
        let bytes = idx.get(at..at + 4).context("a truncated pack index")?;
        Ok(u32::from_be_bytes(bytes.try_into()?))
    };
    let count = usize::try_from(word(8 + 255 * 4)?)?;
    let ids = 8 + 256 * 4;
    let offsets = ids + count * 24;
    let large = offsets + count * 4;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let id = Oid::from_bytes(
            idx.get(ids + i * 20..ids + i * 20 + 20)
                .context("a truncated pack index")?,
        )?;
        let small = word(offsets + i * 4)?;
        let offset = match small & 0x8000_0000 {
            0 => u64::from(small),
            _ => {
                let at = large + usize::try_from(small & 0x7fff_ffff)? * 8;
                let bytes = idx.get(at..at + 8).context("a truncated pack index")?;
                u64::from_be_bytes(bytes.try_into()?)
            }
        };
        out.push((id, offset));
    }
    Ok(out)
}
