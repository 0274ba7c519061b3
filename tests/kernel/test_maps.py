"""Maps against the real kernel: every tracer map type round-trips, per-CPU values, batch, queue/stack, LPM,
map-in-map, freeze, mmap, views, and bad parameters that fail in one line without leaking an fd."""

from __future__ import annotations

import errno
import mmap
import os
import struct
import uuid

import pytest

from rawbpf.consts import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_RDONLY_PROG,
    BPF_NOEXIST,
    MapType,
)
from rawbpf.errors import ConfigError, RawBPFError, SyscallError
from rawbpf.maps import Map, possible_cpus


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.LRU_HASH, MapType.ARRAY])
def test_plain_maps_round_trip(mtype: MapType) -> None:
    with Map.create(mtype, 4, 16, 8, name=uniq("rt")) as m:
        value = bytes(range(16))
        m.update(3, value)
        assert m.lookup(3) == value
        assert m.lookup_int(3) == int.from_bytes(value, "little")
        assert m[3] == value
        assert 3 in m
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (mtype, 4, 16, 8)
        assert info.id == m.id > 0
        assert info.name == m.name
        if mtype != MapType.ARRAY:
            assert m.lookup(4) is None
            assert 4 not in m
            assert m.delete(3) is True
            assert m.delete(3) is False
            assert m.lookup(3) is None
        else:
            assert m.lookup(4) == b"\0" * 16
            with pytest.raises(SyscallError) as ei:
                m.delete(3)
            assert ei.value.errno == errno.EINVAL


def test_update_flags() -> None:
    with Map.create(MapType.HASH, 8, 8, 4, name=uniq("flags")) as m:
        m.update(1, 10, BPF_NOEXIST)
        with pytest.raises(SyscallError) as ei:
            m.update(1, 11, BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST and "key exists" in str(ei.value)
        with pytest.raises(SyscallError):
            m.update(2, 20, BPF_EXIST)
        m.update(1, 12, BPF_EXIST)
        assert m.lookup_int(1) == 12


def test_hash_full_is_e2big() -> None:
    with Map.create(MapType.HASH, 4, 4, 2, name=uniq("full")) as m:
        m.update(1, 1)
        m.update(2, 2)
        with pytest.raises(SyscallError) as ei:
            m.update(3, 3)
        assert ei.value.errno == errno.E2BIG
        assert str(ei.value).startswith(f"update map '{m.name}'")


def test_iteration_and_items() -> None:
    with Map.create(MapType.HASH, 4, 8, 64, name=uniq("iter")) as m:
        want = {k: k * 1000 for k in range(20)}
        for k, v in want.items():
            m.update(k, v)
        got = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in m.items()}
        assert got == want
        assert len(m) == 20
        assert sorted(int.from_bytes(k, "little") for k in m) == list(range(20))
        assert m.next_key(None) is not None
        assert m.clear() == 20
        assert m.next_key(None) is None


@pytest.mark.parametrize("mtype", [MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH])
def test_percpu_values(mtype: MapType) -> None:
    ncpu = possible_cpus()
    with Map.create(mtype, 4, 4, 4, name=uniq("pcpu")) as m:
        assert m.ncpus == ncpu and m.value_stride == 8
        m.update(1, [i + 1 for i in range(ncpu)])
        vals = m.lookup_percpu(1)
        assert vals == [(i + 1).to_bytes(4, "little") for i in range(ncpu)]
        assert m.lookup_int(1) == sum(range(1, ncpu + 1))
        m.update(2, 7)  # one value: the same on every CPU
        assert m.lookup_percpu(2) == [(7).to_bytes(4, "little")] * ncpu
        assert m.view("<I")[1] == list(range(1, ncpu + 1))
        with pytest.raises(ConfigError, match="needs"):
            m.update(1, [1])


def test_possible_cpus_matches_sysfs() -> None:
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    assert possible_cpus() == int(text.split(",")[-1].split("-")[-1]) + 1
    assert possible_cpus() >= (os.cpu_count() or 1)


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY])
def test_batch_lookup(mtype: MapType) -> None:
    with Map.create(mtype, 4, 8, 100, name=uniq("batch")) as m:
        for k in range(37):
            m.update(k, k + 1)
        got = m.lookup_batch(batch_size=8)
        stride = m.buffer_size
        seen = {int.from_bytes(k, "little"): v for k, v in got}
        if mtype in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            assert len(seen) == 100
        else:
            assert len(seen) == 37
        for k in range(37):
            assert len(seen[k]) == stride
            assert int.from_bytes(seen[k][:8], "little") == k + 1


def test_batch_update_delete_and_lookup_and_delete() -> None:
    with Map.create(MapType.HASH, 4, 4, 64, name=uniq("bupd")) as m:
        assert m.update_batch({k: k * 2 for k in range(10)}) == 10
        assert m.lookup_int(9) == 18
        assert m.delete_batch([0, 1, 2]) == 3
        got = m.lookup_batch(batch_size=4, delete=True)
        assert sorted(int.from_bytes(k, "little") for k, _ in got) == list(range(3, 10))
        assert m.next_key(None) is None


def test_batch_unsupported_type_is_one_line() -> None:
    with Map.create(MapType.QUEUE, 0, 4, 4, name=uniq("qb")) as q, pytest.raises(SyscallError) as ei:
        q.lookup_batch()
    assert "\n" not in str(ei.value) and "batch lookup map" in str(ei.value)


@pytest.mark.parametrize(("mtype", "order"), [(MapType.QUEUE, [1, 2, 3]), (MapType.STACK, [3, 2, 1])])
def test_queue_and_stack(mtype: MapType, order: list) -> None:
    with Map.create(mtype, 0, 8, 3, name=uniq("qs")) as m:
        assert m.pop() is None and m.peek() is None
        for v in (1, 2, 3):
            m.push(v)
        with pytest.raises(SyscallError):
            m.push(4)
        assert int.from_bytes(m.peek() or b"", "little") == order[0]
        assert [int.from_bytes(m.pop() or b"", "little") for _ in range(3)] == order
        assert m.pop() is None
        m.push(5)
        m.push(6)
        m.push(7)
        m.push(8, BPF_EXIST)  # full: BPF_EXIST overwrites the oldest
        got = [int.from_bytes(m.pop() or b"", "little") for _ in range(3)]
        assert got == ([6, 7, 8] if mtype == MapType.QUEUE else [8, 7, 6])


def test_bloom_filter() -> None:
    with Map.create(MapType.BLOOM_FILTER, 0, 8, 100, name=uniq("bloom"), map_extra=3) as m:
        for v in (11, 22, 33):
            m.push(v)
        assert m.contains(11) and m.contains(22) and m.contains(33)
        misses = sum(not m.contains(v) for v in range(1000, 1100))
        assert misses > 80  # no false negatives above; few false positives here
        assert m.info().map_extra == 3


def test_lpm_trie_longest_prefix_match() -> None:
    # key: u32 prefixlen + 4-byte IPv4 address (network order)
    def key(prefix: int, addr: str) -> bytes:
        return struct.pack("<I", prefix) + bytes(int(x) for x in addr.split("."))

    with Map.create(MapType.LPM_TRIE, 8, 4, 16, name=uniq("lpm")) as m:
        assert m.flags & BPF_F_NO_PREALLOC
        m.update(key(8, "10.0.0.0"), 8)
        m.update(key(16, "10.1.0.0"), 16)
        m.update(key(24, "10.1.2.0"), 24)
        assert m.lookup_int(key(32, "10.1.2.3")) == 24
        assert m.lookup_int(key(32, "10.1.9.9")) == 16
        assert m.lookup_int(key(32, "10.7.7.7")) == 8
        assert m.lookup(key(32, "11.0.0.1")) is None
        assert len(list(m.keys())) == 3


@pytest.mark.parametrize("outer", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map(outer: MapType) -> None:
    with Map.create(MapType.ARRAY, 4, 8, 2, name=uniq("inner")) as inner, \
            Map.create(MapType.ARRAY, 4, 8, 2, name=uniq("inner2")) as inner2, \
            Map.create(outer, 4, 4, 4, name=uniq("outer"), inner_map_fd=inner.fd) as m:
        m.update(0, inner)
        m.update(1, inner2.fd)
        assert m.lookup_int(0) == inner.id
        assert m.lookup_int(1) == inner2.id
        assert m.delete(1)
        with Map.from_id(m.lookup_int(0) or 0) as again:
            assert again.name == inner.name


def test_map_in_map_needs_inner() -> None:
    with pytest.raises(ConfigError, match="needs inner_map_fd"):
        Map.create(MapType.ARRAY_OF_MAPS, 4, 4, 4, name="noinner")


def test_freeze_blocks_user_updates() -> None:
    with Map.create(MapType.ARRAY, 4, 8, 2, name=uniq("frz")) as m:
        m.update(0, 5)
        m.freeze()
        with pytest.raises(SyscallError) as ei:
            m.update(0, 6)
        assert ei.value.errno == errno.EPERM
        assert m.lookup_int(0) == 5


def test_mmapable_array_shares_memory() -> None:
    with Map.create(MapType.ARRAY, 4, 8, 4, name=uniq("mm"), flags=BPF_F_MMAPABLE) as m:
        mm = m.mmap()
        try:
            mm[8:16] = (0xABCD).to_bytes(8, "little")
            assert m.lookup_int(1) == 0xABCD
            m.update(2, 77)
            assert int.from_bytes(mm[16:24], "little") == 77
            assert len(mm) % mmap.PAGESIZE == 0
        finally:
            mm.close()
    with Map.create(MapType.ARRAY, 4, 8, 4, name=uniq("nomm")) as m2, pytest.raises(ConfigError):
        m2.mmap()


def test_rdonly_prog_flag_survives_info() -> None:
    with Map.create(MapType.ARRAY, 4, 4, 1, name=uniq("ro"), flags=BPF_F_RDONLY_PROG) as m:
        assert m.info().flags & BPF_F_RDONLY_PROG


def test_special_types_create_with_sizes() -> None:
    page = mmap.PAGESIZE
    with Map.create(MapType.RINGBUF, 0, 0, 4 * page, name=uniq("rb")) as rb:
        assert rb.info().max_entries == 4 * page
    with Map.create(MapType.PERF_EVENT_ARRAY, 4, 4, 0, name=uniq("pe")) as pe:
        assert pe.max_entries == possible_cpus()
    with Map.create(MapType.STACK_TRACE, 4, 8 * 127, 64, name=uniq("st")) as st:
        assert st.lookup(0) is None
    with Map.create(MapType.PROG_ARRAY, 4, 4, 4, name=uniq("pa")) as pa:
        assert pa.lookup(0) is None
        assert pa.info().type == MapType.PROG_ARRAY


def test_view_packs_and_unpacks() -> None:
    with Map.create(MapType.HASH, 8, 12, 8, name=uniq("view")) as m:
        v = m.view("<IQ", key_fmt="<II")
        v[(1, 2)] = (3, 4)
        assert v[(1, 2)] == (3, 4)
        assert (1, 2) in v and (2, 1) not in v
        assert m.lookup_struct(struct.pack("<II", 1, 2), "<IQ") == (3, 4)
        assert v.to_dict() == {(1, 2): (3, 4)}
        del v[(1, 2)]
        assert v.get((1, 2)) is None
        with pytest.raises(KeyError):
            v[(1, 2)]
        with pytest.raises(ConfigError, match="value format"):
            m.view("<I")


def test_from_fd_from_id_and_wrong_sizes() -> None:
    with Map.create(MapType.HASH, 4, 4, 4, name=uniq("ids")) as m:
        with Map.from_id(m.id) as same:
            same.update(1, 9)
            assert same.key_size == 4 and same.type == MapType.HASH
        assert m.lookup_int(1) == 9
        with pytest.raises(ConfigError, match=r"key is 8 bytes, the map wants 4"):
            m.lookup(b"\0" * 8)
        with pytest.raises(ConfigError, match="does not fit"):
            m.update(1 << 40, 1)
        with pytest.raises(ConfigError, match="push\\(\\) is for"):
            m.push(1)
        dup = os.dup(m.fd)
        with Map.from_fd(dup) as other:
            assert other.id == m.id


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((MapType.HASH, 4, 8, 0), {}, "max_entries must be > 0"),
    ((MapType.HASH, 0, 8, 4), {}, "key_size must be > 0"),
    ((MapType.ARRAY, 8, 8, 4), {}, "keys are 4-byte indexes"),
    ((MapType.QUEUE, 4, 8, 4), {}, "have no key"),
    ((MapType.RINGBUF, 0, 0, 1000), {}, "power of 2"),
    ((MapType.LPM_TRIE, 4, 4, 4), {}, "prefix length"),
    ((MapType.HASH, -1, 8, 4), {}, "key_size must be an integer"),
    ((999, 4, 4, 4), {}, "unknown map type 999"),
])
def test_invalid_parameters_are_one_line(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as ei:
        Map.create(*args, name="badmap", **kwargs)
    assert "\n" not in str(ei.value)
    assert "'badmap'" in str(ei.value) or "map" in str(ei.value)


def test_mmapable_policy_is_the_kernels() -> None:
    # BPF_F_MMAPABLE is for arrays and arenas (which require it): the kernel's rule, answered by the kernel
    with pytest.raises(SyscallError) as ei:
        Map.create(MapType.HASH, 4, 8, 4, name="mmaphash", flags=BPF_F_MMAPABLE)
    assert ei.value.errno == errno.EINVAL and "'mmaphash'" in str(ei.value) and "\n" not in str(ei.value)


def test_kernel_refusal_names_the_map() -> None:
    # value too large for the kernel: a kernel error, still one line naming the map
    with pytest.raises(SyscallError) as ei:
        Map.create(MapType.ARRAY, 4, 1 << 31, 4, name="hugeval")
    msg = str(ei.value)
    assert msg.startswith("create map 'hugeval': ") and "\n" not in msg
    with pytest.raises(SyscallError) as ei:
        Map.create(MapType.HASH, 4, 4, 4, name="badflags", flags=1 << 30)
    assert "create map 'badflags'" in str(ei.value) and "flags=0x40000000" in str(ei.value)


def test_closed_map_refuses_use() -> None:
    m = Map.create(MapType.ARRAY, 4, 4, 1, name=uniq("closed"))
    m.close()
    m.close()
    with pytest.raises(RawBPFError, match="map is closed"):
        m.lookup(0)
    assert BPF_ANY == 0


def test_batch_grows_past_a_large_bucket() -> None:
    # batch_size 1 is smaller than some buckets of a full small hash: ENOSPC makes it grow and retry
    with Map.create(MapType.HASH, 4, 4, 64, name=uniq("bgrow")) as m:
        for k in range(64):
            m.update(k, k)
        got = m.lookup_batch(batch_size=1)
        assert sorted(int.from_bytes(k, "little") for k, _ in got) == list(range(64))


def test_numa_node_zero() -> None:
    with Map.create(MapType.HASH, 4, 4, 4, name=uniq("numa"), numa_node=0) as m:
        m.update(1, 1)
        assert m.lookup_int(1) == 1


def test_from_fd_refuses_other_objects_and_leaves_them_open() -> None:
    with Map.create(MapType.ARRAY, 4, 4, 1, name=uniq("kind")) as m:
        r, w = os.pipe()
        try:
            with pytest.raises(ConfigError, match=f"wrap fd {r} as a map: not a map \\(a non-bpf object\\)"):
                Map.from_fd(r)
            os.fstat(r)  # still open: the caller keeps it
        finally:
            os.close(r)
            os.close(w)
        assert Map.from_fd(m.fd, owned=False).id == m.id


def test_lookup_and_delete_and_map_ids() -> None:
    from rawbpf.maps import iter_ids

    with Map.create(MapType.HASH, 4, 8, 4, name=uniq("lad")) as m:
        m.update(5, 55)
        assert m.lookup_and_delete(5) == (55).to_bytes(8, "little")
        assert m.lookup_and_delete(5) is None
        assert m.lookup(5) is None
        assert m.id in set(iter_ids())


def test_lookup_and_delete_each_takes_what_each_key_held() -> None:
    with Map.create(MapType.HASH, 4, 8, 8, name=uniq("lade")) as m:
        for k in (1, 2, 3):
            m.update(k, k * 11)
        got = m.lookup_and_delete_each([2, 9, (3).to_bytes(4, "little"), 2])
        assert got == [(22).to_bytes(8, "little"), None, (33).to_bytes(8, "little"), None]
        assert list(m.keys()) == [(1).to_bytes(4, "little")]
        assert m.lookup_and_delete_each([]) == []


def test_frozen_mmapable_array_maps_read_only() -> None:
    with Map.create(MapType.ARRAY, 4, 8, 2, name=uniq("frzmm"), flags=BPF_F_MMAPABLE) as m:
        m.update(1, 0x55)
        m.freeze()
        with pytest.raises(SyscallError) as ei:
            m.mmap()
        assert ei.value.errno == errno.EPERM and "read-only" in str(ei.value)
        mm = m.mmap(writable=False)
        try:
            assert int.from_bytes(mm[8:16], "little") == 0x55
        finally:
            mm.close()


def test_keyless_maps_refuse_iteration() -> None:
    with Map.create(MapType.QUEUE, 0, 4, 4, name=uniq("noiter")) as q:
        with pytest.raises(ConfigError, match="queue maps have no keys to iterate"):
            list(q.keys())
        with pytest.raises(ConfigError, match="no keys"):
            len(q)
