"""KernelBTF against the real kernel: load (with the logged retry), refusal with the kernel's reason, info,
bytes, from_id, vmlinux by id, and BTF type ids on maps."""

from __future__ import annotations

import errno

import pytest

from rawbpf import _sys
from rawbpf.consts import Cmd, MapType
from rawbpf.errors import BTFError, SyscallError
from rawbpf.features import _Blob
from rawbpf.kbtf import BTFLoadError, KernelBTF
from rawbpf.maps import Map


def int_blob() -> bytes:
    b = _Blob()
    b.int32()                          # [1] int
    b.t("pair", 4, 2, 8, b.s("a"), 1, 0, b.s("b"), 1, 32)  # [2] struct pair { int a; int b; }
    return b.raw()


def test_load_info_and_bytes_round_trip() -> None:
    raw = int_blob()
    with KernelBTF.load(raw, name="pairs") as btf:
        info = btf.info()
        assert info.id == btf.id > 0 and not info.kernel_btf
        assert info.size == len(raw)
        assert btf.data() == raw
        with KernelBTF.from_id(btf.id) as same:
            assert same.data() == raw


def test_refusal_quotes_the_kernel() -> None:
    b = _Blob()
    b.t("", 2, 0, 9)  # [1] PTR to type 9, which does not exist
    with pytest.raises(BTFLoadError) as ei:
        KernelBTF.load(b.raw(), name="broken")
    err = ei.value
    assert isinstance(err, BTFError)
    assert str(err).startswith("load btf 'broken': kernel refused btf: ")
    assert "type_id" in str(err).lower() or "invalid" in str(err).lower()
    assert "\n" not in str(err)
    assert err.errno == errno.EINVAL and err.tail()
    assert err.log.rstrip() in err.detail()
    with pytest.raises(BTFError, match="empty blob"):
        KernelBTF.load(b"")


def test_refusal_names_the_type_of_a_bad_member() -> None:
    b = _Blob()
    b.int32()
    b.t("s", 4, 1, 4, b.s("m"), 9, 0)  # [2] struct s { <type 9> m; }: no type 9
    with pytest.raises(BTFLoadError) as ei:
        KernelBTF.load(b.raw(), name="badmember")
    assert str(ei.value) == ("load btf 'badmember': kernel refused btf: [2] STRUCT s size=4 vlen=1: "
                             "m type_id=9 bits_offset=0 Invalid member")


def test_success_with_log_level_keeps_the_log() -> None:
    with KernelBTF.load(int_blob(), log_level=1) as btf:
        assert btf.log.strip()


def test_vmlinux_btf_by_id() -> None:
    btf_id = 0
    found = None
    while True:
        nxt = _sys.next_id(Cmd.BTF_GET_NEXT_ID, btf_id)
        if nxt is None:
            break
        btf_id = nxt
        try:
            k = KernelBTF.from_id(btf_id)
        except SyscallError:
            continue  # freed meanwhile by someone else
        with k:
            info = k.info()
            if info.kernel_btf and info.name == "vmlinux":
                found = info
                break
    assert found is not None and found.size > 1 << 20


def test_map_with_btf_type_ids() -> None:
    with KernelBTF.load(int_blob(), name="mapbtf") as btf, \
            Map.create(MapType.HASH, 4, 8, 4, name="btfmap", btf_fd=btf.fd, btf_key_type_id=1,
                       btf_value_type_id=2) as m:
        info = m.info()
        assert (info.btf_id, info.btf_key_type_id, info.btf_value_type_id) == (btf.id, 1, 2)
        m.update(1, (7 | 9 << 32))
        assert m.lookup_struct(1, "<ii") == (7, 9)
    with KernelBTF.load(int_blob(), name="mapbtf2") as btf, pytest.raises(SyscallError) as ei:
        # the value type is 8 bytes, the map's values 4: the kernel refuses, one line naming the map
        Map.create(MapType.HASH, 4, 4, 4, name="btfbad", btf_fd=btf.fd, btf_key_type_id=1,
                   btf_value_type_id=2)
    assert str(ei.value).startswith("create map 'btfbad': ")
