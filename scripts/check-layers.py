#!/usr/bin/env python3
"""Checks that the library's modules form layers that only point down
(ARCHITECTURE.md, "Layers"): every `crate::X` a module of src/ names must be
in a lower layer or its own, and no two top-level modules import each other,
directly or through others. Exits 1 naming each offending import."""

import pathlib
import re
import sys

LAYERS = [
    ["types", "space", "error", "vector", "cancel", "fsio", "paths"],
    ["store", "index", "model", "filter"],
    ["db"],
    ["prepare", "ingest", "query", "zeroshot", "dupes", "exchange", "reindex", "eval"],
    ["resolve", "hub", "fuzzing"],
]
LAYER = {module: n for n, modules in enumerate(LAYERS) for module in modules}
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
# `crate::x`, and `crate::{x, y::z}` groups (one level is enough here).
PATH = re.compile(r"\bcrate::(\w+)")
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def top_module(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def imports(text: str) -> set[str]:
    names = set(PATH.findall(text))
    for group in GROUP.findall(text):
        names.update(part.strip().split("::")[0] for part in group.split(","))
    return {n for n in names if n and n[0].islower()}


edges: dict[str, set[str]] = {}
problems = []
for path in sorted(SRC.rglob("*.rs")):
    module = top_module(path)
    if module == "lib":
        continue
    if module not in LAYER:
        problems.append(f"{path.relative_to(SRC.parent)}: module `{module}` has no layer in {__file__}")
        continue
    # Doc comments may link anywhere; only code imports count.
    code = "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("//"))
    for target in imports(code) - {module}:
        if target not in LAYER:
            continue
        edges.setdefault(module, set()).add(target)
        if LAYER[target] > LAYER[module]:
            problems.append(
                f"{path.relative_to(SRC.parent)}: `{module}` (layer {LAYER[module]}) imports "
                f"`{target}` (layer {LAYER[target]}), which lies above it"
            )


def cycle_from(start: str) -> list[str] | None:
    stack = [(start, [start])]
    while stack:
        node, trail = stack.pop()
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return trail + [start]
            if nxt not in trail:
                stack.append((nxt, trail + [nxt]))
    return None


for module in sorted(edges):
    cycle = cycle_from(module)
    if cycle and cycle[0] == min(cycle[:-1]):
        problems.append("import circle: " + " -> ".join(cycle))

for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"layers: {len(edges)} modules import only downwards, no import circle")
