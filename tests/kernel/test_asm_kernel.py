"""Hand-assembled programs against the real kernel: load, BPF_PROG_TEST_RUN, map contents, xlated read-back,
the cpu v4 instructions (sdiv/smod, movsx, ldsx, bswap, gotol), atomics, jumps and packet loads computing
the right values."""

from __future__ import annotations

import struct
import uuid

import pytest
from kernel_limits import require, require_feature

from rawbpf.asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R9,
    R10,
    W1,
    W2,
    W3,
    Assembler,
    decode,
    disassemble,
    encode,
)
from rawbpf.consts import MapType, ProgType
from rawbpf.errors import VerifierError
from rawbpf.maps import Map
from rawbpf.programs import Program

PACKET = bytes(64)  # socket filters need at least an Ethernet header of input


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def counter_program(step: int) -> Assembler:
    """value[key 0] += step in map "counts", creating the entry if needed; returns 1."""
    p = Assembler("counter")
    p.mov(R6, step)
    p.mov(R1, 0).stx_w(R10, -4, R1)                   # key = 0
    p.ld_map_fd(R1, "counts").mov(R2, R10).add(R2, -4)
    p.call("bpf_map_lookup_elem")
    p.jne(R0, 0, "found")
    p.stx_dw(R10, -16, R6)                            # value = step
    p.ld_map_fd(R1, "counts").mov(R2, R10).add(R2, -4).mov(R3, R10).add(R3, -16).mov(R4, 0)
    p.call("bpf_map_update_elem")
    p.ja("done")
    p.label("found")
    p.atomic_add(R0, 0, R6)
    p.label("done")
    p.mov(R0, 1).exit()
    return p


def test_hand_assembled_program_uses_a_map_and_helpers_under_test_run() -> None:
    with Map.create(MapType.HASH, 4, 8, 4, name=_name("asm_cnt")) as counts:
        insns = counter_program(7).assemble(maps={"counts": counts})
        with Program.load(ProgType.SOCKET_FILTER, insns, name=_name("asm_cnt")) as prog:
            assert counts.lookup(0) is None
            result = prog.test_run(PACKET, repeat=5)
            assert result.retval == 1
            assert struct.unpack("<Q", counts.lookup(0) or b"")[0] == 7 * 5
            prog.test_run(PACKET)
            assert counts.lookup_int(0) == 7 * 6


def test_xlated_instructions_read_back_and_disassemble() -> None:
    with Map.create(MapType.HASH, 4, 8, 4, name=_name("asm_x")) as counts:
        asm = counter_program(1)
        insns = asm.assemble(maps={"counts": counts})
        with Program.load(ProgType.SOCKET_FILTER, insns, name=_name("asm_x")) as prog:
            info = prog.info()
            assert info.xlated, "no xlated instructions (needs CAP_SYS_ADMIN)"
            xlated = decode(info.xlated)
            lines = disassemble(info.xlated, maps={counts.id: "counts"})
            assert len(lines) == len(xlated)
            assert "<unknown>" not in lines
            # the kernel reports map references by map id, which the annotation turns back into a name
            map_loads = [ln for ln in lines if ln.startswith("ld_pseudo")]
            assert map_loads and all(ln.startswith(f"ld_pseudo\tr1, 1, {counts.id}") for ln in map_loads)
            assert all(ln.endswith("; map 'counts'") for ln in map_loads)
            assert lines[0] == "r6 = 1" and lines[-1] == "exit"
            assert any(ln.startswith("lock *(u64 *)(r0 + 0) += r6") for ln in lines)
            assert sum(ln.startswith("call ") for ln in lines) == 2


def v4_program() -> Assembler:
    """Stores the results of cpu v4 instructions into the 8 u64 slots of map "out" (key 0)."""
    p = Assembler("v4")
    p.mov(R1, 0).stx_w(R10, -4, R1)
    p.ld_map_fd(R1, "out").mov(R2, R10).add(R2, -4)
    p.call("bpf_map_lookup_elem")
    p.jne(R0, 0, "have")
    p.exit()
    p.label("have")
    p.mov(R6, R0)
    p.mov(R1, -7).sdiv(R1, 2).stx_dw(R6, 0, R1)                      # -3
    p.mov(R1, -7).smod(R1, 2).stx_dw(R6, 8, R1)                      # -1
    p.mov(W1, -9).sdiv(W1, 4).stx_dw(R6, 16, R1)                     # (u32)-2, zero-extended
    p.mov(R2, 0x80).movsx(R1, R2, 8).stx_dw(R6, 24, R1)              # -128
    p.ld_imm64(R2, 0x80000000).movsx(R1, R2, 32)
    p.mov(W2, 0x8000).movsx(W3, W2, 16).add(R1, R3)                  # -2**31 + (u32)(-32768)
    p.stx_dw(R6, 32, R1)
    p.st_h(R10, -8, 0x8001 - 0x10000).ldsx_h(R1, R10, -8)            # -32767
    p.st_b(R10, -7, -1).ldsx_b(R2, R10, -7).add(R1, R2)              # -32767 + -1
    p.stx_dw(R6, 40, R1)
    p.ld_imm64(R1, 0x0102030405060708).bswap(R1, 64).stx_dw(R6, 48, R1)
    p.mov(R1, 7).gotol("fwd")                         # 7 -> +10 -> +100: forward and backward gotol
    p.label("back").add(R1, 100).gotol("done")
    p.label("fwd").add(R1, 10).gotol("back")
    p.label("done")
    p.mov(R2, 0x1234).bswap(R2, 16).lsh(R2, 8).add(R1, R2).stx_dw(R6, 56, R1)  # 117 + (0x3412 << 8)
    p.mov(R0, 0).exit()
    return p


def test_cpu_v4_instructions_compute_the_right_values() -> None:
    require_feature("isa_v4")
    with Map.create(MapType.ARRAY, 4, 64, 1, name=_name("asm_v4")) as out:
        asm = v4_program()
        try:
            prog = Program.load(ProgType.SOCKET_FILTER, asm.assemble(maps={"out": out}),
                                name=_name("asm_v4"))
        except VerifierError as err:  # pragma: no cover - diagnostic for old kernels
            pytest.fail(f"{err}\n{err.tail()}")
        with prog:
            assert prog.test_run(PACKET).retval == 0
            values = struct.unpack("<8q", out.lookup(0) or b"")
        assert values == (
            -3, -1, 0xFFFFFFFE, -128, -(1 << 31) + 0xFFFF8000, -32768, 0x0807060504030201,
            117 + (0x3412 << 8),
        )
        # the listing of what was loaded names the v4 forms the way later llvm releases print them
        listing = "\n".join(asm.disassemble({"out": out}))
        for form in ("r1 s/= 2", "r1 s%= 2", "w1 s/= 4", "r1 = (s8)r2", "r1 = (s32)r2", "w3 = (s16)w2",
                     "r1 = *(s16 *)(r10 - 8)", "r2 = *(s8 *)(r10 - 7)", "r1 = bswap64 r1", "gotol +2 <fwd>",
                     "gotol -4 <back>"):
            assert form in listing, form


def test_verifier_rejects_a_bad_hand_assembled_program_with_its_reason() -> None:
    p = Assembler().ldx_dw(R0, R1, 0x7FF0).exit()  # out-of-bounds read of the skb context
    with pytest.raises(VerifierError) as info:
        Program.load(ProgType.SOCKET_FILTER, p.assemble(), name=_name("asm_bad"))
    assert "invalid bpf_context access" in str(info.value)


def semantics_program() -> Assembler:
    """Atomics, jump conditions and legacy packet loads, each result stored into a u64 slot of map "out"."""
    p = Assembler("semantics")
    p.mov(R6, R1)                                      # skb context, for ld_abs/ld_ind
    p.mov(R1, 0).stx_w(R10, -4, R1)
    p.ld_map_fd(R1, "out").mov(R2, R10).add(R2, -4)
    p.call("bpf_map_lookup_elem")
    p.jne(R0, 0, "have")
    p.exit()
    p.label("have")
    p.mov(R7, R0)
    p.st_dw(R7, 8, 10).mov(R1, 5).atomic_add(R7, 8, R1, fetch=True).stx_dw(R7, 0, R1)   # 10, 15
    p.st_dw(R7, 24, 7).mov(R1, 9).xchg(R7, 24, R1).stx_dw(R7, 16, R1)                   # 7, 9
    p.st_dw(R7, 40, 4).mov(R0, 4).mov(R1, 8).cmpxchg(R7, 40, R1).stx_dw(R7, 32, R0)     # 4, 8
    p.st_dw(R7, 56, 4).mov(R0, 3).mov(R1, 8).cmpxchg(R7, 56, R1).stx_dw(R7, 48, R0)     # 4, 4
    p.st_w(R7, 64, 0x0F).mov(W1, 0xF0).atomic_or(R7, 64, W1, fetch=True).stx_dw(R7, 72, R1)  # 0xff, 0x0f
    # jump conditions: bit n of r8 is set when condition n is taken
    p.mov(R8, 0).mov(R1, -1).mov(R2, 1).ld_imm64(R3, (1 << 32) | 5)
    p.jsgt(R2, R1, "t0").ja("n0").label("t0").or_(R8, 1).label("n0")
    p.jgt(R1, R2, "t1").ja("n1").label("t1").or_(R8, 2).label("n1")
    p.jset(R1, 4, "t2").ja("n2").label("t2").or_(R8, 4).label("n2")
    p.jeq(W3, 5, "t3").ja("n3").label("t3").or_(R8, 8).label("n3")
    p.jeq(R3, 5, "t4").ja("n4").label("t4").or_(R8, 16).label("n4")
    p.jslt(W1, 0, "t5").ja("n5").label("t5").or_(R8, 32).label("n5")
    p.jle(W3, W2, "t6").ja("n6").label("t6").or_(R8, 64).label("n6")
    p.stx_dw(R7, 80, R8)
    p.ld_abs("h", 12).mov(R8, R0)                      # ethertype, converted to host order
    p.mov(R9, 13).ld_ind("b", R9, 1).lsh(R8, 8).or_(R8, R0)
    p.stx_dw(R7, 88, R8)
    p.mov(R0, 0).exit()
    return p


def test_atomics_jumps_and_packet_loads_mean_what_their_names_say() -> None:
    with Map.create(MapType.ARRAY, 4, 96, 1, name=_name("asm_sem")) as out:
        insns = semantics_program().assemble(maps={"out": out})
        with Program.load(ProgType.SOCKET_FILTER, insns, name=_name("asm_sem")) as prog:
            packet = bytearray(64)
            # socket filters see the frame from the network header on: skb offset 12 is input byte 26
            packet[26:29] = b"\x08\x00\x2a"
            assert prog.test_run(bytes(packet)).retval == 0
            values = struct.unpack("<12Q", out.lookup(0) or b"")
    assert values[:10] == (10, 15, 7, 9, 4, 8, 4, 4, 0xFF, 0x0F)
    # taken: 1 s> -1, 0xff..ff > 1, -1 & 4, w3 == 5 (upper half ignored), w1 s< 0; not: r3 == 5, 5 <= 1
    assert values[10] == 1 | 2 | 4 | 8 | 32
    assert values[11] == (0x0800 << 8) | 0x2A


def test_bpf_to_bpf_call_by_label() -> None:
    p = Assembler("calls")
    p.mov(R1, 20).call_label("triple").add(R0, 1).exit()   # main: triple(20) + 1
    p.label("triple").mov(R0, R1).mul(R0, 3).exit()
    with Program.load(ProgType.SOCKET_FILTER, p.assemble(), name=_name("asm_call")) as prog:
        assert prog.test_run(PACKET).retval == 61
        xlated = decode(prog.info().xlated)
    assert decode(p.assemble())[1].imm == 2                 # relative to the next instruction
    assert xlated[1].code == 0x85 and xlated[1].src == 1     # the kernel keeps it a bpf-to-bpf call
    assert disassemble(encode(xlated[-3:])) == ["r0 = r1", "r0 *= 3", "exit"]


def test_kfunc_calls_by_btf_id() -> None:
    from rawbpf.btf import Kind
    from rawbpf.btf.kernel import vmlinux

    btf = vmlinux()
    lock, unlock = (btf.find(n, Kind.FUNC) for n in ("bpf_rcu_read_lock", "bpf_rcu_read_unlock"))
    require(lock is not None and unlock is not None, "the bpf_rcu_read_lock/unlock kfuncs", "6.2")
    assert lock is not None and unlock is not None
    p = Assembler("kfuncs").call_kfunc(lock.id).call_kfunc(unlock.id).mov(R0, 7).exit()
    assert disassemble(p.assemble(), helpers=True)[0] == f"call {lock.id}  ; kfunc btf_id {lock.id}"
    with Program.load(ProgType.SOCKET_FILTER, p.assemble(), name=_name("asm_kf")) as prog:
        assert prog.test_run(PACKET).retval == 7
        calls = [i for i in decode(prog.info().xlated) if i.code == 0x85]
    assert len(calls) == 2
