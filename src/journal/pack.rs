//! Writing the objects a run of commits added as one packfile, and checking it before anything
//! relies on it. A leaf: it knows git's pack format (`gitformat-pack(5)`, version 2) and nothing
//! of the journal.
//!
//! Each journal commit changes one file, so each tree it writes is the same folder of the commit
//! before with one entry changed: stored as a delta of that folder (copy what comes before the
//! change, insert the changed bytes, copy what follows), it takes tens of bytes. relayctl knows
//! which folder each tree replaces, so it writes those deltas itself instead of asking libgit2's
//! pack builder to search for them (the search was a third of apply's time at 20,000 changes).
//! A delta chain is cut at [`MAX_DEPTH`] (git's own default) so reading any version stays cheap.
//!
//! Nothing relayctl wrote by hand is trusted: [`store`] streams the pack through libgit2's
//! indexer, which inflates every object, applies every delta, hashes every object, checks the
//! pack's checksum and that every object a commit or tree names exists, and writes the index
//! from what it read; then every object meant to be written must read back by its id. Only then
//! may a ref move to the commits it holds.

use anyhow::{ensure, Context, Result};
use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Odb, Oid, Repository};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The longest delta chain written (`git repack`'s default `--depth`).
const MAX_DEPTH: u32 = 50;

/// The pack entry type of an object stored as a delta of an earlier entry of the same pack.
const OFS_DELTA: u8 = 6;

/// An object to pack and, when known, the object it replaces (the same file or folder in the
/// parent commit), which it is stored as a delta of when that one is in the same pack.
#[derive(Debug, Clone, Copy)]
pub(super) struct ToPack {
    pub id: Oid,
    pub base: Option<Oid>,
}

/// Where an object went in the pack being written.
struct Placed {
    offset: u64,
    depth: u32,
}

/// Writes `objects` (read from the first of `sources` that has each) into `repo` as one
/// packfile, verified and indexed by libgit2 (see the module's documentation), on disk (fsync)
/// when this returns; an object listed twice is written once. Fails, naming the journal's pack
/// directory, when the pack does not check out: nothing then refers to it.
pub(super) fn store(repo: &Repository, sources: &[&Odb], objects: &[ToPack]) -> Result<std::path::PathBuf> {
    let dir = repo.path().join("objects").join("pack");
    let pack = build(sources, objects).with_context(|| format!("writing a packfile to {}", dir.display()))?;
    let name = check_and_store(repo, &pack)?;
    // The objects on disk only: `repo` may hold the new objects in memory too.
    let disk = Repository::open(repo.path())?;
    let odb = disk.odb()?;
    for object in objects {
        ensure!(
            odb.exists(object.id),
            "the packfile relayctl wrote to {} lacks object {}, which it was written to hold",
            dir.display(),
            object.id
        );
    }
    Ok(name)
}

/// Checks the packfile `pack` (without its trailing checksum, which this adds) through libgit2's
/// indexer and stores it, with the index the indexer writes, in `repo`'s pack directory, on disk
/// (fsync) when this returns. Returns its path. (The indexer's connectivity check is left off:
/// it looked up every object a tree names in the journal's packs, rescanning the pack directory
/// on each miss, 350,000 system calls for an apply of 1,000 changes; [`store`] checks instead
/// that every object it wrote reads back.)
pub(super) fn check_and_store(repo: &Repository, pack: &[u8]) -> Result<std::path::PathBuf> {
    let dir = repo.path().join("objects").join("pack");
    let checksum: [u8; 20] = Sha1::digest(pack).into();
    // The objects on disk only: `repo` may hold new objects in memory too.
    let disk = Repository::open(repo.path())?;
    let odb = disk.odb()?;
    let mut indexer = git2::Indexer::new(Some(&odb), &dir, 0, false)?;
    let written = indexer
        .write_all(pack)
        .and_then(|()| indexer.write_all(&checksum));
    let name = written
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(indexer.commit()?))
        .with_context(|| {
            format!(
                "the packfile relayctl wrote to {} does not check out",
                dir.display()
            )
        })?;
    for ext in ["pack", "idx"] {
        let file = dir.join(format!("pack-{name}.{ext}"));
        File::open(&file)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("saving {} to disk", file.display()))?;
    }
    sync_dir(&dir)?;
    Ok(dir.join(format!("pack-{name}.pack")))
}

/// The packfile of `objects`, each delta-compressed against its base where that is worth it.
fn build(sources: &[&Odb], objects: &[ToPack]) -> Result<Vec<u8>> {
    let mut pack = Vec::with_capacity(objects.len() * 128 + 32);
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&0u32.to_be_bytes()); // the count, set below
    let mut placed: HashMap<Oid, Placed> = HashMap::with_capacity(objects.len());
    let mut zlib = Compress::new(Compression::fast(), true);
    for object in objects {
        if placed.contains_key(&object.id) {
            continue;
        }
        let read = read(sources, object.id)?;
        let data = read.data();
        let start = u64::try_from(pack.len())?;
        let depth = match as_delta(sources, object.base, &read, &placed) {
            Some((base, delta)) => {
                entry_header(&mut pack, OFS_DELTA, delta.len());
                offset_back(&mut pack, start - base.offset);
                deflate(&mut zlib, &delta, &mut pack)?;
                base.depth + 1
            }
            None => {
                entry_header(&mut pack, type_code(read.kind())?, data.len());
                deflate(&mut zlib, data, &mut pack)?;
                0
            }
        };
        placed.insert(object.id, Placed { offset: start, depth });
    }
    let count = u32::try_from(placed.len()).context("too many objects for one packfile")?;
    pack[8..12].copy_from_slice(&count.to_be_bytes());
    #[cfg(test)]
    if CORRUPT.with(std::cell::Cell::get) {
        let middle = pack.len() / 2;
        pack[middle] ^= 0x40;
    }
    Ok(pack)
}

#[cfg(test)]
thread_local! {
    /// Tests set it to have the next packs written with one byte flipped, as a bug would.
    pub(super) static CORRUPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The delta of `object` against `base` when `base` is an earlier entry of this pack of the same
/// type (a delta's object takes its base's type) whose chain is short enough, and the delta is
/// worth it.
fn as_delta<'p>(
    sources: &[&Odb],
    base: Option<Oid>,
    object: &git2::OdbObject,
    placed: &'p HashMap<Oid, Placed>,
) -> Option<(&'p Placed, Vec<u8>)> {
    let id = base?;
    let at = placed.get(&id).filter(|p| p.depth < MAX_DEPTH)?;
    let base = read(sources, id).ok().filter(|b| b.kind() == object.kind())?;
    let delta = delta(base.data(), object.data())?;
    (delta.len() < object.data().len() / 2).then_some((at, delta))
}

/// The object `id` from the first of `sources` that has it.
fn read<'o>(sources: &[&'o Odb], id: Oid) -> Result<git2::OdbObject<'o>> {
    let mut last = None;
    for odb in sources {
        match odb.read(id) {
            Ok(object) => return Ok(object),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "reading the new object {id}: {}",
        last.map_or_else(String::new, |e| e.message().to_owned())
    ))
}

/// A git delta that rebuilds `target` from `base`: their common beginning and end copied from
/// `base`, what differs in between inserted. `None` for a base past 4 GiB, which a delta's
/// 32-bit copy offsets cannot reach.
pub(super) fn delta(base: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    u32::try_from(base.len()).ok()?;
    let prefix = base.iter().zip(target).take_while(|(a, b)| a == b).count();
    let suffix = base[prefix..]
        .iter()
        .rev()
        .zip(target[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = Vec::with_capacity(target.len() - prefix - suffix + 32);
    varint(&mut out, base.len());
    varint(&mut out, target.len());
    copy(&mut out, 0, prefix);
    for chunk in target[prefix..target.len() - suffix].chunks(0x7f) {
        out.push(u8::try_from(chunk.len()).expect("chunks of at most 0x7f bytes"));
        out.extend_from_slice(chunk);
    }
    copy(&mut out, base.len() - suffix, suffix);
    Some(out)
}

/// Delta instructions copying `len` bytes of the base from `offset` (within a base of at most
/// 4 GiB: see [`delta`]).
fn copy(out: &mut Vec<u8>, offset: usize, mut len: usize) {
    // One instruction copies at most 0xffffff bytes (24 bits of size).
    const MOST: usize = 0xff_ffff;
    let mut offset = u32::try_from(offset).expect("a delta's base is at most 4 GiB");
    while len > 0 {
        let size = len.min(MOST);
        let at = out.len();
        let mut op = 0x80u8;
        out.push(op);
        for (i, byte) in offset.to_le_bytes().into_iter().enumerate() {
            if byte != 0 {
                op |= 1 << i;
                out.push(byte);
            }
        }
        let size32 = u32::try_from(size).expect("at most 24 bits");
        for (i, byte) in size32.to_le_bytes().into_iter().take(3).enumerate() {
            if byte != 0 {
                op |= 0x10 << i;
                out.push(byte);
            }
        }
        out[at] = op;
        offset = offset.saturating_add(size32);
        len -= size;
    }
}

/// The low seven bits of `n`, the unit of git's variable-length numbers.
fn low7(n: u64) -> u8 {
    u8::try_from(n & 0x7f).expect("seven bits fit in a byte")
}

/// A delta's size header: 7 bits at a time, low bits first.
fn varint(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64; // usize is at most 64 bits wide on every target relayctl builds for
    while n >= 0x80 {
        out.push(low7(n) | 0x80);
        n >>= 7;
    }
    out.push(low7(n));
}

/// A pack entry's header: its type and (inflated) size.
fn entry_header(out: &mut Vec<u8>, kind: u8, size: usize) {
    let size = size as u64; // usize is at most 64 bits wide on every target relayctl builds for
    let mut byte = (kind << 4) | (low7(size) & 0x0f);
    let mut rest = size >> 4;
    while rest > 0 {
        out.push(byte | 0x80);
        byte = low7(rest);
        rest >>= 7;
    }
    out.push(byte);
}

/// How far back an `OFS_DELTA` entry's base starts, in git's offset encoding.
pub(super) fn offset_back(out: &mut Vec<u8>, mut n: u64) {
    let mut bytes = [0u8; 10];
    let mut i = bytes.len() - 1;
    bytes[i] = low7(n);
    n >>= 7;
    while n > 0 {
        n -= 1;
        i -= 1;
        bytes[i] = 0x80 | low7(n);
        n >>= 7;
    }
    out.extend_from_slice(&bytes[i..]);
}

/// Reads what [`offset_back`] writes, at the start of `bytes`: the distance, and how many bytes
/// it took. `None` when it is cut short or does not fit 64 bits.
pub(super) fn read_offset(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = u64::from(*bytes.first()? & 0x7f);
    let mut at = 0;
    while bytes[at] & 0x80 != 0 {
        at += 1;
        n = n.checked_add(1)?.checked_mul(128)? | u64::from(*bytes.get(at)? & 0x7f);
    }
    Some((n, at + 1))
}

fn type_code(kind: ObjectType) -> Result<u8> {
    Ok(match kind {
        ObjectType::Commit => 1,
        ObjectType::Tree => 2,
        ObjectType::Blob => 3,
        ObjectType::Tag => 4,
        other => anyhow::bail!("cannot pack an object of type {other:?}"),
    })
}

/// Objects smaller than this go into the pack as zlib streams of stored (uncompressed) blocks:
/// resetting the compressor clears 64 KiB of tables, which cost more than compressing a delta of
/// a few dozen bytes (mostly object ids, which do not compress) saves.
const STORE_BELOW: usize = 512;

/// Appends `data` zlib-compressed to `out`, reusing `zlib`'s buffers.
fn deflate(zlib: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if data.len() < STORE_BELOW {
        stored(data, out);
        return Ok(());
    }
    zlib.reset();
    let start = zlib.total_in();
    loop {
        out.reserve(data.len() / 2 + 64);
        let done = usize::try_from(zlib.total_in() - start)?;
        if zlib.compress_vec(&data[done..], out, FlushCompress::Finish)? == Status::StreamEnd {
            return Ok(());
        }
    }
}

/// Appends `data` as a zlib stream of stored blocks (RFC 1950, RFC 1951 §3.2.4).
fn stored(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).expect("blocks of at most 0xffff bytes");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler2::adler32_slice(data).to_be_bytes());
}

/// Saves the names of the files in `dir` (renames, creations) to disk.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    let saved = File::open(dir).and_then(|d| d.sync_all());
    saved.with_context(|| format!("saving {} to disk", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilds a delta's target from `base` (git's `patch_delta`).
    fn patch(base: &[u8], delta: &[u8]) -> Vec<u8> {
        let mut at = 0;
        let mut size = || {
            let (mut n, mut shift) = (0usize, 0);
            loop {
                let b = delta[at];
                at += 1;
                n |= ((b & 0x7f) as usize) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    return n;
                }
            }
        };
        assert_eq!(size(), base.len());
        let len = size();
        let mut out = Vec::new();
        while at < delta.len() {
            let op = delta[at];
            at += 1;
            if op & 0x80 != 0 {
                let (mut offset, mut n) = (0usize, 0usize);
                for i in 0..4 {
                    if op & (1 << i) != 0 {
                        offset |= (delta[at] as usize) << (8 * i);
                        at += 1;
                    }
                }
                for i in 0..3 {
                    if op & (0x10 << i) != 0 {
                        n |= (delta[at] as usize) << (8 * i);
                        at += 1;
                    }
                }
                let n = if n == 0 { 0x10000 } else { n };
                out.extend_from_slice(&base[offset..offset + n]);
            } else {
                assert!(op > 0, "reserved delta instruction");
                out.extend_from_slice(&delta[at..at + op as usize]);
                at += op as usize;
            }
        }
        assert_eq!(out.len(), len);
        out
    }

    #[test]
    fn a_delta_rebuilds_its_target() {
        let long: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut changed = long.clone();
        changed[150_000..150_300].fill(7);
        let cases: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"", b"new"),
            (b"old", b""),
            (b"abcdef", b"abcXYZdef"),
            (b"aaaa", b"aa"),
            (&long, &changed),
            (&long, b"something else entirely"),
        ];
        for (base, target) in cases {
            assert_eq!(patch(base, &delta(base, target).unwrap()), target);
        }
        assert!(delta(&long, &changed).unwrap().len() < 400);
    }

    #[test]
    fn stored_zlib_streams_inflate_to_their_data() {
        use std::io::Read;
        for len in [0usize, 1, 100, 511, 0xffff, 0x1_0000, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut stream = Vec::new();
            stored(&data, &mut stream);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&stream[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{len} bytes");
        }
    }

    #[test]
    fn offsets_are_encoded_as_git_reads_them() {
        for n in [1u64, 127, 128, 16_511, 16_512, 1 << 40] {
            let mut out = Vec::new();
            offset_back(&mut out, n);
            // git's get_delta_base
            let mut read = (out[0] & 0x7f) as u64;
            for b in &out[1..] {
                read = ((read + 1) << 7) | (b & 0x7f) as u64;
            }
            assert_eq!(read, n);
            assert_eq!(out.last().unwrap() & 0x80, 0);
        }
    }
}
