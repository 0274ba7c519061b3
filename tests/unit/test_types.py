"""bpf_attr, perf_event_attr and bpf_*_info layouts: offsets pinned to include/uapi/linux/bpf.h."""

from __future__ import annotations

import ctypes

import pytest

from rawbpf import _types as T

# (layout, field, offset) as the kernel has them; unions appear under the kernel's name.
PINNED_BY_LAYOUT = {
    T.MapCreateAttr: {
        "map_type": 0, "inner_map_fd": 20, "map_name": 28, "map_ifindex": 44, "btf_fd": 48,
        "btf_vmlinux_value_type_id": 60, "map_extra": 64, "value_type_btf_obj_fd": 72, "map_token_fd": 76,
    },
    T.MapElemAttr: {
        "map_fd": 0, "key": 8, "value": 16, "flags": 24,
    },
    T.MapBatchAttr: {
        "in_batch": 0, "keys": 16, "count": 32, "map_fd": 36, "elem_flags": 40, "flags": 48,
    },
    T.ProgLoadAttr: {
        "insns": 8, "license": 16, "log_level": 24, "log_buf": 32, "kern_version": 40, "prog_name": 48,
        "expected_attach_type": 68, "prog_btf_fd": 72, "func_info": 80, "line_info": 96,
        "attach_btf_id": 108, "attach_btf_obj_fd": 112, "core_relo_cnt": 116, "fd_array": 120,
        "core_relos": 128, "core_relo_rec_size": 136, "log_true_size": 140, "prog_token_fd": 144,
        "fd_array_cnt": 148,
    },
    T.ObjAttr: {
        "pathname": 0, "bpf_fd": 8, "file_flags": 12, "path_fd": 16,
    },
    T.TestRunAttr: {
        "retval": 4, "data_in": 16, "repeat": 32, "duration": 36, "ctx_in": 48, "flags": 64,
        "batch_size": 72,
    },
    T.GetIdAttr: {
        "start_id": 0, "next_id": 4, "open_flags": 8,
    },
    T.InfoAttr: {
        "bpf_fd": 0, "info_len": 4, "info": 8,
    },
    T.RawTracepointAttr: {
        "name": 0, "prog_fd": 8, "cookie": 16,
    },
    T.BtfLoadAttr: {
        "btf_log_buf": 8, "btf_size": 16, "btf_log_level": 24, "btf_log_true_size": 28, "btf_flags": 32,
    },
    T.LinkCreateAttr: {
        "target_fd": 4, "attach_type": 8, "flags": 12, "target_btf_id": 16, "perf_event.bpf_cookie": 16,
        "tracing.cookie": 24,
    },
    T.LinkDetachAttr: {
        "link_fd": 0,
    },
    T.EnableStatsAttr: {
        "type": 0,
    },
    T.ProgBindMapAttr: {
        "flags": 8,
    },
    T.ProgInfoStruct: {
        "tag": 8, "xlated_prog_insns": 32, "map_ids": 56, "name": 64, "gpl_compatible": 84, "btf_id": 128,
        "run_time_ns": 192, "run_cnt": 200, "verified_insns": 216, "attach_btf_id": 224,
    },
    T.MapInfoStruct: {
        "name": 24, "netns_dev": 48, "btf_id": 64, "map_extra": 80,
    },
    T.BtfInfoStruct: {
        "name": 16, "kernel_btf": 28,
    },
    T.LinkInfoStruct: {
        "prog_id": 8, "raw_tracepoint.tp_name": 16, "raw_tracepoint.tp_name_len": 24,
        "tracing.target_btf_id": 24, "perf_event.type": 16, "perf_event.tracepoint.tp_name": 24,
    },
    T.PerfEventAttr: {
        "config": 8, "sample_period": 16, "disabled": 40, "wakeup_events": 48, "config1": 56, "config2": 64,
        "clockid": 92, "sample_max_stack": 108, "aux_action": 116, "sig_data": 120, "config3": 128,
    },
}
PINNED = [(lay, f, off) for lay, fields in PINNED_BY_LAYOUT.items() for f, off in fields.items()]

SIZES = {
    T.MapCreateAttr: 80, T.MapElemAttr: 32, T.MapBatchAttr: 56, T.ProgLoadAttr: 152, T.ObjAttr: 24,
    T.TestRunAttr: 80, T.GetIdAttr: 16, T.InfoAttr: 16, T.RawTracepointAttr: 24, T.BtfLoadAttr: 40,
    T.LinkDetachAttr: 4, T.EnableStatsAttr: 4, T.ProgInfoStruct: 232, T.MapInfoStruct: 88,
    T.BtfInfoStruct: 32, T.LinkInfoStruct: 64, T.PerfEventAttr: 136,
}


@pytest.mark.parametrize(("layout", "field", "offset"), PINNED,
                         ids=[f"{lay.__name__}.{f}" for lay, f, _ in PINNED])
def test_field_offset_matches_kernel(layout: type, field: str, offset: int) -> None:
    assert T.field_offsets(layout)[field] == offset


@pytest.mark.parametrize("layout", list(SIZES), ids=lambda lay: lay.__name__)
def test_size_matches_kernel(layout: type) -> None:
    assert ctypes.sizeof(layout) == SIZES[layout]


def test_every_layout_is_listed_and_named() -> None:
    for layout in T.ALL_LAYOUTS:
        kernel_type, _member = layout._kernel_
        assert kernel_type, layout
        offsets = T.field_offsets(layout)
        assert offsets, layout
        assert all(not name.startswith("_") for name in offsets)


def test_link_create_cookie_views_share_the_union() -> None:
    attr = T.LinkCreateAttr()
    attr.perf_cookie = 0x1122334455667788
    raw = bytes(attr)
    assert raw[16:24] == (0x1122334455667788).to_bytes(8, "little")
    assert attr.perf_cookie == 0x1122334455667788
    attr2 = T.LinkCreateAttr(target_btf_id=7, tracing_cookie=9)
    raw2 = bytes(attr2)
    assert raw2[16:20] == (7).to_bytes(4, "little") and raw2[24:32] == (9).to_bytes(8, "little")


def test_link_info_views_read_the_union_bytes() -> None:
    info = T.LinkInfoStruct()
    raw = bytearray(ctypes.sizeof(info))
    raw[16:20] = (5).to_bytes(4, "little")
    raw[24:32] = (0xDEAD).to_bytes(8, "little")
    ctypes.memmove(ctypes.addressof(info), bytes(raw), len(raw))
    assert info.perf_event_type == 5 and info.perf_name == 0xDEAD and info.tp_name == 5
    info.tp_name_len = 99
    assert bytes(info)[24:28] == (99).to_bytes(4, "little")


def test_unused_tail_is_zero() -> None:
    attr = T.ProgLoadAttr(prog_type=5, insn_cnt=2)
    assert bytes(attr)[8:] == b"\0" * (ctypes.sizeof(attr) - 8)


def test_ptr_of_none_is_null() -> None:
    assert T.ptr(None) == 0
    buf = ctypes.create_string_buffer(4)
    assert T.ptr(buf) == ctypes.addressof(buf)


def test_perf_ioctl_numbers_follow_the_ioc_encoding() -> None:
    def ioc(direction: int, nr: int, size: int) -> int:
        return direction << 30 | size << 16 | ord("$") << 8 | nr

    assert ioc(0, 0, 0) == T.PERF_EVENT_IOC_ENABLE
    assert ioc(0, 1, 0) == T.PERF_EVENT_IOC_DISABLE
    assert ioc(1, 8, 4) == T.PERF_EVENT_IOC_SET_BPF  # _IOW('$', 8, __u32)
