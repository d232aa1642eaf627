#!/usr/bin/env python3
"""Fails when the crate's files import each other in a cycle (`use crate::…`, `super::…`
paths between files under src/), and when a core file names mlua (only src/lua/ and src/lib.rs
may): the layering the README's Design section describes. Test modules are ignored."""
import os
import re
import sys


def modules(root="src"):
    found = {}
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".rs"):
                path = os.path.join(d, n)
                mod = path[len(root) + 1:-3].replace("/mod", "").replace("/", "::")
                found["" if mod == "lib" else mod] = open(path, encoding="utf-8").read()
    return found


def imports(mod, text, known):
    text = re.split(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text)[0]
    parent = mod.rsplit("::", 1)[0] if "::" in mod else ""
    out = set()
    for m in re.finditer(r"\b(crate|super)::([a-z_]+)(?:::([a-z_]+))?", text):
        base, a, b = m.groups()
        pre = "" if base == "crate" or not parent else parent + "::"
        for cand in ([f"{pre}{a}::{b}"] if b else []) + [f"{pre}{a}"]:
            if cand in known and cand != mod:
                out.add(cand)
                break
    return out


def cycles(graph):
    index, low, stack, on, found, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    mods = modules()
    graph = {m: imports(m, t, mods) for m, t in mods.items() if m}
    bad = cycles(graph)
    for c in bad:
        print("import cycle: " + " <-> ".join(c))
    core_mlua = [m for m, t in mods.items()
                 if m and m != "lua" and not m.startswith("lua::") and re.search(r"\bmlua\b", t)]
    for m in core_mlua:
        print(f"mlua named in core file src/{m.replace('::', '/')}.rs")
    if bad or core_mlua:
        return 1
    print(f"import layering: {len(graph)} files, no cycle, mlua only in the binding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
