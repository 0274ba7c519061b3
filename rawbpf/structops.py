"""struct_ops maps: the object's struct matched against the kernel's, member by member; pure.

A struct_ops map is a variable of a kernel struct's type (``struct tcp_congestion_ops``) in a
``.struct_ops`` or ``.struct_ops.link`` section. The kernel takes it as the value of its wrapper type
``struct bpf_struct_ops_<name>`` (a common header, then the struct as ``data``), laid out as *the kernel*
declares the struct. So, as libbpf does, every member the object sets is found in the kernel's struct by
name: data members are copied to the kernel's offset (their sizes must agree), function-pointer members
become slots for program fds, and each program is loaded against the kernel struct's BTF id with its
member's index as ``expected_attach_type``. A member the kernel's struct lacks is skipped when it is zero
and refused otherwise. :func:`plan` does all of it with no syscall; the collection fills the fds in.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from rawbpf.errors import ObjectError
from rawbpf.spec import MapSpec

__tier__ = "pure"

log = logging.getLogger("rawbpf")

WRAPPER_PREFIX = "bpf_struct_ops_"


@dataclass(frozen=True)
class Slot:
    """A function-pointer member the object sets: where its program's fd goes in the map value."""

    member: str
    index: int  # the member's index in the kernel struct (the program's expected_attach_type)
    offset: int  # byte offset of the fd in the map value (wrapper's data + the kernel member's offset)
    program: str


@dataclass
class StructOpsPlan:
    """How one struct_ops map is created and filled on this kernel."""

    map: str
    type_name: str
    kernel_type_id: int  # the struct in vmlinux BTF: the programs' attach_btf_id
    value_type_id: int  # bpf_struct_ops_<name>: the map's btf_vmlinux_value_type_id
    value_size: int
    link: bool
    value: bytes  # the map value with every data member in place and the program slots zero
    slots: List[Slot] = field(default_factory=list)

    def attach_points(self) -> Dict[str, int]:
        """Program name → the member index it is loaded for."""
        return {s.program: s.index for s in self.slots}

    def fill(self, fds: Mapping[str, int]) -> bytes:
        """The map value with each program's fd in its member's slot (``fds``: program name → fd)."""
        out = bytearray(self.value)
        for s in self.slots:
            struct.pack_into("<Q", out, s.offset, fds[s.program])
        return bytes(out)


def _kind(btf: Any, type_id: int) -> str:
    return str(btf.resolved(type_id).kind.name)


def _is_func_ptr(btf: Any, type_id: int) -> bool:
    t = btf.resolved(type_id)
    return str(t.kind.name) == "PTR" and _kind(btf, t.type) == "FUNC_PROTO"


def plan(mspec: MapSpec, btf: Any, kbtf: Any, where: str = "") -> StructOpsPlan:
    """Match struct_ops map ``mspec`` (its struct in the object's ``btf``) against the kernel's ``kbtf``.

    Refuses, with one line naming the map and the member: a struct the kernel does not have or cannot take
    as struct_ops, a set member the kernel's struct lacks, a member whose kind or size differs, bitfields.
    """
    from rawbpf.btf import Kind

    st = mspec.struct_ops
    assert st is not None
    name = st.type_name
    label = f"struct_ops map '{mspec.name}' (struct {name})"

    def fail(what: str) -> ObjectError:
        err = ObjectError(f"{label}: {what}")
        return err.with_context(where) if where else err

    ktype = kbtf.find(name, Kind.STRUCT)
    if ktype is None:
        raise fail("the kernel's BTF (vmlinux) has no struct of this name; struct_ops types of kernel "
                   "modules are not supported")
    wrapper = kbtf.find(WRAPPER_PREFIX + name, Kind.STRUCT)
    if wrapper is None:
        raise fail(f"this kernel does not take it as struct_ops (no struct {WRAPPER_PREFIX}{name} in its "
                   "BTF)")
    data_member = next((m for m in wrapper.members if m.name == "data"), None)
    if data_member is None or kbtf.resolve(data_member.type) != ktype.id:
        raise fail(f"struct {WRAPPER_PREFIX}{name} in the kernel's BTF has no 'data' member of this struct")
    data_off = data_member.bits_offset // 8
    value = bytearray(int(wrapper.size))
    kmembers = {m.name: (i, m) for i, m in enumerate(ktype.members) if m.name}
    data = bytes(mspec.data or b"")
    slots: List[Slot] = []
    for m in btf[st.type_id].members:
        moff = m.bits_offset // 8
        func = _is_func_ptr(btf, m.type)
        prog = st.funcs.get(m.name)
        try:
            msize = 8 if func else int(btf.size_of(m.type))
        except Exception as err:
            raise fail(f"member '{m.name}' has no size ({err})") from err
        raw = data[moff : moff + msize]
        found = kmembers.get(m.name)
        if found is None:
            if prog is not None:
                raise fail(f"member '{m.name}' is set to program '{prog}' but the kernel's struct has no "
                           "such member")
            if any(raw) and not func:
                raise fail(f"member '{m.name}' is not in the kernel's struct and is not zero; a struct_ops "
                           "value can only set members the kernel has")
            log.debug("%s: member '%s' is not in the kernel's struct; zero, so skipped", label, m.name)
            continue
        index, km = found
        if m.bitfield_size or km.bitfield_size:
            raise fail(f"member '{m.name}' is a bitfield, which a struct_ops value cannot set")
        kfunc = _is_func_ptr(kbtf, km.type)
        if func != kfunc:
            here = "a function pointer" if func else _kind(btf, m.type).lower()
            there = "a function pointer" if kfunc else _kind(kbtf, km.type).lower()
            raise fail(f"member '{m.name}' is {here} in the object but {there} in the kernel")
        koff = data_off + km.bits_offset // 8
        if func:
            if prog is not None:
                slots.append(Slot(m.name, index, koff, prog))
            continue
        ksize = int(kbtf.size_of(km.type))
        if ksize != msize:
            raise fail(f"member '{m.name}' is {msize} bytes in the object but {ksize} in the kernel")
        if km.bits_offset % 8:
            raise fail(f"member '{m.name}' is not byte-aligned in the kernel's struct")
        value[koff : koff + msize] = raw
    return StructOpsPlan(map=mspec.name, type_name=name, kernel_type_id=int(ktype.id),
                         value_type_id=int(wrapper.id), value_size=int(wrapper.size), link=st.link,
                         value=bytes(value), slots=slots)


def attach_points(plans: List[StructOpsPlan], where: str = "") -> Dict[str, tuple]:
    """Program name → (kernel struct's BTF id, member index) over all maps. A program may fill the same
    member of the same struct in several maps; any other reuse is refused (it has one attach point)."""
    out: Dict[str, tuple] = {}
    seen: Dict[str, str] = {}
    for p in plans:
        for s in p.slots:
            point = (p.kernel_type_id, s.index)
            here = f"member '{s.member}' of struct {p.type_name} in map '{p.map}'"
            if s.program in out and out[s.program] != point:
                err = ObjectError(f"struct_ops program '{s.program}' fills {seen[s.program]} and {here}; a "
                                  "program is loaded for one member of one struct")
                raise err.with_context(where) if where else err
            out[s.program] = point
            seen.setdefault(s.program, here)
    return out


def used_programs(maps: Mapping[str, MapSpec]) -> Dict[str, List[str]]:
    """Program name → the struct_ops maps whose members name it (pure: from the object alone)."""
    out: Dict[str, List[str]] = {}
    for m in maps.values():
        if m.struct_ops is not None:
            for prog in m.struct_ops.funcs.values():
                out.setdefault(prog, []).append(m.name)
    return out


def describe(mspec: MapSpec) -> Optional[str]:
    """One line for inspect: the struct, how it is registered and which program fills which member."""
    st = mspec.struct_ops
    if st is None:
        return None
    how = "BPF link" if st.link else "map update"
    members = ", ".join(f"{member} ← {prog}" for member, prog in st.funcs.items()) or "no programs"
    return f"struct {st.type_name}, registered by {how}: {members}"
