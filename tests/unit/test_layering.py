"""The package's shape, from its import graph (every import statement, also inside functions):

1. no import cycles;
2. nothing outside ``rawbpf.cli`` (and ``python -m rawbpf``) imports the command line;
3. every module declares its tier (``__tier__``: ``pure`` makes no syscall but reading a file it is handed,
   ``files`` touches files, /proc, sockets or process state but no BPF object, ``kernel`` makes BPF/perf
   syscalls, mounts, or owns their fds), and imports only modules of its tier or a lower one
   (pure < files < kernel).

The graph is the one ``tools/import_graph.py`` measures.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
assert _spec is not None and _spec.loader is not None
import_graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = import_graph
_spec.loader.exec_module(import_graph)

PKG = ROOT / "rawbpf"
GRAPH, _LOCAL = import_graph.scan(PKG)
RANK = {"pure": 0, "files": 1, "kernel": 2}


def _tiers() -> Dict[str, str]:
    out: Dict[str, str] = {}
    for path in PKG.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__tier__"
                                                    for t in node.targets):
                assert isinstance(node.value, ast.Constant)
                out[import_graph.module_name(path)] = str(node.value.value)
    return out


TIERS = _tiers()


def test_graph_found_modules() -> None:
    assert {"rawbpf.errors", "rawbpf.elf", "rawbpf.collection", "rawbpf.cli.load"} <= set(GRAPH)
    assert "rawbpf.collection" in GRAPH["rawbpf.run"]  # function-local imports are edges too


def test_no_import_cycles() -> None:
    assert import_graph.cycles(GRAPH) == []


def test_scan_finds_a_cycle() -> None:
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_library_never_imports_the_cli() -> None:
    assert import_graph.cli_imports(GRAPH) == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_module_declares_its_tier(module: str) -> None:
    assert TIERS.get(module) in RANK, f"{module}: no __tier__ = 'pure' | 'files' | 'kernel'"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_module_imports_only_its_tier_or_lower(module: str) -> None:
    tier = TIERS.get(module, "kernel")
    above: Set[str] = {d for d in GRAPH[module] if RANK[TIERS.get(d, "kernel")] > RANK[tier]}
    names = ", ".join(f"{d} ({TIERS.get(d)})" for d in sorted(above))
    assert not above, f"{tier} module {module} imports {names}"


def test_pure_modules_stay_pure_transitively() -> None:
    for module, tier in TIERS.items():
        if tier != "pure":
            continue
        seen: Set[str] = set()
        stack = [module]
        while stack:
            mod = stack.pop()
            if mod in seen:
                continue
            seen.add(mod)
            assert TIERS.get(mod) == "pure", f"pure module {module} reaches {mod} ({TIERS.get(mod)})"
            stack.extend(GRAPH.get(mod, ()))


def test_internals_maps_every_module() -> None:
    """docs/INTERNALS.md's layer map names every top-level module and package."""
    text = (ROOT / "docs" / "INTERNALS.md").read_text()
    tops = {m.split(".")[1] for m in GRAPH if m.count(".") >= 1} - {"__main__"}
    missing = sorted(t for t in tops if not re.search(rf"(?<![\w.]){re.escape(t)}(\.py|/)", text))
    assert not missing, f"docs/INTERNALS.md does not place: {missing}"
