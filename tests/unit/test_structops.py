"""struct_ops maps: reading them from the object, matching them against a kernel's struct by member name, and
their load/register/unregister sequence (against a hand-made kernel BTF and the fake kernel)."""

from __future__ import annotations

import copy
import errno
import logging
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from rawbpf import structops
from rawbpf.btf import BTF, Array, BtfType, Kind, Member, Param
from rawbpf.consts import BPF_F_LINK, AttachType, Cmd, MapType, ProgType
from rawbpf.elf import load_spec, struct_ops_section
from rawbpf.errors import ObjectError, SyscallError
from rawbpf.spec import MapKind, MapSpec

DATA = Path(__file__).resolve().parents[1] / "data"
RENO = ("rb_init", "rb_ssthresh", "rb_cong_avoid", "rb_undo_cwnd")

# the kernel's struct as this hand-made "vmlinux" declares it: (name, kind), in the kernel's order
KERNEL_MEMBERS = [("ssthresh", "fn"), ("cong_avoid", "fn"), ("set_state", "fn"), ("undo_cwnd", "fn"),
                  ("name", "char16"), ("owner", "ptr"), ("key", "u32"), ("flags", "u32"), ("init", "fn"),
                  ("release", "fn")]
COMMON_SIZE = 64  # the wrapper's header: struct_ops data starts at this offset


def kernel_btf(members: Optional[List[Tuple[str, str]]] = None, *, wrapper: bool = True,
               struct_name: str = "tcp_congestion_ops") -> BTF:
    """A small vmlinux BTF: ``struct <struct_name>`` laid out as ``members`` and its struct_ops wrapper."""
    btf = BTF(strings=b"\0", words=[], offsets=[])
    u32 = btf.add(BtfType(0, Kind.INT, "u32", size=4, int_bits=32))
    u16 = btf.add(BtfType(0, Kind.INT, "u16", size=2, int_bits=16))
    char = btf.add(BtfType(0, Kind.INT, "char", size=1, int_bits=8, int_encoding=4))
    char16 = btf.add(BtfType(0, Kind.ARRAY, array=Array(char, u32, 16)))
    sock = btf.add(BtfType(0, Kind.STRUCT, "sock", size=8, members=[Member("x", u32, 0)]))
    psock = btf.add(BtfType(0, Kind.PTR, type=sock))
    proto = btf.add(BtfType(0, Kind.FUNC_PROTO, type=u32, params=[Param("sk", psock)]))
    fn = btf.add(BtfType(0, Kind.PTR, type=proto))
    ptr = btf.add(BtfType(0, Kind.PTR, type=u32))
    kinds = {"fn": (fn, 8, 8), "ptr": (ptr, 8, 8), "u32": (u32, 4, 4), "char16": (char16, 16, 1),
             "u16": (u16, 2, 2)}
    off = 0
    ms = []
    for name, kind in members or KERNEL_MEMBERS:
        tid, size, align = kinds[kind]
        off = (off + align - 1) // align * align
        ms.append(Member(name, tid, off * 8))
        off += size
    ops = btf.add(BtfType(0, Kind.STRUCT, struct_name, size=(off + 7) // 8 * 8, members=ms))
    if wrapper:
        common = btf.add(BtfType(0, Kind.STRUCT, "bpf_struct_ops_common_value", size=8,
                                 members=[Member("refcnt", u32, 0), Member("state", u32, 32)]))
        size = COMMON_SIZE + (off + 7) // 8 * 8
        btf.add(BtfType(0, Kind.STRUCT, "bpf_struct_ops_" + struct_name, size=size,
                        members=[Member("common", common, 0), Member("data", ops, COMMON_SIZE * 8)]))
    return btf


def kernel_offset(name: str, btf: Optional[BTF] = None) -> Tuple[int, int]:
    """(member index, byte offset in the map value) of a member of the hand-made kernel struct."""
    btf = btf or kernel_btf()
    t = btf.find("tcp_congestion_ops", Kind.STRUCT)
    assert t is not None
    for i, m in enumerate(t.members):
        if m.name == name:
            return i, COMMON_SIZE + m.bits_offset // 8
    raise KeyError(name)


def reno(obj: str = "struct_ops_tcp") -> Tuple[Any, MapSpec]:
    spec = load_spec(DATA / f"{obj}.o")
    return spec, next(m for m in spec.maps.values() if m.kind == MapKind.STRUCT_OPS)


# -- reading the object ------------------------------------------------------------------------------------


def test_struct_ops_section_names_follow_libbpf() -> None:
    assert struct_ops_section(".struct_ops") is False and struct_ops_section(".struct_ops.cc") is False
    assert struct_ops_section(".struct_ops.link") is True and struct_ops_section(".struct_ops.link.x") is True
    assert struct_ops_section(".data") is None and struct_ops_section("struct_ops/x") is None


@pytest.mark.parametrize("obj, name, link", [("struct_ops_tcp", "rawbpf_reno", False),
                                             ("struct_ops_link", "rawbpf_renolk", True)])
def test_each_variable_of_a_struct_ops_section_is_a_map_with_its_programs(obj: str, name: str,
                                                                          link: bool) -> None:
    spec, m = reno(obj)
    assert m.name == name and m.type == MapType.STRUCT_OPS
    assert (m.key_size, m.value_size, m.max_entries) == (4, 56, 1)  # the object's own struct: 56 bytes
    assert m.flags == (BPF_F_LINK if link else 0)
    assert m.struct_ops is not None and m.struct_ops.type_name == "tcp_congestion_ops"
    assert m.struct_ops.link is link
    assert m.struct_ops.funcs == {"init": "rb_init", "ssthresh": "rb_ssthresh", "cong_avoid": "rb_cong_avoid",
                                  "undo_cwnd": "rb_undo_cwnd"}
    assert m.data is not None and bytes(m.data[:16]).rstrip(b"\0") == name.encode()
    assert {n for n, p in spec.programs.items() if p.type == ProgType.STRUCT_OPS} == set(RENO)
    assert structops.used_programs(spec.maps) == {p: [name] for p in RENO}
    line = structops.describe(m)
    assert line is not None and "struct tcp_congestion_ops" in line and "ssthresh ← rb_ssthresh" in line
    assert ("BPF link" if link else "map update") in line


# -- matching against the kernel's struct ------------------------------------------------------------------


def test_members_are_placed_at_the_kernels_offsets_by_name() -> None:
    kbtf = kernel_btf()
    _spec, m = reno()
    spec = _spec
    plan = structops.plan(m, spec.btf, kbtf)
    wrapper = kbtf.find("bpf_struct_ops_tcp_congestion_ops", Kind.STRUCT)
    assert wrapper is not None and plan.value_type_id == wrapper.id and plan.value_size == wrapper.size
    assert plan.kernel_type_id == kbtf.get("tcp_congestion_ops", Kind.STRUCT).id
    slots = {s.member: (s.index, s.offset, s.program) for s in plan.slots}
    for member, prog in (("init", "rb_init"), ("ssthresh", "rb_ssthresh"), ("cong_avoid", "rb_cong_avoid"),
                         ("undo_cwnd", "rb_undo_cwnd")):
        index, off = kernel_offset(member)
        assert slots[member] == (index, off, prog)
    _i, name_off = kernel_offset("name")
    assert plan.value[name_off:name_off + 16].rstrip(b"\0") == b"rawbpf_reno"
    assert plan.value.count(b"rawbpf_reno") == 1
    value = plan.fill({p: 100 + i for i, p in enumerate(RENO)})
    for i, p in enumerate(RENO):
        s = next(s for s in plan.slots if s.program == p)
        assert struct.unpack_from("<Q", value, s.offset)[0] == 100 + i
    assert plan.attach_points() == {"rb_init": kernel_offset("init")[0], "rb_ssthresh": 0,
                                    "rb_cong_avoid": 1, "rb_undo_cwnd": kernel_offset("undo_cwnd")[0]}


def _refusal(m: MapSpec, btf: Any, kbtf: BTF) -> str:
    with pytest.raises(ObjectError) as info:
        structops.plan(m, btf, kbtf, "object 'struct_ops_tcp': section '.struct_ops'")
    msg = info.value.summary()
    assert "\n" not in msg and "object 'struct_ops_tcp': section '.struct_ops'" in msg
    assert "struct_ops map 'rawbpf_reno' (struct tcp_congestion_ops)" in msg
    return msg


def test_a_struct_the_kernel_lacks_is_refused_by_name() -> None:
    spec, m = reno()
    msg = _refusal(m, spec.btf, kernel_btf(struct_name="other_ops"))
    assert "the kernel's BTF (vmlinux) has no struct of this name" in msg


def test_a_struct_without_the_kernels_struct_ops_wrapper_is_refused() -> None:
    spec, m = reno()
    msg = _refusal(m, spec.btf, kernel_btf(wrapper=False))
    assert "no struct bpf_struct_ops_tcp_congestion_ops in its BTF" in msg


def test_a_non_zero_member_the_kernel_lacks_is_refused_and_a_zero_one_skipped(caplog: Any) -> None:
    spec, m = reno()
    without_flags = [(n, k) for n, k in KERNEL_MEMBERS if n != "flags"]
    caplog.set_level(logging.DEBUG, "rawbpf")
    plan = structops.plan(m, spec.btf, kernel_btf(without_flags))  # flags is 0 in the object: skipped
    assert len(plan.slots) == 4
    assert "member 'flags' is not in the kernel's struct; zero, so skipped" in caplog.text
    m2 = copy.copy(m)
    assert m.data is not None
    m2.data = bytearray(m.data)
    m2.data[16:20] = struct.pack("<I", 7)  # flags = 7 in the object
    msg = _refusal(m2, spec.btf, kernel_btf(without_flags))
    assert "member 'flags' is not in the kernel's struct and is not zero" in msg


def test_a_program_for_a_member_the_kernel_lacks_is_refused() -> None:
    spec, m = reno()
    msg = _refusal(m, spec.btf, kernel_btf([(n, k) for n, k in KERNEL_MEMBERS if n != "init"]))
    assert "member 'init' is set to program 'rb_init' but the kernel's struct has no such member" in msg


def test_a_member_of_another_size_or_kind_is_refused() -> None:
    spec, m = reno()
    sized = [(n, "u16" if n == "flags" else k) for n, k in KERNEL_MEMBERS]
    msg = _refusal(m, spec.btf, kernel_btf(sized))
    assert "member 'flags' is 4 bytes in the object but 2 in the kernel" in msg
    kinds = [(n, "u32" if n == "init" else k) for n, k in KERNEL_MEMBERS]
    msg = _refusal(m, spec.btf, kernel_btf(kinds))
    assert "member 'init' is a function pointer in the object but int in the kernel" in msg


def test_a_bitfield_member_is_refused() -> None:
    spec, m = reno()
    kbtf = kernel_btf()
    ops = kbtf.get("tcp_congestion_ops", Kind.STRUCT)
    flags = next(mm for mm in ops.members if mm.name == "flags")
    flags.bitfield_size = 3
    assert "member 'flags' is a bitfield" in _refusal(m, spec.btf, kbtf)


def test_one_program_for_two_members_is_refused() -> None:
    spec, m = reno()
    plan = structops.plan(m, spec.btf, kernel_btf())
    twice = copy.copy(plan)
    twice.map = "second"
    twice.slots = [structops.Slot("cong_avoid", 1, 72, "rb_ssthresh")]
    assert structops.attach_points([plan, plan]) == structops.attach_points([plan])  # same member: fine
    with pytest.raises(ObjectError) as info:
        structops.attach_points([plan, twice], "object 'x'")
    msg = info.value.summary()
    assert ("struct_ops program 'rb_ssthresh' fills member 'ssthresh' of struct tcp_congestion_ops in map "
            "'rawbpf_reno' and member 'cong_avoid' of struct tcp_congestion_ops in map 'second'") in msg


# -- load, register, unregister (fake kernel) -------------------------------------------------------------


class Seen:
    """What the fake kernel was asked: program loads, map creations, updates, deletes, link creations."""

    def __init__(self, fk: Any) -> None:
        self.fk = fk
        self.progs: Dict[str, Tuple[int, int, int]] = {}
        self.maps: Dict[str, Tuple[int, int, int, int, int]] = {}
        self.updates: List[Tuple[int, bytes]] = []
        self.deletes: List[int] = []
        self.links: List[Tuple[int, int]] = []
        self.map_fds: Dict[int, str] = {}
        fk.on(Cmd.PROG_LOAD, self.prog_load)
        fk.on(Cmd.MAP_CREATE, self.map_create)

    def prog_load(self, attr: Any) -> int:
        name = bytes(attr.prog_name).rstrip(b"\0").decode()
        self.progs[name] = (attr.prog_type, attr.expected_attach_type, attr.attach_btf_id)
        return int(self.fk.new_fd("prog"))

    def map_create(self, attr: Any) -> int:
        name = bytes(attr.map_name).rstrip(b"\0").decode()
        fd = int(self.fk.new_fd("map"))
        self.maps[name] = (attr.map_type, attr.key_size, attr.value_size, attr.map_flags,
                           attr.btf_vmlinux_value_type_id)
        self.map_fds[fd] = name
        return fd


@pytest.fixture()
def kernel(fake_kernel: Any, monkeypatch: Any) -> Seen:
    import ctypes

    from rawbpf import externs

    kbtf = kernel_btf()
    monkeypatch.setattr(externs, "vmlinux", lambda path=externs.VMLINUX: kbtf)
    seen = Seen(fake_kernel)

    def update(attr: Any) -> int:
        size = 512
        seen.updates.append((attr.map_fd, ctypes.string_at(attr.value, size)))
        return 0

    def delete(attr: Any) -> int:
        seen.deletes.append(attr.map_fd)
        return 0

    def link_create(attr: Any) -> int:
        seen.links.append((attr.prog_fd, attr.attach_type))
        return int(fake_kernel.new_fd("link"))

    fake_kernel.on(Cmd.MAP_UPDATE_ELEM, update)
    fake_kernel.on(Cmd.MAP_DELETE_ELEM, delete)
    fake_kernel.on(Cmd.LINK_CREATE, link_create)
    return seen


def test_programs_load_for_their_member_and_the_map_registers_by_update(kernel: Seen,
                                                                         fake_kernel: Any) -> None:
    from rawbpf.collection import Collection

    spec, _m = reno()
    kbtf = kernel_btf()
    ktype = kbtf.get("tcp_congestion_ops", Kind.STRUCT).id
    wrapper = kbtf.get("bpf_struct_ops_tcp_congestion_ops", Kind.STRUCT)
    with Collection.load(spec) as coll:
        for prog, member in zip(RENO, ("init", "ssthresh", "cong_avoid", "undo_cwnd")):
            assert kernel.progs[prog] == (ProgType.STRUCT_OPS, kernel_offset(member)[0], ktype)
        assert kernel.maps["rawbpf_reno"] == (MapType.STRUCT_OPS, 4, wrapper.size, 0, wrapper.id)
        assert kernel.updates == [] and "rawbpf_reno" not in coll.struct_ops
        made = coll.attach_all()
        assert len(made) == 1 and list(coll.struct_ops) == ["rawbpf_reno"]
        (fd, value), = kernel.updates
        assert kernel.map_fds[fd] == "rawbpf_reno"
        for prog, member in zip(RENO, ("init", "ssthresh", "cong_avoid", "undo_cwnd")):
            off = kernel_offset(member)[1]
            assert struct.unpack_from("<Q", value, off)[0] == coll.programs[prog].fd
        assert kernel.links == [] and kernel.deletes == []
    assert [kernel.map_fds.get(fd) for fd in kernel.deletes] == ["rawbpf_reno"]  # unregistered on close
    assert fake_kernel.leaked() == []


def test_a_link_map_registers_through_a_link_that_close_releases(kernel: Seen, fake_kernel: Any) -> None:
    from rawbpf.attach import Link
    from rawbpf.collection import Collection

    spec, _m = reno("struct_ops_link")
    with Collection.load(spec) as coll:
        assert kernel.maps["rawbpf_renolk"][3] == BPF_F_LINK
        coll.attach_all()
        (map_fd, atype), = kernel.links
        assert kernel.map_fds[map_fd] == "rawbpf_renolk" and atype == AttachType.STRUCT_OPS
        assert isinstance(coll.struct_ops["rawbpf_renolk"], Link) and len(kernel.updates) == 1
    assert kernel.deletes == [] and fake_kernel.leaked() == []  # closing the link unregisters


def test_a_refused_registration_names_errno_and_reason_and_leaves_nothing(kernel: Seen,
                                                                          fake_kernel: Any) -> None:
    from rawbpf.collection import Collection

    fake_kernel.refuse(Cmd.MAP_UPDATE_ELEM, errno.EEXIST)
    spec, _m = reno()
    with Collection.load(spec) as coll:
        with pytest.raises(SyscallError) as info:
            coll.attach_all()
        assert coll.struct_ops == {}
    msg = info.value.summary()
    assert info.value.errno == errno.EEXIST and info.value.errno_name == "EEXIST"
    assert "\n" not in msg and "file exists" in msg and "already registered" in msg
    assert "register struct_ops map 'rawbpf_reno' (struct tcp_congestion_ops)" in msg
    assert "object 'struct_ops_tcp': section '.struct_ops'" in msg
    assert kernel.deletes == [] and fake_kernel.leaked() == []


def test_a_failed_link_leaves_nothing_registered(kernel: Seen, fake_kernel: Any) -> None:
    from rawbpf.collection import Collection

    fake_kernel.refuse(Cmd.LINK_CREATE, errno.EINVAL)
    spec, _m = reno("struct_ops_link")
    with Collection.load(spec) as coll:
        with pytest.raises(SyscallError) as info:
            coll.attach_all()
        assert coll.struct_ops == {}
    assert info.value.errno == errno.EINVAL and "a member it requires is unset" in info.value.summary()
    assert fake_kernel.leaked() == []


def test_a_subset_without_a_members_program_cannot_register(kernel: Seen, fake_kernel: Any) -> None:
    from rawbpf.collection import Collection
    from rawbpf.errors import ConfigError

    spec, _m = reno()
    progs = ["rb_ssthresh", "rb_cong_avoid", "rb_undo_cwnd"]
    with Collection.load(spec, programs=progs) as coll, pytest.raises(ConfigError) as info:
        coll.attach_all()
    assert "struct_ops map 'rawbpf_reno' cannot be registered: program(s) rb_init not loaded" in \
        info.value.summary()
    assert kernel.updates == [] and fake_kernel.leaked() == []


def test_an_unused_struct_ops_program_is_refused_by_name_before_the_kernel(fake_kernel: Any) -> None:
    from rawbpf.collection import Collection

    for programs in (None, ["rb_ssthresh"]):
        with pytest.raises(ObjectError) as info:
            Collection.load(load_spec(DATA / "struct_ops_prog.o"), programs=programs)
        msg = info.value.summary()
        assert "struct_ops program 'rb_ssthresh' is not used by any struct_ops map" in msg
        assert "section 'struct_ops/rb_ssthresh'" in msg and "\n" not in msg
    assert not fake_kernel.bpf_calls(Cmd.PROG_LOAD) and fake_kernel.leaked() == []


def test_struct_ops_programs_in_question_mark_sections_load_when_a_map_uses_them(kernel: Seen) -> None:
    from rawbpf.collection import Collection

    spec, _m = reno()
    spec.programs["rb_init"].autoload = False  # as SEC("?struct_ops/rb_init"): the map still needs it
    spec.programs["rb_spare"] = copy.copy(spec.programs["rb_undo_cwnd"])  # an unused "?" one: left out
    spec.programs["rb_spare"].name, spec.programs["rb_spare"].autoload = "rb_spare", False
    with Collection.load(spec) as coll:
        assert sorted(coll.programs) == sorted(RENO)


def test_a_kernel_without_the_struct_refuses_the_object_before_any_map(fake_kernel: Any,
                                                                       monkeypatch: Any) -> None:
    from rawbpf import externs
    from rawbpf.collection import Collection

    kbtf = kernel_btf(struct_name="other_ops")
    monkeypatch.setattr(externs, "vmlinux", lambda path=externs.VMLINUX: kbtf)
    with pytest.raises(ObjectError) as info:
        Collection.load(load_spec(DATA / "struct_ops_tcp.o"))
    assert "the kernel's BTF (vmlinux) has no struct of this name" in info.value.summary()
    assert not fake_kernel.bpf_calls(Cmd.MAP_CREATE) and fake_kernel.leaked() == []


# -- inspect ------------------------------------------------------------------------------------------------


def test_inspect_shows_the_struct_ops_maps_and_which_program_fills_which_member() -> None:
    import json

    from click.testing import CliRunner

    from rawbpf.cli import cli

    res = CliRunner().invoke(cli, ["inspect", str(DATA / "struct_ops_tcp.o")])
    assert res.exit_code == 0, res.output
    assert ("rawbpf_reno: struct_ops, key 4, value 56 (struct tcp_congestion_ops), max_entries 1, registered "
            "by map update: init ← rb_init, ssthresh ← rb_ssthresh, cong_avoid ← rb_cong_avoid, undo_cwnd ← "
            "rb_undo_cwnd, from .struct_ops") in res.output
    assert ("rb_cong_avoid: struct_ops [struct_ops/rb_cong_avoid] → struct_ops "
            "tcp_congestion_ops.cong_avoid in map 'rawbpf_reno'") in res.output
    res = CliRunner().invoke(cli, ["inspect", "--json", str(DATA / "struct_ops_link.o")])
    doc = json.loads(res.output)
    m = next(m for m in doc["maps"] if m["name"] == "rawbpf_renolk")
    assert m["struct_ops"] == {"struct": "tcp_congestion_ops", "link": True,
                               "members": {"init": "rb_init", "ssthresh": "rb_ssthresh",
                                           "cong_avoid": "rb_cong_avoid", "undo_cwnd": "rb_undo_cwnd"}}
    res = CliRunner().invoke(cli, ["inspect", str(DATA / "struct_ops_prog.o")])
    assert "rb_ssthresh: struct_ops [struct_ops/rb_ssthresh] → struct_ops: no struct_ops map uses it " \
           "(refused at load)" in res.output


def test_a_member_the_kernel_cannot_take_is_named_in_the_refusal() -> None:
    from rawbpf.errors import ENOTSUPP, explain_refusal

    log = ("attach to unsupported member get_info of struct tcp_congestion_ops\n"
           "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0\n")
    assert explain_refusal(log, ENOTSUPP) == \
        "attach to unsupported member get_info of struct tcp_congestion_ops (ENOTSUPP)"
    assert "not supported by this kernel (ENOTSUPP)" in explain_refusal("processed 0 insns\n", ENOTSUPP)


# -- malformed struct_ops relocations (struct_ops_tcp.o with one relocation rewritten) --------------------


def _patched(first_offset: Optional[int] = None, symbol: str = "") -> bytes:
    """struct_ops_tcp.o with the first relocation of .rel.struct_ops moved to ``first_offset`` or pointed at
    ``symbol``."""
    import io

    from elftools.elf.elffile import ELFFile

    raw = bytearray((DATA / "struct_ops_tcp.o").read_bytes())
    elf = ELFFile(io.BytesIO(bytes(raw)))
    rel = elf.get_section_by_name(".rel.struct_ops")
    at = rel["sh_offset"]
    r_offset, r_info = struct.unpack_from("<QQ", raw, at)
    if first_offset is not None:
        r_offset = first_offset
    if symbol:
        symtab = elf.get_section_by_name(".symtab")
        index = next(i for i, s in enumerate(symtab.iter_symbols()) if s.name == symbol)
        r_info = (index << 32) | (r_info & 0xFFFFFFFF)
    struct.pack_into("<QQ", raw, at, r_offset, r_info)
    return bytes(raw)


@pytest.mark.parametrize("patch, message", [
    (dict(first_offset=0), "struct_ops map 'rawbpf_reno': member 'name' is set to 'rb_init' but is not a "
                           "function pointer"),
    (dict(first_offset=4), "struct_ops map 'rawbpf_reno': relocation at offset 4 of struct "
                           "tcp_congestion_ops is not at a member"),
    (dict(first_offset=4096), "relocation at offset 4096 is outside any struct_ops map"),
    (dict(symbol="init_calls"), "struct_ops map 'rawbpf_reno': member 'init' names 'init_calls', which "
                                "is not a program"),
])
def test_a_struct_ops_relocation_that_names_no_program_for_a_member_is_refused(patch: Dict[str, Any],
                                                                              message: str) -> None:
    with pytest.raises(ObjectError) as info:
        load_spec(_patched(**patch), "struct_ops_tcp")
    msg = info.value.summary()
    assert message in msg and "\n" not in msg
    assert "section '.struct_ops'" in msg
