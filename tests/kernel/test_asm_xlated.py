"""What the kernel actually runs: every program of clang-built objects, read back as xlated instructions,
disassembles without an unknown instruction and assembles back from its text."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawbpf.asm import Instruction, assemble_text, decode, disassemble
from rawbpf.asm import opcodes as op
from rawbpf.collection import Collection
from rawbpf.elf import load_spec

ROOT = Path(__file__).resolve().parent.parent.parent
OBJECTS = ["tests/data/tracepoints5.o", "tests/data/callbacks.o", "tests/data/subprogs.o",
           "tests/data/maps_btf.o", "tests/data/core.o", "programs/claude_monitor.o"]


def _as_text_carries_it(insn: Instruction) -> Instruction:
    """What ``call N`` and ``ld_pseudo r, S, N`` keep of an instruction (see rawbpf.asm.text)."""
    if insn.code == op.JMP | op.CALL:
        return insn.replace(src=0, off=0)
    if insn.code == op.LD_IMM64 and insn.src:
        return insn.replace(imm=insn.imm & 0xFFFFFFFF)
    return insn


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda p: Path(p).stem)
def test_xlated_programs_disassemble_and_reassemble(obj: str, pin_dir: Path) -> None:
    spec = load_spec(str(ROOT / obj))
    coll = Collection.load(spec, pin_dir=str(pin_dir))
    try:
        _check_xlated(obj, coll)
    finally:
        coll.close(keep_pinned_maps=False)  # maps pinned by name outlive a plain close, as with libbpf


def _check_xlated(obj: str, coll: Collection) -> None:
    assert coll.programs
    for name, prog in coll.programs.items():
        xlated = prog.info().xlated
        assert xlated, f"{name}: no xlated instructions"
        ids = {m.id: n for n, m in coll.maps.items()}
        lines = disassemble(xlated, maps=ids)
        unknown = [i for i, ln in enumerate(lines) if "<unknown>" in ln]
        assert not unknown, f"{obj} {name}: unknown instructions at {unknown}"
        plain = "\n".join(ln.split("  ; ")[0] for ln in lines)
        want = [_as_text_carries_it(i) for i in decode(xlated)]
        assert decode(assemble_text(plain)) == want, f"{obj} {name}"
        if any(i.code == op.LD_IMM64 and i.src == op.PSEUDO_MAP_FD for i in decode(xlated)):
            assert any("; map '" in ln for ln in lines), f"{name}: map references not named"
