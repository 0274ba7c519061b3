"""Fuzzing the pure parsers with mutated corpus objects: only RawBPFError may escape, no input takes 1 s.

Mutations are structure-aware: most land in the ELF header, the section header table and the .BTF/.BTF.ext,
symbol, relocation and map sections of real objects (tests/data and the monitor), where a byte changes what
the parser believes; the rest are random byte writes, truncations and splices. ``RAWBPF_FUZZ_EXAMPLES`` sets
the inputs per target (default 34 000: three targets make more than 100 000). Time is the parsing thread's CPU
time, so other load on this shared machine does not make an input "slow".

load_spec turns unexpected exceptions into ObjectError; those raised by rawbpf's own code (not by pyelftools)
are also counted here by type and line (``masked``): each one is a parser bug reported as "malformed ELF".
"""

from __future__ import annotations

import collections
import io
import os
import time
import traceback
from pathlib import Path
from typing import Callable, Counter, Dict, List, Tuple

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawbpf.btf import BTF
from rawbpf.btf.ext import BTFExt
from rawbpf.elf import load_spec
from rawbpf.errors import RawBPFError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("RAWBPF_FUZZ_EXAMPLES", "34000"))
LIMIT_S = 1.0
CORPUS = sorted(
    p for p in [*(ROOT / "tests" / "data").glob("*.o"), ROOT / "programs" / "claude_monitor.o"]
    if p.exists() and p.name not in {"truncated.o", "wrong_machine.o", "bad_btf.o"}
)
INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 24, 64, 4096]
FOCUS = {".BTF", ".BTF.ext", ".symtab", ".maps", "maps", "license", ".strtab"}

Region = Tuple[int, int]


def _regions(data: bytes) -> List[Region]:
    """Byte ranges worth mutating: ELF header, section headers, and the sections a loader interprets."""
    elf = ELFFile(io.BytesIO(data))
    out: List[Region] = [(0, 64), (elf["e_shoff"], elf["e_shnum"] * elf["e_shentsize"])]
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_NOBITS" or not sec["sh_size"]:
            continue
        if sec.name in FOCUS or sec.name.startswith(".rel") or sec["sh_flags"] & 0x4:
            out.append((sec["sh_offset"], sec["sh_size"]))
    return out


def _section(data: bytes, name: str) -> bytes:
    sec = ELFFile(io.BytesIO(data)).get_section_by_name(name)
    return bytes(sec.data()) if sec is not None else b""


OBJECTS: Dict[str, bytes] = {p.name: p.read_bytes() for p in CORPUS}
REGIONS: Dict[str, List[Region]] = {n: _regions(d) for n, d in OBJECTS.items()}
BTFS: Dict[str, bytes] = {n: _section(d, ".BTF") for n, d in OBJECTS.items() if _section(d, ".BTF")}
EXTS: Dict[str, bytes] = {n: _section(d, ".BTF.ext") for n, d in OBJECTS.items() if _section(d, ".BTF.ext")}

_op = st.one_of(
    st.tuples(st.just("set32"), st.integers(0, 2**31), st.sampled_from(INTERESTING)),
    st.tuples(st.just("set8"), st.integers(0, 2**31), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31), st.just(0)),
    st.tuples(st.just("splice"), st.integers(0, 2**31), st.integers(1, 64)),
)
_mutation = st.tuples(st.booleans(), st.integers(0, 2**31), st.lists(_op, min_size=1, max_size=6))


def mutate(data: bytes, regions: List[Region], mutation: Tuple[bool, int, list]) -> bytes:
    """Apply the ops; ``focused`` picks offsets inside one interpreted region instead of the whole input."""
    focused, which, ops = mutation
    out = bytearray(data)
    start, size = regions[which % len(regions)] if focused and regions else (0, len(out))
    for kind, pos, arg in ops:
        if not out:
            break
        size_now = max(1, min(size, len(out) - start)) if start < len(out) else len(out)
        off = (start + pos % size_now) if start < len(out) else pos % len(out)
        if kind == "set32":
            out[off:off + 4] = int(arg).to_bytes(4, "little")[: max(0, len(out) - off)]
        elif kind == "set8":
            out[off] = arg
        elif kind == "flip":
            out[off] ^= 1 << arg
        elif kind == "truncate":
            del out[off:]
        elif kind == "splice":
            out[off:off] = bytes((pos >> 3) & 0xFF for _ in range(arg))
    return bytes(out)


class Tally:
    """Per-target counts, kept across hypothesis examples."""

    def __init__(self) -> None:
        self.inputs = 0
        self.rejected = 0
        self.slowest = 0.0
        self.masked: Counter[str] = collections.Counter()


def _run(tally: Tally, fn: Callable[[], object]) -> float:
    """Run one input; returns the CPU seconds it took (this thread only: other load on a shared machine does
    not count, an input that is really slow does)."""
    t0 = time.thread_time()
    try:
        fn()
    except RawBPFError as err:
        tally.rejected += 1
        cause = err.__cause__
        if cause is not None and "malformed elf" in str(err).lower():  # load_spec's catch-all
            frames = traceback.extract_tb(cause.__traceback__)
            if frames and "/rawbpf/" in frames[-1].filename:  # raised by rawbpf itself, not by pyelftools
                where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
                tally.masked[f"{type(cause).__name__} at {where}"] += 1
    return time.thread_time() - t0


def _check(tally: Tally, fn: Callable[[], object]) -> None:
    tally.inputs += 1
    took = _run(tally, fn)
    if took >= LIMIT_S:  # a garbage collection or a page-fault storm may land on any input: confirm once
        took = min(took, _run(Tally(), fn))
    tally.slowest = max(tally.slowest, took)
    assert took < LIMIT_S, f"one input took {took:.2f}s of CPU"


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                     suppress_health_check=list(HealthCheck))


def _report(name: str, tally: Tally) -> None:
    print(f"\nfuzz {name}: {tally.inputs} inputs, {tally.rejected} rejected with RawBPFError, "
          f"slowest {tally.slowest * 1000:.1f} ms")
    for what, n in tally.masked.most_common(10):
        print(f"  masked internal error x{n}: {what}")


def test_fuzz_load_spec() -> None:
    tally = Tally()
    names = sorted(OBJECTS)

    @_SETTINGS
    @given(st.sampled_from(names), _mutation)
    def one(name: str, mutation: Tuple[bool, int, list]) -> None:
        data = mutate(OBJECTS[name], REGIONS[name], mutation)
        _check(tally, lambda: load_spec(data, name))

    one()
    _report("load_spec", tally)
    assert tally.inputs >= EXAMPLES


def test_fuzz_btf_parse() -> None:
    tally = Tally()
    names = sorted(BTFS)

    def parse_all(data: bytes) -> None:
        btf = BTF.parse(data)
        for type_id in range(len(btf.types)):
            btf.type_name(type_id)
            btf.resolve(type_id)

    @_SETTINGS
    @given(st.sampled_from(names), _mutation)
    def one(name: str, mutation: Tuple[bool, int, list]) -> None:
        base = BTFS[name]
        data = mutate(base, [(0, 24), (24, len(base) - 24)], mutation)
        _check(tally, lambda: parse_all(data))

    one()
    _report("BTF.parse", tally)
    assert tally.inputs >= EXAMPLES


def test_fuzz_btf_ext_parse() -> None:
    tally = Tally()
    names = sorted(EXTS)
    btfs = {n: BTF.parse(BTFS[n]) for n in names}

    @_SETTINGS
    @given(st.sampled_from(names), _mutation)
    def one(name: str, mutation: Tuple[bool, int, list]) -> None:
        base = EXTS[name]
        data = mutate(base, [(0, 32), (32, len(base) - 32)], mutation)
        _check(tally, lambda: BTFExt.parse(data, btfs[name]))

    one()
    _report("BTFExt.parse", tally)
    assert tally.inputs >= EXAMPLES


@pytest.mark.parametrize("size", [1 << 31, 1 << 40, (1 << 64) - 1])
def test_huge_bss_size_is_refused_without_allocating_it(size: int) -> None:
    """A .bss header claiming gigabytes must be refused (no kernel map could hold it), not zero-filled."""
    data = bytearray(OBJECTS["globals.o"])
    elf = ELFFile(io.BytesIO(bytes(data)))
    idx = next(i for i, sec in enumerate(elf.iter_sections()) if sec.name == ".bss")
    at = elf["e_shoff"] + idx * elf["e_shentsize"] + 32  # Elf64_Shdr.sh_size
    data[at:at + 8] = size.to_bytes(8, "little")
    t0 = time.thread_time()
    with pytest.raises(RawBPFError, match="bss"):
        load_spec(bytes(data), "globals")
    assert time.thread_time() - t0 < 0.1


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_unmutated_corpus_parses(name: str) -> None:
    """The fuzz bases themselves parse (else the fuzzing would only ever test the first error path)."""
    if name in {"no_license.o"}:
        with pytest.raises(RawBPFError):
            load_spec(OBJECTS[name], name)
        return
    load_spec(OBJECTS[name], name)
