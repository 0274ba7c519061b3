"""The BTF rawbpf would load equals the BTF libbpf loads for the same object (bpftool, libbpf 1.x).

For every corpus object libbpf can load here, the program's BTF is read back from the kernel by id and
compared, type by type, with rawbpf's parse → fixup_externs → fill_datasecs of the same object.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from test_btf_load import OBJECTS, filled  # type: ignore[import-not-found]

from rawbpf.btf import BTF
from rawbpf.btf.pretty import dump_raw
from rawbpf.kbtf import KernelBTF

pytestmark = pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")

BPFFS_ROOT = "/sys/fs/bpf"


@pytest.fixture()
def libbpf_pins(pin_dir: Path) -> Iterator[Path]:
    # bpftool pins maps declared LIBBPF_PIN_BY_NAME under libbpf's default root, not under pin_dir:
    # remove any such pin the test created there.
    before = set(os.listdir(BPFFS_ROOT))
    yield pin_dir
    if pin_dir.exists():
        for p in pin_dir.iterdir():
            p.unlink()
    for name in set(os.listdir(BPFFS_ROOT)) - before:
        path = Path(BPFFS_ROOT, name)
        if not path.is_dir():
            path.unlink()


# libbpf refuses these on purpose: an ambiguous CO-RE relocation, legacy maps (gone in libbpf 1.0),
# kprobe/fentry/lsm sections this kernel cannot load, programs the verifier rejects, a GPL-only helper
# called from an object without a license, a struct_ops program without its struct_ops map (libbpf 1.1 loads
# it for no member and the kernel says ENOTSUPP), a .struct_ops.link section (libbpf 1.2+)
NOT_LOADABLE = {"core_local.o", "maps_legacy.o", "sections_misc.o", "verifier_reject.o", "core_unguarded.o",
                "no_license.o", "struct_ops_prog.o", "struct_ops_link.o"}


@pytest.mark.parametrize("path", [p for p in OBJECTS if p.name not in NOT_LOADABLE], ids=lambda p: p.name)
def test_btf_equals_what_libbpf_loads(path: Path, libbpf_pins: Path) -> None:
    run = subprocess.run(["bpftool", "prog", "loadall", str(path), str(libbpf_pins)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    pins = sorted(libbpf_pins.iterdir())
    info = json.loads(subprocess.run(["bpftool", "prog", "show", "pinned", str(pins[0]), "-j"], check=True,
                                     capture_output=True, text=True).stdout)
    with KernelBTF.from_id(int(info["btf_id"])) as kb:
        theirs = BTF.parse(kb.data())
    assert dump_raw(filled(path)) == dump_raw(theirs)
