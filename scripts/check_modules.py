#!/usr/bin/env python3
"""Checks relayctl's module graph (STYLE.md, "The module graph has no cycle"); run by .ci/run.

A node is a source file of src/ (a module), an edge A -> B that A names an item of B, by any
path: `use crate::x::y`, `crate::x::y::f()` in code, `super::`/`self::` paths, and plain paths
through a module A declares or imports. Test code is left out (a file from its first
`#[cfg(test)]`, and whole test-module files). A submodule naming its own ancestors (`super::`,
the idiom for a submodule using its parent's items) is not an edge: a folder's files and its
`mod.rs` are one module to the outside. Fails, listing what it found, on:
- a cycle among files that are not each other's ancestors;
- a file below src/commands/ naming another command (a sibling of src/commands/mod.rs other than
  its own, or anything below one), or a file outside src/commands/ and src/lib.rs naming
  `settings`, `cli`, `exit` or `commands`.

A check by hand, not a crate: the one in use (cargo-modules) needs a rust-analyzer build of the
whole dependency tree, minutes on this machine, for a graph this script reads in 50 ms.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

def modules():
    """Module path (tuple) -> file, for every file of src/ reached by `mod` declarations."""
    found = {}
    def visit(path, file):
        found[path] = file
        text = strip_tests(strip_comments(open(file, encoding="utf-8").read()), keep_mods=True)
        base = os.path.dirname(file) if os.path.basename(file) in ("mod.rs", "lib.rs") \
            else file[:-3]
        for m in re.finditer(r"^\s*(?:#\[cfg\(test\)\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;",
                             text, re.M):
            if is_test_mod(text, m.start()):
                continue
            name = m.group(1)
            for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
                if os.path.isfile(cand):
                    visit(path + (name,), cand)
    visit((), os.path.join(ROOT, "lib.rs"))
    return found

def is_test_mod(text, at):
    line = text[at:].lstrip("\n").split("\n", 1)[0]
    before = text[:at].rstrip().splitlines()
    return "#[cfg(test)]" in line or (bool(before) and before[-1].strip() == "#[cfg(test)]")

def strip_tests(text, keep_mods=False):
    """`text` without its test-only items: each `#[cfg(test)]` item (a line ending in `;`, or a
    braced block such as `mod tests { ... }`) is removed; `keep_mods` keeps `mod x;` lines."""
    out, i = [], 0
    while True:
        at = text.find("#[cfg(test)]", i)
        if at < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:at])
        rest = at + len("#[cfg(test)]")
        semi, brace = text.find(";", rest), text.find("{", rest)
        if semi >= 0 and (brace < 0 or semi < brace):
            end = semi + 1
            if keep_mods:
                out.append(text[at:end])
        else:
            depth, end = 0, brace
            while end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
                if depth == 0:
                    break
        i = end

TOKENS = re.compile(r"""//[^\n]*|/\*.*?\*/|r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|b?'(?:\\.|[^'\\])'""", re.S)

def strip_comments(text):
    """`text` with comments, strings and character literals blanked, in one left-to-right pass
    (a `//` inside "redis://..." is not a comment, a '"' does not open a string)."""
    return TOKENS.sub(lambda m: "" if m.group(0).startswith("/") else '""', text)

def resolve(path, names, mods):
    """The deepest module that `names` (a path from module `path`'s point of view) reaches."""
    if not names:
        return None
    head = names[0]
    if head == "crate":
        base, rest = (), names[1:]
    elif head == "super":
        base = path
        rest = names
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base, rest = path, names[1:]
    elif path + (head,) in mods:
        base, rest = path, names
    else:
        return None
    target = base
    for n in rest:
        if target + (n,) in mods:
            target = target + (n,)
        else:
            break
    return target

def edges(mods):
    out = {p: set() for p in mods}
    for path, file in mods.items():
        text = strip_tests(strip_comments(open(file, encoding="utf-8").read()))
        for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text):
            add(out, path, resolve(path, m.group(1).split("::"), mods))
        # `use x::{a, b::c}` groups: each branch from its prefix.
        for m in re.finditer(r"\buse\s+(\w+(?:::\w+)*)::\{([^;]*)\};", text):
            prefix = m.group(1).split("::")
            for branch in re.findall(r"(\w+(?:::\w+)*)", m.group(2)):
                add(out, path, resolve(path, prefix + branch.split("::"), mods))
        # Paths through a child module or a module `use`d by name: `journal::Writer`.
        for m in re.finditer(r"(?<![:\w])(\w+)::\w+", text):
            if path + (m.group(1),) in mods:
                add(out, path, path + (m.group(1),))
    return out

def add(out, src, dst):
    if dst is None or dst == src or src[:len(dst)] == dst:
        return  # itself, or one of its ancestors
    out[src].add(dst)

def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)
    for v in graph:
        if v not in index:
            connect(v)
    return found

def name(path):
    return "::".join(path) or "crate"

def layering(graph):
    problems = []
    top = ("settings", "cli", "exit", "commands")
    for src, dsts in graph.items():
        for dst in dsts:
            if src and src[0] == "commands" and len(src) >= 2 and dst[:1] == ("commands",) \
                    and len(dst) >= 2 and dst[1] != src[1]:
                problems.append(f"{name(src)} names another command, {name(dst)}")
            if src[:1] not in (("commands",), ("settings",), ("cli",), ("exit",)) and src != () \
                    and dst[:1] in [(t,) for t in top]:
                problems.append(f"{name(src)}, below the commands, names {name(dst)}")
    return problems

def main():
    mods = modules()
    graph = edges(mods)
    problems = layering(graph)
    for comp in cycles(graph):
        members = sorted(name(p) for p in comp)
        problems.append(f"an import cycle of {len(comp)} modules: " + ", ".join(members))
    if problems:
        print("scripts/check_modules.py: the module graph breaks STYLE.md's rules:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    print(f"scripts/check_modules.py: {len(mods)} modules, no cycle, layers kept", file=sys.stderr)

if __name__ == "__main__":
    main()
