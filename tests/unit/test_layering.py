"""Pure modules (parsing, encoding, decoding, log format) must never import kernel-facing modules."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

PKG = Path(__file__).resolve().parents[2] / "rawbpf"

# Kernel-facing modules: anything that makes syscalls or owns fds.
KERNEL = {
    "rawbpf._sys", "rawbpf._fd", "rawbpf.maps", "rawbpf.programs", "rawbpf.kbtf", "rawbpf.attach",
    "rawbpf.features", "rawbpf.bpffs", "rawbpf.collection", "rawbpf.perfbuf", "rawbpf.daemon",
}
KERNEL_PREFIXES = ("rawbpf.monitor", "rawbpf.cli")
# Pure modules and packages: checked transitively.
PURE_PREFIXES = (
    "rawbpf.errors", "rawbpf.consts", "rawbpf._types", "rawbpf.spec", "rawbpf.sections", "rawbpf.elf",
    "rawbpf.linker", "rawbpf.btf", "rawbpf.asm", "rawbpf.records", "rawbpf.logfile",
    "rawbpf.ship.url", "rawbpf.ship.forward", "rawbpf.ship.syslog", "rawbpf.ship.relp",
)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for path in PKG.rglob("*.py"):
        name = _module_name(path)
        deps: Set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("rawbpf"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("rawbpf"):
                    deps.add(mod)
                    deps.update(f"{mod}.{a.name}" for a in node.names)
        graph[name] = deps
    return graph


def _is_kernel(mod: str) -> bool:
    return mod in KERNEL or mod.startswith(KERNEL_PREFIXES)


GRAPH = _imports()
PURE = sorted(m for m in GRAPH if m.startswith(PURE_PREFIXES))


@pytest.mark.parametrize("module", PURE)
def test_pure_module_never_reaches_kernel_code(module: str) -> None:
    seen: Set[str] = set()
    stack = [module]
    while stack:
        mod = stack.pop()
        if mod in seen:
            continue
        seen.add(mod)
        assert not _is_kernel(mod), f"pure module {module} imports kernel-facing {mod}"
        stack.extend(d for d in GRAPH.get(mod, ()) if d in GRAPH)


def test_graph_found_modules() -> None:
    assert "rawbpf.errors" in GRAPH and "rawbpf.consts" in GRAPH
