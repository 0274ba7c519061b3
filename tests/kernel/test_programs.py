"""Programs against the real kernel: hand-built instructions that use a map and a helper run through
BPF_PROG_TEST_RUN; verifier errors name the kernel's reason; log growth; info, stats, BTF, CO-RE, fd_array."""

from __future__ import annotations

import errno
import struct
import uuid
from typing import Iterator

import pytest

from rawbpf import programs
from rawbpf.consts import BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, MapType, ProgType
from rawbpf.errors import ConfigError, SyscallError, VerifierError
from rawbpf.features import _Blob
from rawbpf.kbtf import KernelBTF
from rawbpf.maps import Map
from rawbpf.programs import Program, enable_stats, failing_insn


def I(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:  # noqa: E743
    return struct.pack("<BBhi", op, dst | src << 4, off, imm)


def ld_map(reg: int, fd: int, src: int = BPF_PSEUDO_MAP_FD) -> bytes:
    return I(0x18, reg, src, 0, fd) + I(0, 0, 0, 0, 0)


def store_in_slot0(m_ref: bytes, value: int) -> bytes:
    """r1 = map; key 0 on the stack; r0 = map_lookup_elem(r1, &key); if r0: *(u64 *)r0 = value; return 7."""
    return b"".join([
        m_ref,
        I(0x62, 10, 0, -4, 0),            # *(u32 *)(r10 - 4) = 0
        I(0xBF, 2, 10), I(0x07, 2, 0, 0, -4),  # r2 = r10 - 4
        I(0x85, 0, 0, 0, 1),              # call bpf_map_lookup_elem
        I(0x15, 0, 0, 2, 0),              # if r0 == 0 goto +2
        I(0x7A, 0, 0, 0, value),          # *(u64 *)(r0 + 0) = value
        I(0xB7, 0, 0, 0, 7),              # r0 = 7
        I(0x95),                          # exit
    ])


RET0 = I(0xB7, 0, 0, 0, 0) + I(0x95)


@pytest.fixture()
def slot_map() -> Iterator[Map]:
    with Map.create(MapType.ARRAY, 4, 8, 1, name=f"slot_{uuid.uuid4().hex[:6]}") as m:
        yield m


def test_map_and_helper_program_runs(slot_map: Map) -> None:
    insns = store_in_slot0(ld_map(1, slot_map.fd), 42)
    with Program.load(ProgType.SOCKET_FILTER, insns, name="store42") as prog:
        res = prog.test_run(b"\xaa" * 64, repeat=3)
        assert res.retval == 7
        assert len(res.data_out) == 64 and res.data_out[14:] == b"\xaa" * 50  # payload after the eth header
        assert slot_map.lookup_int(0) == 42
        info = prog.info()
        assert info.name == "store42" and info.type == ProgType.SOCKET_FILTER
        assert len(info.tag) == 8 and info.tag != b"\0" * 8
        assert info.map_ids == (slot_map.id,)
        assert info.xlated and len(info.xlated) % 8 == 0
        assert info.xlated[-8:] == I(0x95)
        assert info.jited_len > 0 and info.id == prog.id
        assert info.gpl_compatible


def test_fd_array_map_reference(slot_map: Map) -> None:
    insns = store_in_slot0(ld_map(1, 0, BPF_PSEUDO_MAP_IDX), 99)
    with Program.load(ProgType.SOCKET_FILTER, insns, name="fdarray", fd_array=[slot_map.fd]) as prog:
        assert prog.test_run(b"\0" * 16).retval == 7
    assert slot_map.lookup_int(0) == 99


def test_raw_tracepoint_test_run_with_ctx() -> None:
    # r0 = *(u64 *)(r1 + 8): the second argument of the context
    insns = I(0x79, 0, 1, 8, 0) + I(0x95)
    with Program.load(ProgType.RAW_TRACEPOINT, insns, name="rawctx") as prog:
        res = prog.test_run(ctx_in=struct.pack("<QQ", 5, 1234))
        assert res.retval == 1234


def test_stats_count_runs(slot_map: Map) -> None:
    insns = store_in_slot0(ld_map(1, slot_map.fd), 1)
    with Program.load(ProgType.SOCKET_FILTER, insns, name="stats") as prog:
        before = prog.info(with_insns=False).run_cnt
        with enable_stats():
            prog.test_run(b"\0" * 32, repeat=25)
            info = prog.info(with_insns=False)
        assert info.run_cnt - before >= 25
        assert info.run_time_ns > 0


def test_verifier_error_names_reason_and_insn() -> None:
    bad = I(0xB7, 1, 0, 0, 0) + I(0x95)  # r1 = 0; exit  -> R0 never set
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.SOCKET_FILTER, bad, name="noret",
                     source_line=lambda idx: f"prog.c:{10 + idx}: return x;")
    err = ei.value
    assert err.errno == errno.EACCES
    assert err.reason == "R0 !read_ok"
    assert err.insn_index == 1
    assert err.summary() == ("load program 'noret': verifier rejected program: R0 !read_ok "
                             "[at prog.c:11: return x;]")
    assert "1: (95) exit" in err.tail()
    assert "processed" in err.log
    assert err.log.rstrip() in err.detail()


def test_verifier_error_without_source_gives_insn() -> None:
    bad = I(0x85, 0, 0, 0, 0x7FFF0000) + RET0  # call to a helper that does not exist
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.SOCKET_FILTER, bad, name="nohelper")
    assert "invalid func unknown#" in ei.value.reason
    assert str(ei.value).endswith("(insn 0)")


def test_broken_source_callback_does_not_hide_the_reason() -> None:
    def broken(idx: int) -> str:
        raise KeyError(idx)

    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.SOCKET_FILTER, I(0x95), name="cb", source_line=broken)
    assert ei.value.reason == "R0 !read_ok"


def test_log_buffer_grows_to_the_full_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "LOG_BUF_START", 128)
    body = b"".join(I(0xB7, 2, 0, 0, i) for i in range(60))  # 60 instructions of noise, then no r0
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.SOCKET_FILTER, body + I(0x95), name="growlog")
    log = ei.value.log
    assert len(log) > 128
    assert log.lstrip().startswith("func#0") or log.lstrip().startswith("0:")
    assert "R0 !read_ok" in log and ei.value.insn_index == 60


def test_successful_load_with_log_level_keeps_log() -> None:
    with Program.load(ProgType.SOCKET_FILTER, RET0, name="logged", log_level=2) as prog:
        assert "processed 2 insns" in prog.verifier_log


def test_attribute_refusal_is_a_plain_syscall_error() -> None:
    # unknown prog_flags are refused before the verifier runs: no log, so no VerifierError
    with pytest.raises(SyscallError) as ei:
        Program.load(ProgType.SOCKET_FILTER, RET0, name="badflags", flags=1 << 30)
    assert ei.value.errno == errno.EINVAL
    assert not isinstance(ei.value, VerifierError)
    assert str(ei.value).startswith("load program 'badflags': invalid argument (")


def test_tracing_without_btf_id_reports_the_kernels_words() -> None:
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.TRACING, RET0, name="nobtfid", expected_attach_type=23)
    assert "must provide btf_id" in ei.value.summary()


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="multiple of 8"):
        Program.load(ProgType.SOCKET_FILTER, b"\0" * 12, name="odd")
    with pytest.raises(ConfigError, match="unknown program type"):
        Program.load(999, RET0, name="type")
    with pytest.raises(ConfigError, match="func_info is 5 bytes"):
        Program.load(ProgType.SOCKET_FILTER, RET0, func_info=b"12345")


def test_btf_func_info_and_kernel_core() -> None:
    b = _Blob()
    b.int32()                                   # [1] int
    b.t("", 13, 0, 1)                           # [2] FUNC_PROTO int (void)
    b.t("main", 12, 1, 2)                       # [3] FUNC main, global
    access = b.s("0")
    with KernelBTF.load(b.raw(), name="probe") as btf:
        relo = struct.pack("<IIII", 0, 1, access, 6)  # TYPE_ID_LOCAL of [1] into insn 0's imm
        with Program.load(ProgType.SOCKET_FILTER, RET0, name="core", btf_fd=btf.fd,
                          func_info=struct.pack("<II", 0, 3), core_relos=relo) as prog:
            assert prog.test_run(b"\0" * 16).retval == 1
            info = prog.info()
            assert info.btf_id == btf.id
            assert info.xlated[:8] == I(0xB7, 0, 0, 0, 1)


def test_from_id_and_repr(slot_map: Map) -> None:
    with Program.load(ProgType.SOCKET_FILTER, RET0, name="byid") as prog:
        with Program.from_id(prog.id) as same:
            assert same.name == "byid" and same.type == ProgType.SOCKET_FILTER
            assert same.test_run(b"\0" * 16).retval == 0
        assert "byid" in repr(prog)
    with pytest.raises(SyscallError, match="open program id"):
        Program.from_id((1 << 31) - 5)


def test_failing_insn_parser() -> None:
    log = "func#0 @0\n0: R1=ctx() R10=fp0\n0: (b7) r1 = 0\n1: (95) exit\nR0 !read_ok\n"
    assert failing_insn(log) == 1
    assert failing_insn("nothing here") is None


def test_bind_map_keeps_an_unused_map_alive_and_ids_list_it() -> None:
    from rawbpf.programs import iter_ids

    with Program.load(ProgType.SOCKET_FILTER, RET0, name="binder") as prog:
        with Map.create(MapType.ARRAY, 4, 4, 1, name=f"bound_{uuid.uuid4().hex[:6]}") as m:
            mid = m.id
            prog.bind_map(m)
        assert prog.info().map_ids == (mid,)
        with Map.from_id(mid) as again:  # still alive: the program holds it
            assert again.id == mid
        assert prog.id in set(iter_ids())


def test_tail_call_through_a_prog_array(slot_map: Map) -> None:
    callee_insns = store_in_slot0(ld_map(1, slot_map.fd), 77)
    with Program.load(ProgType.SOCKET_FILTER, callee_insns, name="callee") as callee, \
            Map.create(MapType.PROG_ARRAY, 4, 4, 2, name=f"jmp_{uuid.uuid4().hex[:6]}") as jmp:
        jmp.update(0, callee)
        assert jmp.lookup_int(0) == callee.id
        caller_insns = b"".join([
            ld_map(2, jmp.fd),              # r2 = prog array (r1 is still the context)
            I(0xB7, 3, 0, 0, 0),            # r3 = 0
            I(0x85, 0, 0, 0, 12),           # call bpf_tail_call
            I(0xB7, 0, 0, 0, 1), I(0x95),   # only reached if the tail call failed
        ])
        with Program.load(ProgType.SOCKET_FILTER, caller_insns, name="caller") as caller:
            assert caller.test_run(b"\0" * 32).retval == 7
            assert slot_map.lookup_int(0) == 77
            jmp.delete(0)
            assert caller.test_run(b"\0" * 32).retval == 1
