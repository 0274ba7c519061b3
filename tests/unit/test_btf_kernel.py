"""rawbpf.btf.kernel: vmlinux and module BTF read from a directory (a fake /sys/kernel/btf here)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from rawbpf.btf import BTF, BtfType, Kind, Member, kernel, marshal
from rawbpf.btf import core as co
from rawbpf.btf.ext import CoreRelo, CoreReloKind
from rawbpf.errors import BTFError

DATA = Path(__file__).resolve().parents[1] / "data"


def target_blob() -> bytes:
    with (DATA / "btf" / "core_target.o").open("rb") as f:
        return bytes(ELFFile(f).get_section_by_name(".BTF").data())


def struct_btf(base: BTF | None, name: str, fields: list) -> BTF:
    """A small BTF (split on ``base`` if given) with an int and one struct of int members."""
    btf = BTF(strings=b"" if base is not None else b"\0", words=[], offsets=[], base=base)
    int_id = base.get("int").id if base is not None else btf.add(
        BtfType(0, Kind.INT, "int", size=4, int_bits=32, int_encoding=1))
    btf.add(BtfType(0, Kind.STRUCT, name, size=4 * len(fields),
                    members=[Member(f, int_id, 32 * i) for i, f in enumerate(fields)]))
    return btf


@pytest.fixture()
def btf_dir(tmp_path: Path) -> Path:
    (tmp_path / "vmlinux").write_bytes(target_blob())
    base = BTF.parse(target_blob())
    (tmp_path / "mymod").write_bytes(marshal(struct_btf(base, "mod_only", ["pad", "pad2", "wanted"])))
    return tmp_path


def mov_r0(imm: int) -> bytearray:
    return bytearray(struct.pack("<BBhi", 0xB7, 0, 0, imm))


def test_module_btf_is_split_and_searched_only_without_vmlinux_candidates(btf_dir: Path) -> None:
    targets = kernel.targets(str(btf_dir))
    assert kernel.module_names(str(btf_dir)) == ["mymod"]
    local = struct_btf(None, "dup", ["y"])
    rel = co.Relocator(local, targets)
    assert [targets.main[i].name for _, i in rel.candidates(local.get("dup").id)] == ["dup___a", "dup___b"]
    assert targets._loaded is None, "module BTF must not be read while vmlinux has candidates"

    local = struct_btf(None, "mod_only", ["wanted"])
    buf = mov_r0(0)
    relo = CoreRelo(0, local.get("mod_only").id, "0:0", CoreReloKind.FIELD_BYTE_OFFSET)
    (done,) = co.relocate_program(buf, [relo], local, targets)
    mod = targets.modules[0]
    assert mod.start_id == len(targets.main) and mod[done.target_id].name == "mod_only"
    assert done.new == 8 and struct.unpack_from("<i", buf, 4)[0] == 8


def test_vmlinux_is_cached_per_path(btf_dir: Path) -> None:
    path = str(btf_dir / "vmlinux")
    assert kernel.vmlinux(path) is kernel.vmlinux(path)


def test_unreadable_or_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BTFError, match=r"vmlinux btf '.*/nope': no such file or directory"):
        kernel.vmlinux(str(tmp_path / "nope"))
    (tmp_path / "vmlinux").write_bytes(b"garbage, not BTF at all....")
    with pytest.raises(BTFError, match=r"vmlinux btf '.*/vmlinux': btf: bad magic") as err:
        kernel.vmlinux(str(tmp_path / "vmlinux"))
    assert "\n" not in str(err.value)
    (tmp_path / "broken").write_bytes(b"also garbage, not BTF at all")
    base = BTF.parse(target_blob())
    with pytest.raises(BTFError, match=r"module btf '.*/broken': btf: bad magic"):
        kernel.module("broken", base, str(tmp_path))
    assert kernel.modules(base, str(tmp_path)) == []  # unreadable modules are skipped (they come and go)
