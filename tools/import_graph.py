"""Measure rawbpf's import graph: cycles (counting function-local imports), library modules that import the
CLI, and function-local imports.

Usage: python tools/import_graph.py [--list] [--root DIR] [--since OLDROOT]

``--list`` prints every function-local import; ``--root`` measures another checkout; ``--since`` counts
function-local imports only in the modules OLDROOT/rawbpf also has (like for like with an older tree).

An import inside a function body is an edge like any other; imports under ``if TYPE_CHECKING:`` never run
and are counted apart. A cycle is a strongly connected component of more than one module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

PKG = Path(sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else
           Path(__file__).resolve().parents[1]) / "rawbpf"


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imported(node: ast.AST, package: str, files: Dict[str, Path]) -> List[str]:
    """The rawbpf modules an import statement names (``from pkg import sub`` names the submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("rawbpf")]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        if src.startswith("rawbpf"):
            return [f"{src}.{a.name}" if f"{src}.{a.name}" in files else src for a in node.names]
    return []


def scan(pkg: Path = PKG, *, type_checking: bool = False
         ) -> Tuple[Dict[str, Set[str]], List[Tuple[str, str, int]]]:
    """Per module, the rawbpf modules it imports (resolved to modules that exist, with the packages whose
    ``__init__`` the import runs); and every import statement inside a function as (module, imported, line).
    ``type_checking``: count imports under ``if TYPE_CHECKING:`` too (they never run)."""
    files = {module_name(p, pkg): p for p in pkg.rglob("*.py")}
    graph: Dict[str, Set[str]] = {m: set() for m in files}
    local: List[Tuple[str, str, int]] = []

    def resolve(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        stack: List[Tuple[ast.AST, bool]] = [(ast.parse(path.read_text(), str(path)), False)]
        while stack:
            node, in_func = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child) and not type_checking:
                    stack.extend((sub, in_func) for sub in child.orelse)
                    continue
                targets = _imported(child, package, files)
                if targets and in_func:
                    local.append((mod, ", ".join(sorted({resolve(t) for t in targets})), child.lineno))
                for target in targets:
                    r = resolve(target)
                    if not r or r == mod:
                        continue
                    graph[mod].add(r)
                    parent = r.rpartition(".")[0]  # importing a.b.c runs a.b's __init__ too
                    while parent not in ("", "rawbpf") and parent != mod and not mod.startswith(parent + "."):
                        graph[mod].add(parent)
                        parent = parent.rpartition(".")[0]
                func = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                stack.append((child, in_func or func))
    return graph, local


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def is_cli(mod: str) -> bool:
    """The command-line layer: rawbpf.cli and ``python -m rawbpf``."""
    return mod in ("rawbpf.cli", "rawbpf.__main__") or mod.startswith("rawbpf.cli.")


def cli_imports(graph: Dict[str, Set[str]]) -> List[Tuple[str, str]]:
    """(library module, CLI module) for every import of the CLI from outside it."""
    return sorted((m, d) for m, deps in graph.items() if not is_cli(m) for d in deps if is_cli(d))


def main(argv: List[str]) -> int:
    graph, local = scan()
    cyc = cycles(graph)
    typed = cycles(scan(type_checking=True)[0])
    if "--since" in argv:  # only the modules that also exist in an older tree: like for like
        older = set(scan(Path(argv[argv.index("--since") + 1]) / "rawbpf")[0])
        local = [x for x in local if x[0] in older]
    cli = cli_imports(graph)
    edges = sum(len(d) for d in graph.values())
    print(f"modules {len(graph)}, edges {edges}")
    print(f"cycles (strongly connected components) {len(cyc)}")
    for c in cyc:
        print("   ", " ↔ ".join(c))
    print(f"cycles counting TYPE_CHECKING-only imports {len(typed)}")
    for c in typed:
        if c not in cyc:
            print("   ", " ↔ ".join(c))
    print(f"library → CLI imports {len(cli)}")
    for m, d in cli:
        print(f"    {m} → {d}")
    print(f"function-local imports {len(local)}")
    if "--list" in argv:
        for m, t, line in local:
            print(f"    {m}:{line} → {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
