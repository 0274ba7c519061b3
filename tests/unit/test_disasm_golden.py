"""The disassembler against llvm-objdump: every committed BPF object, instruction by instruction.

tests/data/golden/<obj>.txt is ``llvm-objdump -d --no-show-raw-insn`` (Debian LLVM 14) and <obj>.alu32.txt the
same with ``--mattr=+alu32`` (tools/gen_golden.py writes both). The objects' code sections are read with
pyelftools here, independently of rawbpf's own ELF loader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List

import pytest
from test_asm_support import DATA, GOLDEN, code_sections, parse_golden

from rawbpf.asm import decode_one, disassemble, disassemble_indexed, opcodes


def objects() -> List[Path]:
    return sorted(p for p in GOLDEN.glob("*.txt") if not p.name.endswith(".alu32.txt"))


def _llvm14_misdecodes(data: bytes, index: int) -> bool:
    """LLVM 14 without alu32 prints a 32-bit atomic fetch-and-add as ``lock … += rN`` (ignoring BPF_FETCH)."""
    insn = decode_one(data, index * 8)
    return insn.code == opcodes.STX | opcodes.W | opcodes.ATOMIC and bool(insn.imm & opcodes.FETCH)


def test_every_committed_object_has_golden_files() -> None:
    names = {p.name.split(".")[0] for p in GOLDEN.glob("*.txt")}
    assert {"isa", "subprogs", "tracepoints5", "callbacks"} <= names
    for plain in objects():
        assert plain.with_name(plain.stem + ".alu32.txt").exists()
    missing = []
    for obj in sorted(DATA.glob("*.o")) + sorted((DATA / "asm").glob("*.o")):
        head = obj.read_bytes()[:20]
        if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != 247:  # EM_BPF
            continue
        try:
            code_sections(obj)
        except Exception:  # deliberately broken objects (truncated.o) have no disassembly
            continue
        if not (GOLDEN / f"{obj.stem}.txt").exists():
            missing.append(obj.name)
    assert not missing, f"no golden files for {missing}: run tools/gen_golden.py (make testdata does)"


@pytest.mark.parametrize("golden", objects(), ids=lambda p: p.stem)
def test_matches_llvm_objdump(golden: Path) -> None:
    obj = next(p for p in (DATA / f"{golden.stem}.o", DATA / "asm" / f"{golden.stem}.o") if p.exists())
    sums: Dict[str, str] = {}
    for line in (GOLDEN / "objects.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    recorded = sums.get(str(obj.relative_to(DATA)))
    assert recorded == hashlib.sha256(obj.read_bytes()).hexdigest(), (
        f"{obj.name} changed since its golden files were made: run tools/gen_golden.py and review the diff")
    plain = parse_golden(golden)
    alu32 = parse_golden(golden.with_name(golden.stem + ".alu32.txt"))
    sections = code_sections(obj)
    assert {name for name, _, _ in sections} == set(plain), "code sections differ from llvm-objdump's"
    compared = 0
    for name, data, symbols in sections:
        got_alu32 = dict(disassemble_indexed(data, symbols=symbols, alu32=True))
        assert got_alu32 == alu32[name], f"{obj.name} {name} (alu32)"
        got = dict(disassemble_indexed(data, symbols=symbols))
        assert set(got) == set(plain[name])
        for index, text in plain[name].items():
            want = text
            if text == "<unknown>" or _llvm14_misdecodes(data, index):
                want = alu32[name][index]
            assert got[index] == want, f"{obj.name} {name} insn {index}"
            compared += 1
        assert disassemble(data, symbols=symbols) == [got[i] for i in sorted(got)]
    assert compared > 0


def test_isa_corpus_covers_the_isa() -> None:
    """isa.o must keep exercising every instruction class and the encodings that differ between modes."""
    text = "\n".join(line for sec in parse_golden(GOLDEN / "isa.alu32.txt").values() for line in sec.values())
    for needle in ("s>>=", "= -w0", "be64", "le16", "skb[r6]", "*(u16 *)skb[14]", "if w1 s<= w2",
                   "lock *(u32 *)", "atomic_fetch_xor((u32", "xchg32_32", "cmpxchg_64", "call 1", "goto -3",
                   "r4 = -9223372036854775808 ll", "w4 = *(u32 *)(r1 + 4)", "<LBB"):
        assert needle in text, needle
