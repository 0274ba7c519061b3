"""Subprogram appending in libbpf's order, call/callback offsets, .BTF.ext carried along, data patching."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawbpf.consts import BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE
from rawbpf.elf import load_spec
from rawbpf.errors import RelocationError
from rawbpf.linker import OP_CALL, OP_LD_IMM64, decode, link, patch_data
from rawbpf.spec import RelocKind

DATA = Path(__file__).resolve().parent.parent / "data"


def _calls(linked):  # type: ignore[no-untyped-def]
    """(call index, index it lands on) for every bpf-to-bpf call and callback address load."""
    out = []
    for i in range(linked.insn_count):
        code, _d, src, _o, imm = decode(linked.insns, i)
        if (code == OP_CALL and src == BPF_PSEUDO_CALL) or (code == OP_LD_IMM64 and src == BPF_PSEUDO_FUNC):
            out.append((i, i + imm + 1))
    return out


def test_dfs_append_order_matches_libbpf() -> None:
    s = load_spec(DATA / "subprogs.o")
    a = link(s, "prog_a")
    # prog_a calls chain_top (→ chain_mid → leaf) before global_mix: depth first, in call order
    assert [n for n, _ in a.layout] == ["prog_a", "chain_top", "chain_mid", "leaf", "global_mix"]
    b = link(s, "prog_b")
    assert [n for n, _ in b.layout] == ["prog_b", "leaf", "global_mix"]
    # each main program gets its own copy: leaf sits at a different index in each
    assert dict(a.layout)["leaf"] != dict(b.layout)["leaf"]
    assert a.insn_count == sum(p.insn_count for p in (s.programs["prog_a"], *s.subprograms.values()))


def test_every_call_lands_on_a_function_start() -> None:
    s = load_spec(DATA / "subprogs.o")
    for name in s.programs:
        linked = link(s, name)
        starts = {idx for _, idx in linked.layout}
        calls = _calls(linked)
        assert calls
        assert all(target in starts for _, target in calls), (name, calls, linked.layout)


def test_func_and_line_info_follow_the_copies() -> None:
    s = load_spec(DATA / "subprogs.o")
    a = link(s, "prog_a")
    assert [i for i, _ in a.func_info] == [idx for _, idx in a.layout]
    idxs = [i for i, _ in a.line_info]
    assert idxs == sorted(idxs) and idxs[-1] < a.insn_count
    assert a.source_line(0).startswith("subprogs.c:")


def test_callbacks_become_pseudo_func() -> None:
    s = load_spec(DATA / "callbacks.o")
    linked = link(s, "run_loop")
    assert [n for n, _ in linked.layout] == ["run_loop", "loop_cb"]
    funcs = [
        i
        for i in range(linked.insn_count)
        if decode(linked.insns, i)[0] == OP_LD_IMM64 and decode(linked.insns, i)[2] == BPF_PSEUDO_FUNC
    ]
    assert len(funcs) == 1
    assert (funcs[0], dict(linked.layout)["loop_cb"]) in _calls(linked)


def test_patch_data_writes_fds_and_offsets() -> None:
    s = load_spec(DATA / "subprogs.o")
    linked = link(s, "prog_b")
    data = [r for r in linked.relocations if r.kind == RelocKind.DATA]
    assert len(data) == 1
    patch_data(linked, {"subprogs.bss": 77})
    code, _d, src, _o, imm = decode(linked.insns, data[0].insn)
    assert (code, src, imm) == (OP_LD_IMM64, BPF_PSEUDO_MAP_VALUE, 77)
    assert decode(linked.insns, data[0].insn + 1)[4] == 8  # result_b is at .bss+8


def test_patch_map_fd_and_missing_map() -> None:
    s = load_spec(DATA / "verifier_reject.o")
    linked = link(s, "deref_unchecked")
    r = next(r for r in linked.relocations if r.kind == RelocKind.MAP)
    patch_data(linked, {"counters": 5})
    assert decode(linked.insns, r.insn)[2:] == (BPF_PSEUDO_MAP_FD, 0, 5)
    with pytest.raises(RelocationError, match="map 'counters'"):
        patch_data(link(s, "deref_unchecked"), {})


def test_core_records_move_with_code() -> None:
    s = load_spec(DATA / "core.o")
    linked = link(s, "on_getppid")
    assert len(linked.core_relos) == len(s.programs["on_getppid"].core_relos)
    assert all(0 <= i < linked.insn_count for i, _ in linked.core_relos)


def test_unknown_program() -> None:
    with pytest.raises(RelocationError, match="no program 'nope'"):
        link(load_spec(DATA / "subprogs.o"), "nope")
