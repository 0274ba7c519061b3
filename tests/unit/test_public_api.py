"""The package root is the API: a curated ``__all__``, every name resolvable, imported lazily, typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rawbpf

ROOT = Path(__file__).resolve().parents[2]

API = {
    # objects and their load
    "load_spec", "CollectionSpec", "ProgramSpec", "MapSpec", "VariableSpec", "Collection",
    # kernel objects
    "Map", "Program", "Link", "MapType", "ProgType",
    # events and the log
    "RingBuffer", "PerfBuffer", "Daemon", "DaemonOptions", "LogReader", "LogWriter",
    # the foreground run, assembly, types
    "load_and_run", "LoadResult", "Assembler", "Instruction", "disassemble", "BTF",
    # errors
    "RawBPFError", "ObjectError", "BTFError", "BTFLoadError", "RelocationError", "AsmError", "LogFormatError",
    "ConfigError", "NotSupportedError", "SyscallError", "KernelRefusal", "VerifierError",
    "__version__",
}


def test_all_is_the_curated_api() -> None:
    assert set(rawbpf.__all__) == API and len(rawbpf.__all__) == len(API)
    assert rawbpf.__all__ == sorted(rawbpf.__all__, key=str)  # stable order for readers


def test_every_name_resolves_to_its_definition() -> None:
    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec
    from rawbpf.errors import VerifierError

    for name in rawbpf.__all__:
        assert getattr(rawbpf, name) is not None, name
    assert rawbpf.Collection is Collection and rawbpf.load_spec is load_spec
    assert rawbpf.VerifierError is VerifierError
    assert set(rawbpf.__all__) <= set(dir(rawbpf))


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        rawbpf.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("no AttributeError")


def test_import_is_cheap_and_lazy() -> None:
    code = ("import sys, rawbpf; before = sorted(m for m in sys.modules if m.startswith('rawbpf')); "
            "spec = rawbpf.load_spec(sys.argv[1]); "
            "print(before, 'rawbpf.collection' in sys.modules, 'ctypes' in sys.modules, spec.name)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests" / "data" / "globals.o")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert out[0] == "['rawbpf',", out  # only the package and its errors
    assert out[1] == "'rawbpf.errors']" and out[2:] == ["False", "False", "globals"]


def test_the_package_is_typed() -> None:
    assert (ROOT / "rawbpf" / "py.typed").is_file()
    assert 'rawbpf = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_readme_library_examples_use_only_the_api() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Library"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    used = set()
    for code in blocks:
        compile(code, "README.md", "exec")
        assert not re.search(r"from rawbpf\.\w", code), code  # no implementation modules
        used |= set(re.findall(r"\brawbpf\.(\w+)", code))
        for names in re.findall(r"from rawbpf import ([\w, ]+)", code):
            used |= {n.strip() for n in names.split(",")}
    assert used and used <= set(rawbpf.__all__), used - set(rawbpf.__all__)
