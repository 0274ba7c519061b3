"""ctypes layouts of the kernel's bpf(2) and perf_event_open(2) structures; pure, makes no syscalls.

One ``ctypes.Structure`` per bpf(2) command (the member of ``union bpf_attr`` the command reads), plus
``perf_event_attr`` and the ``bpf_*_info`` structures filled by ``BPF_OBJ_GET_INFO_BY_FD``. Callers pass
``ctypes.sizeof`` of the per-command structure, so every byte past what rawbpf sets is zero: the kernel
refuses non-zero bytes it does not understand, and treats the missing tail of a shorter attr as zero.

Field names follow include/uapi/linux/bpf.h. Where the kernel has a union, the field carries the name
rawbpf uses and ``_names_`` maps it to the kernel's spelling (``"perf_event.bpf_cookie"``) so
tools/check_types.py can compare every offset against /sys/kernel/btf/vmlinux. ``_kernel_`` names the
kernel type and, for the members of ``union bpf_attr``, either the named member (``"test"``) or
``"anon:<field>"`` for the anonymous struct that contains that field.
"""

from __future__ import annotations

import ctypes
from typing import Dict, Tuple

__tier__ = "pure"

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
s32 = ctypes.c_int32
u64 = ctypes.c_uint64


class _Layout(ctypes.Structure):
    """Base of every layout: the kernel type it mirrors and the kernel's names for union members."""

    _kernel_: Tuple[str, str] = ("", "")
    _names_: Dict[str, str] = {}


# --- union bpf_attr members -----------------------------------------------------------------------------


class MapCreateAttr(_Layout):
    """BPF_MAP_CREATE."""

    _kernel_ = ("bpf_attr", "anon:map_type")
    _fields_ = [
        ("map_type", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("inner_map_fd", u32),
        ("numa_node", u32),
        ("map_name", ctypes.c_char * 16),
        ("map_ifindex", u32),
        ("btf_fd", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("map_extra", u64),
        ("value_type_btf_obj_fd", s32),
        ("map_token_fd", s32),
    ]


class MapElemAttr(_Layout):
    """BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM, DELETE_ELEM, GET_NEXT_KEY, LOOKUP_AND_DELETE_ELEM, MAP_FREEZE.

    ``value`` doubles as ``next_key`` for GET_NEXT_KEY.
    """

    _kernel_ = ("bpf_attr", "anon:key")
    _fields_ = [
        ("map_fd", u32),
        ("key", u64),
        ("value", u64),
        ("flags", u64),
    ]


class MapBatchAttr(_Layout):
    """BPF_MAP_LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH, UPDATE_BATCH, DELETE_BATCH."""

    _kernel_ = ("bpf_attr", "batch")
    _fields_ = [
        ("in_batch", u64),
        ("out_batch", u64),
        ("keys", u64),
        ("values", u64),
        ("count", u32),
        ("map_fd", u32),
        ("elem_flags", u64),
        ("flags", u64),
    ]


class ProgLoadAttr(_Layout):
    """BPF_PROG_LOAD. ``attach_btf_obj_fd`` shares its slot with ``attach_prog_fd``."""

    _kernel_ = ("bpf_attr", "anon:insn_cnt")
    _fields_ = [
        ("prog_type", u32),
        ("insn_cnt", u32),
        ("insns", u64),
        ("license", u64),
        ("log_level", u32),
        ("log_size", u32),
        ("log_buf", u64),
        ("kern_version", u32),
        ("prog_flags", u32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", u32),
        ("expected_attach_type", u32),
        ("prog_btf_fd", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("func_info_cnt", u32),
        ("line_info_rec_size", u32),
        ("line_info", u64),
        ("line_info_cnt", u32),
        ("attach_btf_id", u32),
        ("attach_btf_obj_fd", u32),
        ("core_relo_cnt", u32),
        ("fd_array", u64),
        ("core_relos", u64),
        ("core_relo_rec_size", u32),
        ("log_true_size", u32),
        ("prog_token_fd", s32),
        ("fd_array_cnt", u32),
    ]


class ObjAttr(_Layout):
    """BPF_OBJ_PIN and BPF_OBJ_GET."""

    _kernel_ = ("bpf_attr", "anon:pathname")
    _fields_ = [
        ("pathname", u64),
        ("bpf_fd", u32),
        ("file_flags", u32),
        ("path_fd", s32),
    ]


class TestRunAttr(_Layout):
    """BPF_PROG_TEST_RUN."""

    __test__ = False  # not a pytest class
    _kernel_ = ("bpf_attr", "test")
    _fields_ = [
        ("prog_fd", u32),
        ("retval", u32),
        ("data_size_in", u32),
        ("data_size_out", u32),
        ("data_in", u64),
        ("data_out", u64),
        ("repeat", u32),
        ("duration", u32),
        ("ctx_size_in", u32),
        ("ctx_size_out", u32),
        ("ctx_in", u64),
        ("ctx_out", u64),
        ("flags", u32),
        ("cpu", u32),
        ("batch_size", u32),
    ]


class GetIdAttr(_Layout):
    """BPF_*_GET_FD_BY_ID and BPF_*_GET_NEXT_ID; ``start_id`` is also prog_id/map_id/btf_id/link_id."""

    _kernel_ = ("bpf_attr", "anon:start_id")
    _fields_ = [
        ("start_id", u32),
        ("next_id", u32),
        ("open_flags", u32),
        ("fd_by_id_token_fd", s32),
    ]


class InfoAttr(_Layout):
    """BPF_OBJ_GET_INFO_BY_FD."""

    _kernel_ = ("bpf_attr", "info")
    _fields_ = [
        ("bpf_fd", u32),
        ("info_len", u32),
        ("info", u64),
    ]


class RawTracepointAttr(_Layout):
    """BPF_RAW_TRACEPOINT_OPEN (``name`` NULL attaches a tp_btf/tracing program to its attach_btf_id)."""

    _kernel_ = ("bpf_attr", "raw_tracepoint")
    _fields_ = [
        ("name", u64),
        ("prog_fd", u32),
        ("cookie", u64),
    ]


class BtfLoadAttr(_Layout):
    """BPF_BTF_LOAD."""

    _kernel_ = ("bpf_attr", "anon:btf_log_buf")
    _fields_ = [
        ("btf", u64),
        ("btf_log_buf", u64),
        ("btf_size", u32),
        ("btf_log_size", u32),
        ("btf_log_level", u32),
        ("btf_log_true_size", u32),
        ("btf_flags", u32),
        ("btf_token_fd", s32),
    ]


class LinkCreateAttr(_Layout):
    """BPF_LINK_CREATE for perf events (``perf_cookie``) and tracing (``target_btf_id`` + ``tracing_cookie``).

    The tail is a union in the kernel: a perf-event link reads ``bpf_cookie`` at offset 16, a tracing link
    reads ``target_btf_id`` at 16 and ``cookie`` at 24.
    """

    _kernel_ = ("bpf_attr", "link_create")
    _names_ = {"perf_cookie": "perf_event.bpf_cookie", "tracing_cookie": "tracing.cookie"}
    _fields_ = [
        ("prog_fd", u32),
        ("target_fd", u32),
        ("attach_type", u32),
        ("flags", u32),
        ("target_btf_id", u32),
        ("_pad", u32),
        ("tracing_cookie", u64),
        ("_reserved", u64 * 4),
    ]

    @property
    def perf_cookie(self) -> int:
        return int(self.target_btf_id) | (int(self._pad) << 32)

    @perf_cookie.setter
    def perf_cookie(self, value: int) -> None:
        self.target_btf_id = value & 0xFFFFFFFF
        self._pad = value >> 32


class LinkDetachAttr(_Layout):
    """BPF_LINK_DETACH."""

    _kernel_ = ("bpf_attr", "link_detach")
    _fields_ = [("link_fd", u32)]


class EnableStatsAttr(_Layout):
    """BPF_ENABLE_STATS."""

    _kernel_ = ("bpf_attr", "enable_stats")
    _fields_ = [("type", u32)]


class ProgBindMapAttr(_Layout):
    """BPF_PROG_BIND_MAP."""

    _kernel_ = ("bpf_attr", "prog_bind_map")
    _fields_ = [("prog_fd", u32), ("map_fd", u32), ("flags", u32)]


# --- bpf_*_info ---------------------------------------------------------------------------------------


class ProgInfoStruct(_Layout):
    """struct bpf_prog_info."""

    _kernel_ = ("bpf_prog_info", "")
    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("tag", u8 * 8),
        ("jited_prog_len", u32),
        ("xlated_prog_len", u32),
        ("jited_prog_insns", u64),
        ("xlated_prog_insns", u64),
        ("load_time", u64),
        ("created_by_uid", u32),
        ("nr_map_ids", u32),
        ("map_ids", u64),
        ("name", ctypes.c_char * 16),
        ("ifindex", u32),
        ("gpl_compatible", u32),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("nr_jited_ksyms", u32),
        ("nr_jited_func_lens", u32),
        ("jited_ksyms", u64),
        ("jited_func_lens", u64),
        ("btf_id", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("nr_func_info", u32),
        ("nr_line_info", u32),
        ("line_info", u64),
        ("jited_line_info", u64),
        ("nr_jited_line_info", u32),
        ("line_info_rec_size", u32),
        ("jited_line_info_rec_size", u32),
        ("nr_prog_tags", u32),
        ("prog_tags", u64),
        ("run_time_ns", u64),
        ("run_cnt", u64),
        ("recursion_misses", u64),
        ("verified_insns", u32),
        ("attach_btf_obj_id", u32),
        ("attach_btf_id", u32),
    ]


class MapInfoStruct(_Layout):
    """struct bpf_map_info."""

    _kernel_ = ("bpf_map_info", "")
    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("name", ctypes.c_char * 16),
        ("ifindex", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("btf_id", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("btf_vmlinux_id", u32),
        ("map_extra", u64),
    ]


class BtfInfoStruct(_Layout):
    """struct bpf_btf_info."""

    _kernel_ = ("bpf_btf_info", "")
    _fields_ = [
        ("btf", u64),
        ("btf_size", u32),
        ("id", u32),
        ("name", u64),
        ("name_len", u32),
        ("kernel_btf", u32),
    ]


class LinkInfoStruct(_Layout):
    """struct bpf_link_info: the common head, and the per-type union as named views at offset 16.

    ``u`` is the union's raw bytes; the properties below read the member that ``type`` selects (raw
    tracepoint name, tracing attach type/target, perf event type/name); ``_names_`` gives the kernel names.
    """

    _kernel_ = ("bpf_link_info", "")
    _names_ = {
        "tp_name": "raw_tracepoint.tp_name",
        "tp_name_len": "raw_tracepoint.tp_name_len",
        "tracing_attach_type": "tracing.attach_type",
        "tracing_target_obj_id": "tracing.target_obj_id",
        "tracing_target_btf_id": "tracing.target_btf_id",
        "perf_event_type": "perf_event.type",
        "perf_name": "perf_event.tracepoint.tp_name",
        "perf_name_len": "perf_event.tracepoint.name_len",
        "perf_uprobe_offset": "perf_event.uprobe.offset",
    }
    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("prog_id", u32),
        ("_pad", u32),
        ("u", u8 * 48),
    ]

    def _u32(self, off: int) -> int:
        return int.from_bytes(bytes(self.u[off:off + 4]), "little")

    def _u64(self, off: int) -> int:
        return int.from_bytes(bytes(self.u[off:off + 8]), "little")

    def _set(self, off: int, value: int, size: int) -> None:
        for i, b in enumerate(value.to_bytes(size, "little")):
            self.u[off + i] = b

    # union views (offsets relative to the struct start, as the check tool sees them)
    tp_name = property(lambda self: self._u64(0), lambda self, v: self._set(0, v, 8))
    tp_name_len = property(lambda self: self._u32(8), lambda self, v: self._set(8, v, 4))
    tracing_attach_type = property(lambda self: self._u32(0))
    tracing_target_obj_id = property(lambda self: self._u32(4))
    tracing_target_btf_id = property(lambda self: self._u32(8))
    perf_event_type = property(lambda self: self._u32(0))
    perf_name = property(lambda self: self._u64(8), lambda self, v: self._set(8, v, 8))
    perf_name_len = property(lambda self: self._u32(16), lambda self, v: self._set(16, v, 4))
    perf_uprobe_offset = property(lambda self: self._u32(20))


#: offsets of the union views of LinkInfoStruct, relative to the struct start
LINK_INFO_VIEW_OFFSETS = {
    "tp_name": 16, "tp_name_len": 24, "tracing_attach_type": 16, "tracing_target_obj_id": 20,
    "tracing_target_btf_id": 24, "perf_event_type": 16, "perf_name": 24, "perf_name_len": 32,
    "perf_uprobe_offset": 36,
}

# bpf_link_info.type
BPF_LINK_TYPE_RAW_TRACEPOINT = 1
BPF_LINK_TYPE_TRACING = 2
BPF_LINK_TYPE_PERF_EVENT = 7
# bpf_link_info.perf_event.type (enum bpf_perf_event_type)
BPF_PERF_EVENT_UPROBE = 1
BPF_PERF_EVENT_URETPROBE = 2
BPF_PERF_EVENT_TRACEPOINT = 5


# --- perf_event_open ----------------------------------------------------------------------------------

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3

# flag bits of the bit-field word at offset 40
PERF_ATTR_FLAG_DISABLED = 1 << 0
PERF_ATTR_FLAG_INHERIT = 1 << 1
PERF_ATTR_FLAG_EXCLUDE_USER = 1 << 4
PERF_ATTR_FLAG_EXCLUDE_KERNEL = 1 << 5
PERF_ATTR_FLAG_WATERMARK = 1 << 14

# ioctl numbers: _IO('$', n) and _IOW('$', 8, __u32)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfEventAttr(_Layout):
    """struct perf_event_attr (PERF_ATTR_SIZE_VER8, 136 bytes). ``flags`` is the bit-field word."""

    _kernel_ = ("perf_event_attr", "")
    _names_ = {"flags": "disabled", "sample_period": "sample_period", "wakeup_events": "wakeup_events",
               "config1": "config1", "config2": "config2", "aux_action": "aux_action"}
    _fields_ = [
        ("type", u32),
        ("size", u32),
        ("config", u64),
        ("sample_period", u64),
        ("sample_type", u64),
        ("read_format", u64),
        ("flags", u64),
        ("wakeup_events", u32),
        ("bp_type", u32),
        ("config1", u64),
        ("config2", u64),
        ("branch_sample_type", u64),
        ("sample_regs_user", u64),
        ("sample_stack_user", u32),
        ("clockid", s32),
        ("sample_regs_intr", u64),
        ("aux_watermark", u32),
        ("sample_max_stack", u16),
        ("__reserved_2", u16),
        ("aux_sample_size", u32),
        ("aux_action", u32),
        ("sig_data", u64),
        ("config3", u64),
    ]


#: every layout checked against the kernel's BTF by tools/check_types.py and the unit tests
ALL_LAYOUTS = (
    MapCreateAttr, MapElemAttr, MapBatchAttr, ProgLoadAttr, ObjAttr, TestRunAttr, GetIdAttr, InfoAttr,
    RawTracepointAttr, BtfLoadAttr, LinkCreateAttr, LinkDetachAttr, EnableStatsAttr, ProgBindMapAttr,
    ProgInfoStruct, MapInfoStruct, BtfInfoStruct, LinkInfoStruct, PerfEventAttr,
)


def field_offsets(layout: type) -> Dict[str, int]:
    """{kernel field name: byte offset} for a layout (private padding fields left out)."""
    names: Dict[str, str] = getattr(layout, "_names_", {})
    out: Dict[str, int] = {}
    for fname, *_ in layout._fields_:  # type: ignore[attr-defined]
        if fname.startswith("_") and fname not in names:
            continue
        out[names.get(fname, fname)] = getattr(layout, fname).offset
    if layout is LinkCreateAttr:
        out[names["perf_cookie"]] = out["target_btf_id"]
    if layout is LinkInfoStruct:
        out.pop("u", None)
        for view, off in LINK_INFO_VIEW_OFFSETS.items():
            out[names[view]] = off
    return out


def ptr(buf: object) -> int:
    """The address of a ctypes buffer/structure, for the u64 pointer fields of bpf_attr (0 for None)."""
    if buf is None:
        return 0
    return ctypes.addressof(buf)  # type: ignore[arg-type]
