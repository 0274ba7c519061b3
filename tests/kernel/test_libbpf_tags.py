"""rawbpf loads every corpus object into the same program tags as libbpf (Debian libbpf-dev, built here).

The tag is the kernel's hash of the final instruction stream (map fds blanked), so equal tags mean rawbpf
appended subprograms in libbpf's order, patched the same references and applied CO-RE to the same result.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from patience import patience

from rawbpf.collection import Collection
from rawbpf.elf import load_spec

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data"

# object → programs to load (None: all). legacy `maps` objects are refused by libbpf >= 1.0; verifier_reject
# is refused by the kernel; sections_misc holds sections this kernel cannot load (fentry, lsm) or libbpf
# would not know.
OBJECTS: List[Tuple[str, object]] = [
    ("tests/data/attach_kinds.o", None),
    ("tests/data/callbacks.o", None),
    ("tests/data/core.o", None),
    ("tests/data/globals.o", None),
    ("tests/data/maps_btf.o", None),
    ("tests/data/subprogs.o", None),
    ("tests/data/tracepoints5.o", None),
    ("tests/data/linked_statics.o", None),
    ("tests/data/kconfig_virtual.o", None),
    ("tests/data/kconfig_unknown.o", None),
    ("tests/data/ksym_exists.o", None),
    ("tests/data/naked_btf.o", None),
    ("tests/data/struct_ops_tcp.o", None),
    (
        "tests/data/sections_misc.o",
        ["misc_socket", "misc_xdp", "misc_tc", "misc_classifier", "misc_cgroup_skb", "misc_kprobe"],
    ),
    ("programs/claude_monitor.o", None),
]


@pytest.fixture(scope="module")
def libbpf_loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.fail("gcc and libbpf-dev are needed to build the reference loader")
    out = tmp_path_factory.mktemp("libbpf") / "libbpf_loader"
    subprocess.run(
        [gcc, "-O1", "-Wall", "-Werror", "-o", str(out), str(ROOT / "tools" / "libbpf_loader.c"), "-lbpf"],
        check=True,
    )
    return out


def libbpf_tags(loader: Path, obj: Path, pin_root: Path, programs: object) -> Dict[str, str]:
    args = [str(loader), str(obj), str(pin_root), *(programs or [])]  # type: ignore[misc]
    r = subprocess.run(args, capture_output=True, text=True, timeout=patience(120))
    assert r.returncode == 0, f"libbpf could not load {obj.name}: {r.stderr}"
    tags = {}
    for line in r.stdout.splitlines():
        name, tag, _count = line.split()
        tags[name] = tag
    return tags


@pytest.mark.parametrize(("obj", "programs"), OBJECTS, ids=[Path(o).name for o, _ in OBJECTS])
@pytest.mark.parametrize("kernel_core", [True, False], ids=["kernel-core", "user-core"])
def test_tags_equal_libbpf(
    libbpf_loader: Path, pin_dir: Path, obj: str, programs: object, kernel_core: bool
) -> None:
    path = ROOT / obj
    want = libbpf_tags(libbpf_loader, path, pin_dir, programs)
    assert want, "libbpf loaded no programs"
    spec = load_spec(path)
    coll = Collection.load(spec, pin_dir=str(pin_dir), kernel_core=kernel_core, programs=programs)  # type: ignore[arg-type]
    try:
        got = {name: p.info().tag.hex() for name, p in coll.programs.items()}
    finally:
        coll.close(keep_pinned_maps=False)
    assert got == want
